//! The table of a `boha bench load --json` run: host memory while loading, per
//! `--base-dtype`, against its target (the largest frozen tensor + 64 MiB).

use super::markdown::{significant, with_target, Table, Target};
use super::records::Loaded;
use crate::error::Result;

/// Host bytes over the baseline / (largest frozen tensor + 64 MiB).
pub const LOAD_HOST: Target = Target::AtMost(1.0);

pub fn load(l: &Loaded) -> Result<String> {
    let mib = |b: f64| significant(b / (1u64 << 20) as f64, 3);
    let mut t = Table::new([
        "base dtype".to_string(),
        "file MiB".to_string(),
        "device MiB".to_string(),
        "host peak over baseline MiB".to_string(),
        "largest tensor MiB".to_string(),
        with_target("host / (largest + 64 MiB)", LOAD_HOST, false),
        "load s".to_string(),
    ]);
    for r in l.list(&l.value, "runs")? {
        t.row(vec![
            l.str(r, "base_dtype")?.to_string(),
            mib(l.num(r, "file_bytes")?),
            mib(l.num(r, "device_bytes")?),
            mib(l.num(r, "host_bytes")?),
            mib(l.num(r, "largest_tensor_bytes")?),
            LOAD_HOST.mark(l.num(r, "host_over_target")?, 2),
            significant(l.num(r, "load_s")?, 2),
        ]);
    }
    Ok(t.render())
}
