//! Each forward op's backward, in terms of kernels: given ∂L/∂(its outputs), which
//! backward nodes write ∂L/∂(its inputs). Frozen inputs (weights, ids) never get a
//! gradient; a linear's backward computes dX only when its input needs one and its
//! adapter's dA, dB when it is adapted, never dW0.
//!
//! ```text
//! loss = CE(h, W)          dh = CE'(h, W, targets, lse)            (fresh)
//! y = gather(x, rows)      dx = scatter(dy, rows)                  (fresh)
//! y = rmsnorm(x, w)        dx (+)= rmsnorm'(x, w; dy)
//! y = x·W'ᵀ (+ b)          dx (+)= dy·W';  dA, dB += adapter'(x, dy)
//! y = rope(x)              dx = rope⁻¹(dy)                          (in place)
//! o = attention(q, k, v)   dq, dk, dv = attention'(q, k, v, o, lse; do)
//! m = act(g) ⊙ u           dg, du = glu'(g, u; dm)
//! y = a + b                da = db = dy                             (no kernel: aliases)
//! ```
//!
//! "(+)=" adds when the gradient already has a contribution (a value read by several
//! ops: the residual stream) and overwrites on the first.

use super::ir::{Graph, Node, Op, Phase, Role, ValueId};
use crate::error::{Error, Result};

/// The gradients formed so far: value → its gradient value.
pub(crate) struct Grads {
    pub of: Vec<Option<ValueId>>,
    /// Values whose forward path reaches a trainable parameter.
    pub requires: Vec<bool>,
}

impl Grads {
    /// The gradient of `v` to write into, and whether it already holds a contribution.
    fn target(&mut self, g: &mut Graph, v: ValueId) -> (ValueId, bool) {
        match self.of[v] {
            Some(gv) => (gv, true),
            None => {
                let gv = new_grad(g, v);
                self.grow(g);
                self.of[v] = Some(gv);
                (gv, false)
            }
        }
    }

    /// A gradient for `v` that must be its first contribution (kernels that overwrite).
    fn fresh(&mut self, g: &mut Graph, v: ValueId, op: &str) -> Result<ValueId> {
        match self.target(g, v) {
            (gv, false) => Ok(gv),
            (_, true) => Err(unsupported(g, v, op)),
        }
    }

    fn grow(&mut self, g: &Graph) {
        self.of.resize(g.values.len(), None);
        self.requires.resize(g.values.len(), false);
    }
}

fn new_grad(g: &mut Graph, v: ValueId) -> ValueId {
    let name = format!("d{}", g.values[v].name);
    let shape = g.values[v].shape.clone();
    g.value(name, &shape, Role::Gradient)
}

fn unsupported(g: &Graph, v: ValueId, op: &str) -> Error {
    Error::Invalid(format!(
        "graph: {op} overwrites its input gradient, but {} has another consumer",
        g.values[v].name
    ))
}

fn back(g: &mut Graph, fwd: &Node, op: Op, inputs: Vec<ValueId>, outputs: Vec<ValueId>) {
    g.push(Node {
        op,
        inputs,
        outputs,
        temps: Vec::new(),
        accumulate: false,
        layer: fwd.layer,
        phase: Phase::Backward,
    });
}

