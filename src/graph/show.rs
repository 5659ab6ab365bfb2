//! Printing a graph: every node with its inputs and outputs (shape, dtype, planned
//! buffer), the planned buffers with their sizes and the values they hold, and a
//! Graphviz rendering (`boha graph --dot`), whole or one layer (its forward, backward
//! and recomputation) at a time.

use std::fmt::Write;

use super::ir::{Graph, Node, Op, Phase, Role, ValueId};
use super::liveness::MemoryPlan;

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Forward => "fwd",
        Phase::Backward => "bwd",
        Phase::Recompute => "rec",
    }
}

/// The op's name with what sets it apart (the projection, accumulation).
fn label(n: &Node) -> String {
    let mut s = n.op.name().to_string();
    match &n.op {
        Op::Linear { proj } | Op::LinearBackward { proj } => {
            s.push(' ');
            s.push_str(proj.name);
            if proj.adapted {
                s.push_str(" +adapter");
            }
        }
        Op::RmsNorm { norm } | Op::RmsNormBackward { norm } if norm.unit_offset => {
            s.push_str(" (1+w)")
        }
        _ => {}
    }
    if n.accumulate {
        s.push_str(" (+=)");
    }
    s
}

fn value(g: &Graph, plan: &MemoryPlan, v: ValueId) -> String {
    let val = &g.values[v];
    let shape: Vec<String> = val.shape.iter().map(|d| d.to_string()).collect();
    let at = match (val.role, plan.slots[v]) {
        (Role::External, _) => " ext".to_string(),
        (_, Some((b, 0))) => format!(" @b{b}"),
        (_, Some((b, off))) => format!(" @b{b}+{off}"),
        (_, None) => String::new(),
    };
    format!("{}[{}] {}{at}", val.name, shape.join(","), val.dtype.name())
}

/// The node list and the buffer table.
pub fn text(g: &Graph, plan: &MemoryPlan) -> String {
    let mut out = String::new();
    let count = |p: Phase| g.nodes.iter().filter(|n| n.phase == p).count();
    let _ = writeln!(
        out,
        "{} nodes: {} forward, {} backward, {} recomputed; {} values",
        g.nodes.len(),
        count(Phase::Forward),
        count(Phase::Backward),
        count(Phase::Recompute),
        g.values.len()
    );
    for (i, n) in g.nodes.iter().enumerate() {
        let layer = n.layer.map_or("-".to_string(), |l| format!("L{l}"));
        let list = |vs: &[ValueId]| {
            vs.iter()
                .map(|&v| value(g, plan, v))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            out,
            "{i:>5} {} {layer:>4}  {:<22} {} -> {}",
            phase(n.phase),
            label(n),
            list(&n.inputs),
            list(&n.outputs)
        );
        if !n.temps.is_empty() {
            let _ = write!(out, "  scratch {}", list(&n.temps));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nplanned buffers (values that share one never live at once):"
    );
    for (b, &len) in plan.buffers.iter().enumerate() {
        let members: Vec<&str> = (0..g.values.len())
            .filter(|&v| g.values[v].alias.is_none() && plan.slots[v].map(|s| s.0) == Some(b))
            .map(|v| g.values[v].name.as_str())
            .collect();
        let shown = members
            .iter()
            .take(8)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if members.len() > 8 {
            format!(" and {} more", members.len() - 8)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  b{b:<4} {:>12}  {} values: {shown}{more}",
            mib(len as u64 * 4),
            members.len()
        );
    }
    let planned: u64 = (0..g.values.len())
        .filter(|&v| g.values[v].alias.is_none() && plan.slots[v].is_some())
        .map(|v| g.values[v].len().max(1) as u64 * 4)
        .sum();
    let _ = writeln!(
        out,
        "planned: {} in {} buffers ({} if every value had its own)",
        mib(plan.bytes()),
        plan.buffers.len(),
        mib(planned)
    );
    out
}

fn escape(s: &str) -> String {
    s.replace('"', "\\\"")
}

/// Graphviz: values as boxes, nodes as ellipses (forward blue, backward red,
/// recomputation green), weights grey. With `layer`, only that layer's nodes and the
/// values they touch.
pub fn dot(g: &Graph, plan: &MemoryPlan, layer: Option<usize>) -> String {
    let keep = |n: &Node| layer.is_none() || n.layer == layer;
    let mut out = String::from(
        "digraph boha {\n  rankdir=TB;\n  node [fontname=\"DejaVu Sans Mono\", fontsize=10];\n",
    );
    let mut seen = vec![false; g.values.len()];
    for (i, n) in g.nodes.iter().enumerate().filter(|(_, n)| keep(n)) {
        let color = match n.phase {
            Phase::Forward => "#dbe8ff",
            Phase::Backward => "#ffdede",
            Phase::Recompute => "#ddf5dd",
        };
        let _ = writeln!(
            out,
            "  n{i} [label=\"{}\", shape=ellipse, style=filled, fillcolor=\"{color}\"];",
            escape(&label(n))
        );
        for &v in n.inputs.iter().chain(&n.outputs) {
            if !seen[v] {
                seen[v] = true;
                let val = &g.values[v];
                let fill = match val.role {
                    Role::External => "#eeeeee",
                    Role::Gradient => "#fff4e0",
                    _ => "#ffffff",
                };
                let shape: Vec<String> = val.shape.iter().map(|d| d.to_string()).collect();
                let buf = plan.slots[v].map_or(String::new(), |(b, _)| format!("\\nb{b}"));
                let _ = writeln!(
                    out,
                    "  v{v} [label=\"{}\\n[{}] {}{buf}\", shape=box, style=filled, fillcolor=\"{fill}\"];",
                    escape(&val.name),
                    shape.join(","),
                    val.dtype.name()
                );
            }
        }
        for &v in &n.inputs {
            let _ = writeln!(out, "  v{v} -> n{i};");
        }
        for &v in &n.outputs {
            let _ = writeln!(out, "  n{i} -> v{v};");
        }
    }
    out.push_str("}\n");
    out
}
