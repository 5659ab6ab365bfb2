//! The table of a `boha generate --record FILE` run: prefill and decode speed.

use super::markdown::{significant, Table};
use super::records::Loaded;
use crate::error::Result;

pub fn generate(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let mut t = Table::new([
        "prompt tokens",
        "prefill s",
        "prefill tokens/s",
        "new tokens",
        "decode s",
        "decode tokens/s",
    ]);
    t.row(vec![
        format!("{}", l.num(v, "prompt_tokens")?),
        significant(l.num(v, "prefill_s")?, 3),
        significant(l.num(v, "prefill_tokens_per_s")?, 3),
        format!("{}", l.num(v, "decode_tokens")?),
        significant(l.num(v, "decode_s")?, 3),
        significant(l.num(v, "decode_tokens_per_s")?, 3),
    ]);
    Ok(t.render())
}
