//! Liveness over a graph's execution order, and the buffers it plans: every value a
//! node writes, reads or uses as scratch — activations, gradients, op temporaries, the
//! loss's chunks, the adapters' shared scratch — is live from the first node that
//! touches it to the last, and values whose spans do not meet share a buffer
//! ([`Planner`], first fit over decreasing sizes).
//!
//! Aliases (RoPE in place, the identity gradients of residual adds, row views) are one
//! storage: their spans are merged and they are planned once. Inputs, outputs read back
//! by the host and the adapters' scratch are live for the whole run. Weights and caches
//! are bound from outside and not planned.
//!
//! Two values one node touches are both live at that node, so a node never gets the same
//! buffer twice (wgpu forbids binding one buffer read-only and read-write in a dispatch)
//! unless the graph says they alias — and then the op writes in place through one
//! binding.

use super::ir::{Graph, Role, ValueId};
use super::plan::Planner;

/// Where each value lives after planning.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// value → (buffer, element offset); None for external values and values no node
    /// touches.
    pub slots: Vec<Option<(usize, usize)>>,
    /// Elements of each buffer (at least one).
    pub buffers: Vec<usize>,
    /// Each storage class's live span [first, last] over the nodes, by root value.
    pub spans: Vec<Option<(usize, usize)>>,
}

impl MemoryPlan {
    /// Bytes of every planned buffer.
    pub fn bytes(&self) -> u64 {
        self.buffers.iter().map(|&n| n.max(1) as u64 * 4).sum()
    }
}

/// Plans `g`'s buffers.
pub fn plan(g: &Graph) -> MemoryPlan {
    let nv = g.values.len();
    let end = g.nodes.len();
    let mut span: Vec<Option<(usize, usize)>> = vec![None; nv];
    let touch = |v: ValueId, at: usize, span: &mut Vec<Option<(usize, usize)>>| {
        let r = g.root(v).0;
        span[r] = Some(match span[r] {
            Some((a, b)) => (a.min(at), b.max(at)),
            None => (at, at),
        });
    };
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in n.inputs.iter().chain(&n.outputs).chain(&n.temps) {
            touch(v, i, &mut span);
        }
    }
    // Root lengths cover every alias's offset + length.
    let mut len = vec![0usize; nv];
    let mut pinned = vec![false; nv];
    let mut external = vec![false; nv];
    for (v, val) in g.values.iter().enumerate() {
        let (r, off) = g.root(v);
        len[r] = len[r].max(off + val.len());
        match val.role {
            Role::Io | Role::AdapterScratch => pinned[r] = true,
            Role::External => external[r] = true,
            _ => {}
        }
    }
    let mut planner = Planner::new();
    let mut class_id = vec![None; nv];
    for r in 0..nv {
        if g.values[r].alias.is_some() || external[r] {
            continue;
        }
        let s = if pinned[r] { Some((0, end)) } else { span[r] };
        if let Some((a, b)) = s {
            class_id[r] = Some(planner.value(&g.values[r].name, len[r], a, b));
        }
    }
    planner.assign();
    let buffers = planner.sizes().iter().map(|&n| n.max(1)).collect();
    let slots = (0..nv)
        .map(|v| {
            let (r, off) = g.root(v);
            class_id[r].map(|c| (planner.slots()[c], off))
        })
        .collect();
    MemoryPlan {
        slots,
        buffers,
        spans: span,
    }
}
