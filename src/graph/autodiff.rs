//! Reverse mode over the op graph: the backward of exactly the ops on the path from the
//! loss to the trainable parameters, from each op's rule (`super::rules`).
//!
//! A value *requires* a gradient when a trainable parameter reaches it going forward:
//! the output of an adapted linear, and everything computed from one. Walking the
//! forward nodes from the last, a node whose outputs carry gradients gets its rule
//! applied for the inputs that require one. So the embedding, the first layer's input
//! norm and any product below the lowest adapter are never differentiated, and frozen
//! weights get no gradient at all.
//!
//! Gradient checkpointing ([`checkpoint`]) then inserts, before each layer's backward
//! (but the last's, whose activations are fresh), a copy of that layer's forward
//! writing new values, and points the backward at them: the first forward's
//! activations die inside their layer, and the planner reuses their buffers.

use std::collections::HashMap;

use super::ir::{Graph, Node, Phase, Role, ValueId};
use super::rules::{self, Grads};
use crate::error::{Error, Result};

/// Appends the backward of `g` (which ends in a loss) to its nodes.
pub fn differentiate(g: &mut Graph) -> Result<()> {
    let loss = g
        .loss
        .ok_or_else(|| Error::Invalid("graph: no loss to differentiate".into()))?;
    let forward: Vec<Node> = g.nodes.clone();
    let mut gr = Grads {
        of: vec![None; g.values.len()],
        requires: vec![false; g.values.len()],
    };
    for n in &forward {
        let adapted = matches!(&n.op, super::ir::Op::Linear { proj } if proj.adapted);
        if adapted || n.inputs.iter().any(|&i| gr.requires[i]) {
            for &o in &n.outputs {
                gr.requires[o] = true;
            }
        }
    }
    // Saved statistics (attention's and the loss's logsumexp) are marked too, but no
    // rule ever forms their gradient: they are inputs of the backward kernels only.
    if !gr.requires[loss] {
        return Err(Error::Invalid(
            "graph: no trainable parameter reaches the loss (no adapted projection)".into(),
        ));
    }
    let mut siblings = Vec::new();
    for n in forward.iter().rev() {
        let is_loss = n.outputs.first() == Some(&loss);
        let has_grad = n.outputs.iter().any(|&o| gr.of[o].is_some());
        if !(is_loss || has_grad) {
            continue;
        }
        if let Some(pair) = rules::backward(g, n, &mut gr)? {
            siblings.push((g.nodes.len(), pair));
        }
    }
    check_aliases(g, &siblings)
}

/// The identity gradients of an add share one buffer: ∂L/∂a and ∂L/∂b are ∂L/∂y. That
/// is only sound while neither is changed under the other's feet: a later contribution
/// to ∂L/∂a (a's other consumers) must come after the last read of ∂L/∂b, and the other
/// way round. The builder's graphs satisfy it (the residual's other consumer, a norm, is
/// differentiated after the branch); a graph that does not is refused.
fn check_aliases(g: &Graph, siblings: &[(usize, (ValueId, ValueId))]) -> Result<()> {
    let chained = |v: ValueId, through: ValueId| {
        let mut v = v;
        loop {
            if v == through {
                return true;
            }
            match g.values[v].alias {
                Some((of, _)) => v = of,
                None => return false,
            }
        }
    };
    for &(at, (a, b)) in siblings {
        for (x, other) in [(a, b), (b, a)] {
            let last_read = g.nodes[at..]
                .iter()
                .rposition(|n| n.inputs.iter().any(|&i| chained(i, other)))
                .map(|i| i + at);
            let first_write = g.nodes[at..]
                .iter()
                .position(|n| n.outputs.iter().any(|&o| chained(o, x) && o != other))
                .map(|i| i + at);
            if let (Some(r), Some(w)) = (last_read, first_write) {
                if w <= r {
                    return Err(Error::Invalid(format!(
                        "graph: {} is written (node {w}) before {} is last read (node {r}); \
                         they share a buffer",
                        g.values[x].name, g.values[other].name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Gradient checkpointing: per-layer recomputation (see the module docs). Call after
/// [`differentiate`].
pub fn checkpoint(g: &mut Graph) {
    let layers = g.config.num_layers;
    let forward: Vec<Node> = g
        .nodes
        .iter()
        .filter(|n| n.phase == Phase::Forward)
        .cloned()
        .collect();
    let split = forward.len();
    let backward: Vec<Node> = g.nodes[split..].to_vec();
    let mut out: Vec<Node> = forward.clone();
    let mut i = 0;
    while i < backward.len() {
        let layer = backward[i].layer;
        let end = (i..backward.len())
            .find(|&j| backward[j].layer != layer)
            .unwrap_or(backward.len());
        let segment = &backward[i..end];
        match layer {
            Some(l) if l + 1 < layers => {
                let rename = recompute(g, &forward, l, &mut out);
                for n in segment {
                    let mut n = n.clone();
                    for v in n.inputs.iter_mut() {
                        if let Some(&r) = rename.get(v) {
                            *v = r;
                        }
                    }
                    out.push(n);
                }
            }
            _ => out.extend(segment.iter().cloned()),
        }
        i = end;
    }
    g.nodes = out;
}

/// Appends a copy of layer `l`'s forward with fresh outputs; returns old → new ids. A
/// node whose output other layers read (the residual it hands on) is not repeated.
fn recompute(
    g: &mut Graph,
    forward: &[Node],
    l: usize,
    out: &mut Vec<Node>,
) -> HashMap<ValueId, ValueId> {
    let read_outside = |v: ValueId| {
        forward
            .iter()
            .any(|n| n.layer != Some(l) && n.inputs.contains(&v))
    };
    let mut rename: HashMap<ValueId, ValueId> = HashMap::new();
    for n in forward.iter().filter(|n| n.layer == Some(l)) {
        if n.outputs.iter().any(|&o| read_outside(o)) {
            continue;
        }
        let mut c = n.clone();
        c.phase = Phase::Recompute;
        for v in c.inputs.iter_mut() {
            if let Some(&r) = rename.get(v) {
                *v = r;
            }
        }
        for v in c.outputs.iter_mut().chain(c.temps.iter_mut()) {
            let old = g.values[*v].clone();
            if old.role == Role::External {
                continue;
            }
            let mut new = old.clone();
            new.name = format!("{}'", old.name);
            if let Some((of, off)) = old.alias {
                new.alias = Some((rename.get(&of).copied().unwrap_or(of), off));
            }
            g.values.push(new);
            let id = g.values.len() - 1;
            rename.insert(*v, id);
            *v = id;
        }
        out.push(c);
    }
    rename
}
