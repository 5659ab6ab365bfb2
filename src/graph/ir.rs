//! The op graph: values with a shape, a dtype and a role, and nodes that run one kernel
//! family over them. A graph is a description only — no buffers, no dispatches — so the
//! same graph is planned for a memory estimate, printed by `boha graph`, and compiled
//! into a dispatch list ([`super::compile`]).
//!
//! Nodes are kept in execution order: the builder appends the forward, reverse mode
//! ([`super::autodiff`]) appends the backward, and gradient checkpointing inserts
//! recomputed copies of a layer's forward before its backward. Every value is written by
//! exactly one node (or is bound from outside: inputs, weights, caches), except that a
//! gradient may be accumulated (+=) by several nodes; `Node::accumulate` says which.

use crate::model::config::Activation;
use crate::model::ModelConfig;
use crate::ops::cross_entropy::CrossEntropy;
use crate::ops::rmsnorm::RmsNorm;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// Element type of a value as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    /// Token ids and row indices: u32 bit patterns in a 4-byte word.
    U32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

/// Where a value's storage comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Bound from outside and never planned: frozen weights, RoPE tables, KV caches.
    External,
    /// Written by the host before a run or read back after it (ids, targets, the loss,
    /// logits): planned, alive for the whole run.
    Io,
    /// A forward intermediate.
    Activation,
    /// ∂L/∂(a value).
    Gradient,
    /// Scratch one node uses while it runs (attention's per-row deltas, the loss's
    /// logits chunk and statistics).
    Temp,
    /// The adapted matrices' shared scratch (gradient partials, bottleneck U): alive for
    /// the whole run, since the forward uses it too.
    AdapterScratch,
}

/// A value: a tensor of `shape` (row-major) and `dtype`.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub role: Role,
    /// Storage shared with another value at an element offset: in-place ops (RoPE), the
    /// identity gradients of residual adds, row views.
    pub alias: Option<(ValueId, usize)>,
}

impl Value {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A projection of a layer: which weight a linear node multiplies by, and the key of its
/// adapter when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proj {
    pub layer: usize,
    pub name: &'static str,
    pub adapted: bool,
}

/// The kernel family a node runs. Inputs and outputs are listed per variant, in the
/// order `Node::inputs` / `Node::outputs` hold them.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    // ---- forward ----
    /// \[table, ids\] → \[x\]: x\[i\] = scale · table\[ids\[i\]\]
    Embed { scale: f32 },
    /// \[x, w\] → \[y\]: y = x / rms(x) · (w or 1 + w)
    RmsNorm { norm: RmsNorm },
    /// \[x, W0 (, bias)\] → \[y\]: y = x·W'ᵀ (+ bias), W' = W0 or W0 adapted
    Linear { proj: Proj },
    /// \[x, inv_freq (, starts)\] → \[y\], y aliasing x: rotate-half RoPE in place
    Rope { seq: usize, head_size: usize },
    /// [q, k, v] → [o, lse]: causal GQA with the per-row logsumexp saved
    Attention {
        layer: usize,
        batch: usize,
        seq: usize,
    },
    /// \[new, starts\] → \[cache\]: new keys or values written into the cache at `starts`
    CacheWrite {
        layer: usize,
        batch: usize,
        seq: usize,
    },
    /// \[q, k_cache, v_cache, starts\] → \[o\]: attention over the cached keys
    AttentionCached {
        layer: usize,
        batch: usize,
        seq: usize,
    },
    /// \[g, u\] → \[m\]: m = act(g) ⊙ u
    Glu { act: Activation },
    /// \[a, b\] → \[y\]: y = a + b
    Add,
    /// \[x, rows\] → \[y\]: y\[i\] = x\[rows\[i\]\] (rows ≥ N give zeros)
    Gather,
    /// \[x\] → \[y\]: y is rows start.. of x (a view, no kernel)
    Rows { start: usize },
    /// [h, head, targets] → [loss, lse], temps [logits chunk, statistics]: the chunked
    /// mean cross-entropy
    Loss { ce: CrossEntropy },
    /// \[h, head\] → \[logits\]: logits = h·headᵀ, soft-capped
    Logits { softcap: Option<f32> },
    // ---- backward ----
    /// \[h, head, targets, lse\] → \[dh\], temps \[logits chunk, count\]
    LossBackward { ce: CrossEntropy },
    /// \[dy, rows\] → \[dx\]: dx = 0, dx\[rows\[i\]\] = dy\[i\]
    Scatter,
    /// \[x, w, dy\] → \[dx\]
    RmsNormBackward { norm: RmsNorm },
    /// \[x, W0, dy\] → \[dx\] or \[\]: dx (+)= dy·W', and the adapter's dA, dB (+=)
    LinearBackward { proj: Proj },
    /// \[dy, inv_freq\] → \[dx\], dx aliasing dy: the inverse rotation in place
    RopeBackward { seq: usize, head_size: usize },
    /// \[q, k, v, o, lse, do\] → \[dq, dk, dv\], temps \[delta\]
    AttentionBackward {
        layer: usize,
        batch: usize,
        seq: usize,
    },
    /// [g, u, dm] → [dg, du]
    GluBackward { act: Activation },
}

