//! The backward's scratch values and their live ranges, declared once for the trainer
//! (which allocates them) and for `graph::memory` (which only sizes them): the estimate
//! and the allocation run the same [`Planner`] over the same list.
//!
//! Steps: 0 loss backward, 1 final norm; then per layer (its values die inside it, so
//! one frame serves every layer) 2 post-MLP norm, 3 down, 4 GLU, 5 gate/up, 6 MLP norm,
//! 7 post-attention norm, 8 o, 9 attention, 10 q/k/v, 11 input norm. In elements, with
//! N tokens, R loss rows (N, or the gathered positions) and `chunk` the loss's
//! vocabulary chunk:
//!
//! ```text
//! logits  R·chunk  step 0       (the forward's chunks too: nothing here is live then)
//! dres    N·C      0 .. end     dhf  N·C  0 .. 1
//! dd      N·C      2 .. 3       dm   N·F  3 .. 4      dg, du  N·F  4 .. 5
//! dh2     N·C      5 .. 6       da   N·C  7 .. 8      datt    N·Q  8 .. 9
//! dq      N·Q      9 .. 10      dk, dv  N·K  9 .. 10  dh1     N·C  10 .. 11
//! ```

use super::plan::Planner;
use crate::model::ModelConfig;

/// Value ids in a [`Planner`] after [`declare`].
pub(crate) struct Ids {
    pub logits: usize,
    pub dres: usize,
    pub dhf: usize,
    pub dd: usize,
    pub dm: usize,
    pub dg: usize,
    pub du: usize,
    pub dh2: usize,
    pub da: usize,
    pub datt: usize,
    pub dq: usize,
    pub dk: usize,
    pub dv: usize,
    pub dh1: usize,
}

/// Declares the backward's values for `n` tokens and `logits` elements of loss scratch.
pub(crate) fn declare(p: &mut Planner, cfg: &ModelConfig, n: usize, logits: usize) -> Ids {
    let (c, f, q, k) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.q_dim(),
        cfg.kv_dim(),
    );
    Ids {
        logits: p.value("logits", logits, 0, 0),
        dres: p.value("dres", n * c, 0, usize::MAX),
        dhf: p.value("dhf", n * c, 0, 1),
        dd: p.value("dd", n * c, 2, 3),
        dm: p.value("dm", n * f, 3, 4),
        dg: p.value("dg", n * f, 4, 5),
        du: p.value("du", n * f, 4, 5),
        dh2: p.value("dh2", n * c, 5, 6),
        da: p.value("da", n * c, 7, 8),
        datt: p.value("datt", n * q, 8, 9),
        dq: p.value("dq", n * q, 9, 10),
        dk: p.value("dk", n * k, 9, 10),
        dv: p.value("dv", n * k, 9, 10),
        dh1: p.value("dh1", n * c, 10, 11),
    }
}
