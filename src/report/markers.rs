//! Generated blocks inside hand-written Markdown: a line `<!-- report:SPEC -->`, the
//! generated text, a line `<!-- /report -->`. Only the text between the two lines is
//! rewritten; everything around it stays as written.

use crate::error::{Error, Result};

const OPEN: &str = "<!-- report:";
const CLOSE: &str = "<!-- /report -->";

/// One generated block: its spec (what follows `report:`) and the byte range of the text
/// between its marker lines.
#[derive(Debug, PartialEq)]
pub struct Block {
    pub spec: String,
    pub body: std::ops::Range<usize>,
}

/// Every block of `text`, in order. An opening marker without its closing one, or one
/// inside another block, is an error naming its line.
pub fn blocks(text: &str) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, usize)> = None;
    let mut at = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let end = at + line.len();
        let l = line.trim();
        if let Some(rest) = l.strip_prefix(OPEN) {
            if let Some((_, _, first)) = open {
                return Err(Error::Invalid(format!(
                    "line {}: a report block opens inside the one opened on line {first}",
                    i + 1
                )));
            }
            let spec = rest.strip_suffix("-->").ok_or_else(|| {
                Error::Invalid(format!("line {}: report marker without `-->`", i + 1))
            })?;
            open = Some((spec.trim().to_string(), end, i + 1));
        } else if l == CLOSE {
            let (spec, start, _) = open.take().ok_or_else(|| {
                Error::Invalid(format!("line {}: `{CLOSE}` closes no block", i + 1))
            })?;
            out.push(Block {
                spec,
                body: start..at,
            });
        }
        at = end;
    }
    match open {
        Some((spec, _, line)) => Err(Error::Invalid(format!(
            "line {line}: block `report:{spec}` is never closed by `{CLOSE}`"
        ))),
        None => Ok(out),
    }
}

/// `text` with each block's body replaced by `render(spec)`.
pub fn rewrite(text: &str, render: &mut dyn FnMut(&str) -> Result<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for b in blocks(text)? {
        out += &text[done..b.body.start];
        out += &render(&b.spec)?;
        done = b.body.end;
    }
    out += &text[done..];
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "intro\n<!-- report:layer a.json -->\nold\n<!-- /report -->\nend\n";

    #[test]
    fn finds_and_rewrites_blocks() {
        let b = blocks(DOC).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].spec, "layer a.json");
        assert_eq!(&DOC[b[0].body.clone()], "old\n");
        let out = rewrite(DOC, &mut |spec| Ok(format!("new {spec}\n"))).unwrap();
        assert_eq!(
            out,
            "intro\n<!-- report:layer a.json -->\nnew layer a.json\n<!-- /report -->\nend\n"
        );
    }

    #[test]
    fn unclosed_and_nested_blocks_are_errors() {
        assert!(blocks("<!-- report:x -->\n").is_err());
        assert!(blocks("<!-- report:x -->\n<!-- report:y -->\n<!-- /report -->\n").is_err());
        assert!(blocks("<!-- /report -->\n").is_err());
    }
}