impl Op {
    /// A short name for printing.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Embed { .. } => "embed",
            Op::RmsNorm { .. } => "rmsnorm",
            Op::Linear { .. } => "linear",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::CacheWrite { .. } => "cache_write",
            Op::AttentionCached { .. } => "attention_cached",
            Op::Glu { .. } => "glu",
            Op::Add => "add",
            Op::Gather => "gather_rows",
            Op::Rows { .. } => "rows",
            Op::Loss { .. } => "cross_entropy",
            Op::Logits { .. } => "logits",
            Op::LossBackward { .. } => "cross_entropy'",
            Op::Scatter => "scatter_rows",
            Op::RmsNormBackward { .. } => "rmsnorm'",
            Op::LinearBackward { .. } => "linear'",
            Op::RopeBackward { .. } => "rope'",
            Op::AttentionBackward { .. } => "attention'",
            Op::GluBackward { .. } => "glu'",
        }
    }
}

/// When a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
    /// A layer's forward replayed before its backward (gradient checkpointing).
    Recompute,
}

/// One kernel family applied to values.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub temps: Vec<ValueId>,
    /// Outputs are added to (+=) instead of overwritten.
    pub accumulate: bool,
    /// The decoder layer the node belongs to (None: embedding, final norm, loss).
    pub layer: Option<usize>,
    pub phase: Phase,
}

/// Values and nodes in execution order, with the config they were built for.
#[derive(Clone, Debug)]
pub struct Graph {
    pub config: ModelConfig,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    /// The scalar the backward starts from (the mean loss), when the graph has one.
    pub loss: Option<ValueId>,
}

impl Graph {
    pub fn new(config: ModelConfig) -> Graph {
        Graph {
            config,
            values: Vec::new(),
            nodes: Vec::new(),
            loss: None,
        }
    }

    /// Adds a value.
    pub fn value(&mut self, name: impl Into<String>, shape: &[usize], role: Role) -> ValueId {
        self.typed(name, shape, DType::F32, role)
    }

    /// Adds a value of `dtype`.
    pub fn typed(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        dtype: DType,
        role: Role,
    ) -> ValueId {
        self.values.push(Value {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
            role,
            alias: None,
        });
        self.values.len() - 1
    }

    /// Adds a value stored in `of`'s storage at element `offset`.
    pub fn alias(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        role: Role,
        of: ValueId,
        offset: usize,
    ) -> ValueId {
        let id = self.value(name, shape, role);
        self.values[id].alias = Some((of, offset));
        id
    }

    /// The value whose storage `v` lives in, and the element offset there.
    pub fn root(&self, v: ValueId) -> (ValueId, usize) {
        let (mut v, mut off) = (v, 0);
        while let Some((of, o)) = self.values[v].alias {
            v = of;
            off += o;
        }
        (v, off)
    }

    /// Appends a node.
    pub fn push(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// The id of the value named `name` (the first one), for tests and printing.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }
}
