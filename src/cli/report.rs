//! `boha report [--check] [--root DIR]`

use std::path::PathBuf;

use clap::Args;

use boha::report;
use boha::{Error, Result};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Rewrite nothing; fail naming the first table that differs from its record.
    #[arg(long)]
    pub check: bool,
    /// The repository root (holding README.md, docs/RESULTS.md and docs/benchmarks/).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let stale = report::run(&a.root, !a.check)?;
    match (a.check, stale.first()) {
        (true, Some(s)) => Err(Error::Invalid(format!(
            "{}: the table `report:{}` differs from its records (run `boha report`)",
            s.document, s.spec
        ))),
        (false, _) if !stale.is_empty() => {
            for s in &stale {
                println!("{}: rewrote report:{}", s.document, s.spec);
            }
            Ok(())
        }
        _ => {
            println!("every table matches its records");
            Ok(())
        }
    }
}
