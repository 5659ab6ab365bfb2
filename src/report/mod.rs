//! `boha report`: every figure table of README.md rebuilt from the records under
//! docs/benchmarks/, in place, between markers (docs/RESULTS.md is the benchmark study's
//! report, rebuilt from its own result files by `boha study --report-only`):
//!
//! ```text
//! <!-- report:KIND FILE [FILE…] -->
//! (generated: for each record, the line naming its device, driver, commit, date and
//! command, then its table)
//! <!-- /report -->
//! ```
//!
//! KIND is `gemm`, `layer`, `step`, `synthetic`, `tune`, `step-vs`, `demo`, `generate`,
//! `decode`, `load`, `anchor` or `web`; each FILE is a name in docs/benchmarks/, where
//! `*` matches any run of characters (each match gets its own table, in name order).
//! `--check` rewrites nothing and names the first block that differs, so a figure edited
//! by hand, or a record changed without regenerating, fails the tests (tests/report.rs).

pub mod anchor;
pub mod bench;
pub mod decode;
pub mod demo;
pub mod generate;
pub mod load;
pub mod markdown;
pub mod markers;
pub mod records;
pub mod web;

use std::path::Path;

use crate::error::{Error, Result};
use records::Loaded;

/// The documents that hold generated tables, relative to the repository root.
pub const DOCUMENTS: [&str; 1] = ["README.md"];
/// Where the records live, relative to the repository root.
pub const RECORDS: &str = "docs/benchmarks";

/// One generated block that differs from what is written.
#[derive(Debug, PartialEq)]
pub struct Stale {
    pub document: String,
    pub spec: String,
}

/// The body of the block `spec` in a document at `doc` (relative to the root).
pub fn render_block(root: &Path, doc: &str, spec: &str) -> Result<String> {
    let mut words = spec.split_whitespace();
    let kind = words.next().unwrap_or("");
    let render: fn(&Loaded) -> Result<String> = match kind {
        "gemm" => bench::gemm,
        "layer" => bench::layer,
        "step" => bench::step,
        "synthetic" => bench::synthetic,
        "tune" => bench::tune,
        "step-vs" => bench::step_vs,
        "demo" => demo::demo,
        "anchor" => anchor::anchor,
        "generate" => generate::generate,
        "decode" => decode::decode,
        "load" => load::load,
        "web" => web::web,
        _ => {
            return Err(Error::Invalid(format!(
                "{doc}: unknown report kind `{kind}` (gemm, layer, step, synthetic, \
                 tune, step-vs, demo, generate, decode, load, anchor, web)"
            )))
        }
    };
    let patterns: Vec<&str> = words.collect();
    if patterns.is_empty() {
        return Err(Error::Invalid(format!(
            "{doc}: `report:{kind}` names no record"
        )));
    }
    // The link from the document's folder to docs/benchmarks/.
    let link = if doc.starts_with("docs/") {
        "benchmarks/".to_string()
    } else {
        format!("{RECORDS}/")
    };
    let mut out = String::from("\n");
    for p in patterns {
        for l in records::load(&root.join(RECORDS), p)? {
            out += &records::caption(&l, &link);
            out += "\n\n";
            out += &render(&l).map_err(|e| Error::Invalid(format!("{doc}: {e}")))?;
            out += "\n";
        }
    }
    Ok(out)
}

/// A document's text with every block regenerated, and the blocks that changed.
pub fn render_document(root: &Path, doc: &str, text: &str) -> Result<(String, Vec<Stale>)> {
    let mut stale = Vec::new();
    let old = markers::blocks(text)?;
    let mut i = 0;
    let new = markers::rewrite(text, &mut |spec| {
        let body = render_block(root, doc, spec)?;
        if text[old[i].body.clone()] != body {
            stale.push(Stale {
                document: doc.to_string(),
                spec: spec.to_string(),
            });
        }
        i += 1;
        Ok(body)
    })
    .map_err(|e| Error::Invalid(format!("{doc}: {e}")))?;
    Ok((new, stale))
}

/// Regenerates every document under `root`; with `write` false only compares. Returns
/// the blocks that differed.
pub fn run(root: &Path, write: bool) -> Result<Vec<Stale>> {
    let mut all = Vec::new();
    for doc in DOCUMENTS {
        let path = root.join(doc);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let (new, stale) = render_document(root, doc, &text)?;
        if write && new != text {
            std::fs::write(&path, new)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        }
        all.extend(stale);
    }
    Ok(all)
}
