//! Markdown tables, and figures shown beside the target they are held to.

/// A Markdown table: a header and rows of already formatted cells.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table's lines, each ending in a newline.
    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut s = line(&self.header);
        s += &line(&vec!["---".to_string(); self.header.len()]);
        for r in &self.rows {
            s += &line(r);
        }
        s
    }
}

/// A bound a figure is meant to meet.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    /// `≤ 1.15`, `≥ 60%` (`pct`: the bound is a fraction shown as a percentage).
    pub fn label(self, pct: bool) -> String {
        let (sign, v) = match self {
            Target::AtMost(v) => ("≤", v),
            Target::AtLeast(v) => ("≥", v),
        };
        if pct {
            format!("{sign} {}%", trim(100.0 * v))
        } else {
            format!("{sign} {}", trim(v))
        }
    }

    pub fn met(self, v: f64) -> bool {
        match self {
            Target::AtMost(t) => v <= t,
            Target::AtLeast(t) => v >= t,
        }
    }

    /// `v` with `decimals` decimals, then ✓ or ✗.
    pub fn mark(self, v: f64, decimals: usize) -> String {
        format!("{v:.decimals$} {}", self.tick(v))
    }

    /// `v` (a fraction) as a percentage with `decimals` decimals, then ✓ or ✗.
    pub fn mark_pct(self, v: f64, decimals: usize) -> String {
        format!("{:.decimals$}% {}", 100.0 * v, self.tick(v))
    }

    fn tick(self, v: f64) -> &'static str {
        if self.met(v) {
            "✓"
        } else {
            "✗"
        }
    }
}

/// A header naming its target: `BoHA fwd / base (target ≤ 1.15)`.
pub fn with_target(name: &str, t: Target, pct: bool) -> String {
    format!("{name} (target {})", t.label(pct))
}

/// A bound without trailing zeros: 1.5, 1.05, 60.
fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A number of unknown kind: byte counts in GiB, integers as they are, others with
/// three significant digits.
pub fn any_number(name: &str, v: f64) -> String {
    if name.ends_with("_bytes") {
        format!("{:.2} GiB", v / (1u64 << 30) as f64)
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        significant(v, 3)
    }
}

/// `v` with `digits` significant digits, in exponent form below 0.01.
pub fn significant(v: f64, digits: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() < 0.01 {
        return format!("{:.*e}", digits - 1, v);
    }
    let magnitude = v.abs().log10().floor() as i64;
    let decimals = (digits as i64 - 1 - magnitude).max(0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_targets() {
        let mut t = Table::new(["a", &with_target("fwd / base", Target::AtMost(1.15), false)]);
        t.row(vec!["x".into(), Target::AtMost(1.15).mark(1.853, 2)]);
        t.row(vec!["y".into(), Target::AtMost(1.15).mark(0.98, 2)]);
        assert_eq!(
            t.render(),
            "| a | fwd / base (target ≤ 1.15) |\n| --- | --- |\n| x | 1.85 ✗ |\n| y | 0.98 ✓ |\n"
        );
        assert_eq!(Target::AtLeast(0.6).label(true), "≥ 60%");
        assert_eq!(Target::AtLeast(0.6).mark_pct(0.239, 0), "24% ✗");
    }

    #[test]
    fn numbers() {
        assert_eq!(significant(8.159e-6, 2), "8.2e-6");
        assert_eq!(significant(0.7589, 3), "0.759");
        assert_eq!(significant(12.87, 3), "12.9");
        assert_eq!(significant(1234.5, 3), "1234");
        assert_eq!(significant(0.0451, 3), "0.0451");
        assert_eq!(any_number("peak_bytes", 1334108532.0), "1.24 GiB");
        assert_eq!(any_number("dispatches", 42.0), "42");
    }
}