/// Appends the backward of forward node `n` (its outputs' gradients, where they exist,
/// are complete: every consumer came later in the forward and was handled first).
/// Returns the sibling gradient pairs an add created (see `autodiff::check_aliases`).
pub(crate) fn backward(
    g: &mut Graph,
    n: &Node,
    gr: &mut Grads,
) -> Result<Option<(ValueId, ValueId)>> {
    // What the rule reads of `gr` before it adds gradients: whether each input requires
    // one, and the outputs' (complete) gradients.
    let requires: Vec<bool> = n.inputs.iter().map(|&v| gr.requires[v]).collect();
    let req = |v: ValueId| {
        n.inputs
            .iter()
            .position(|&i| i == v)
            .is_some_and(|k| requires[k])
    };
    let out_grads: Vec<Option<ValueId>> = n.outputs.iter().map(|&o| gr.of[o]).collect();
    let dy = |i: usize| out_grads[i];
    match &n.op {
        Op::Loss { ce } => {
            let (h, head, t) = (n.inputs[0], n.inputs[1], n.inputs[2]);
            if !req(h) {
                return Ok(None);
            }
            let dh = gr.fresh(g, h, "cross_entropy'")?;
            let chunk = g.values[n.temps[0]].shape.clone();
            let logits = g.value("loss.logits_chunk'", &chunk, Role::Temp);
            let count = g.value("loss.count", &[1], Role::Temp);
            g.push(Node {
                op: Op::LossBackward { ce: *ce },
                inputs: vec![h, head, t, n.outputs[1]],
                outputs: vec![dh],
                temps: vec![logits, count],
                accumulate: false,
                layer: None,
                phase: Phase::Backward,
            });
        }
        Op::Gather => {
            let (x, rows) = (n.inputs[0], n.inputs[1]);
            if let (Some(dy), true) = (dy(0), req(x)) {
                let dx = gr.fresh(g, x, "scatter_rows")?;
                back(g, n, Op::Scatter, vec![dy, rows], vec![dx]);
            }
        }
        Op::RmsNorm { norm } => {
            let (x, w) = (n.inputs[0], n.inputs[1]);
            if let (Some(dy), true) = (dy(0), req(x)) {
                let (dx, acc) = gr.target(g, x);
                back(
                    g,
                    n,
                    Op::RmsNormBackward { norm: *norm },
                    vec![x, w, dy],
                    vec![dx],
                );
                g.nodes.last_mut().expect("pushed").accumulate = acc;
            }
        }
        Op::Linear { proj } => {
            let (x, w0) = (n.inputs[0], n.inputs[1]);
            let Some(dy) = dy(0) else { return Ok(None) };
            if !proj.adapted && !req(x) {
                return Ok(None);
            }
            let (outs, acc) = if req(x) {
                let (dx, acc) = gr.target(g, x);
                (vec![dx], acc)
            } else {
                (Vec::new(), false)
            };
            // x is read only for the adapter's gradients: an unadapted product's
            // backward does not keep its input alive.
            let ins = if proj.adapted {
                vec![x, w0, dy]
            } else {
                vec![w0, dy]
            };
            back(g, n, Op::LinearBackward { proj: *proj }, ins, outs);
            g.nodes.last_mut().expect("pushed").accumulate = acc;
        }
        Op::Rope { seq, head_size } => {
            let (x, inv) = (n.inputs[0], n.inputs[1]);
            if let (Some(dy), true) = (dy(0), req(x)) {
                if gr.of[x].is_some() {
                    return Err(unsupported(g, x, "rope'"));
                }
                let name = format!("d{}", g.values[x].name);
                let shape = g.values[x].shape.clone();
                let dx = g.alias(name, &shape, Role::Gradient, dy, 0);
                gr.grow(g);
                gr.of[x] = Some(dx);
                let op = Op::RopeBackward {
                    seq: *seq,
                    head_size: *head_size,
                };
                back(g, n, op, vec![dy, inv], vec![dx]);
            }
        }
        Op::Attention { layer, batch, seq } => {
            let (q, k, v) = (n.inputs[0], n.inputs[1], n.inputs[2]);
            let Some(d_o) = dy(0) else { return Ok(None) };
            if !(req(q) || req(k) || req(v)) {
                return Ok(None);
            }
            let dq = gr.fresh(g, q, "attention'")?;
            let dk = gr.fresh(g, k, "attention'")?;
            let dv = gr.fresh(g, v, "attention'")?;
            let rows = g.values[q].shape[0];
            let heads = g.config.num_heads;
            let delta = g.value(format!("layers.{layer}.delta"), &[rows, heads], Role::Temp);
            let (o, lse) = (n.outputs[0], n.outputs[1]);
            g.push(Node {
                op: Op::AttentionBackward {
                    layer: *layer,
                    batch: *batch,
                    seq: *seq,
                },
                inputs: vec![q, k, v, o, lse, d_o],
                outputs: vec![dq, dk, dv],
                temps: vec![delta],
                accumulate: false,
                layer: n.layer,
                phase: Phase::Backward,
            });
        }
        Op::Glu { act } => {
            let (gate, up) = (n.inputs[0], n.inputs[1]);
            if let (Some(dm), true) = (dy(0), req(gate) || req(up)) {
                let dg = gr.fresh(g, gate, "glu'")?;
                let du = gr.fresh(g, up, "glu'")?;
                back(
                    g,
                    n,
                    Op::GluBackward { act: *act },
                    vec![gate, up, dm],
                    vec![dg, du],
                );
            }
        }
        Op::Add => {
            let Some(dy) = dy(0) else { return Ok(None) };
            let mut made = Vec::new();
            for &x in &n.inputs {
                if !req(x) {
                    continue;
                }
                if gr.of[x].is_some() {
                    return Err(unsupported(g, x, "add'"));
                }
                let name = format!("d{}", g.values[x].name);
                let shape = g.values[x].shape.clone();
                let dx = g.alias(name, &shape, Role::Gradient, dy, 0);
                gr.grow(g);
                gr.of[x] = Some(dx);
                made.push(dx);
            }
            if let [a, b] = made[..] {
                return Ok(Some((a, b)));
            }
        }
        Op::Embed { .. } => {}
        op => {
            if n.outputs
                .iter()
                .any(|&o| gr.of.get(o).copied().flatten().is_some())
            {
                return Err(Error::Invalid(format!(
                    "graph: {} has no backward (an inference op on the loss's path)",
                    op.name()
                )));
            }
        }
    }
    Ok(None)
}
