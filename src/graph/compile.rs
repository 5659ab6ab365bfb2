//! Compiles a planned graph into dispatches: allocates the planned buffers
//! ([`Allocation`]), binds weights, caches and adapters, and emits each node's kernels
//! once ([`emit`]). The result is replayed every step — one submit — with the host
//! writing only the input values (ids, targets, RoPE starts) in between.

use std::ops::Range;

use super::ir::{Graph, Node, Op, Role};
use super::liveness::{self, MemoryPlan};
use crate::adapters::grad::GradScratch;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::transformer::{Adapters, Weights};
use crate::ops::cross_entropy;
use crate::ops::elementwise::fill;
use crate::ops::gemm::{matmul_nn, matmul_nt};
use crate::ops::{activation, attention, embedding, rmsnorm, rope};

/// A graph's buffers and each value's tensor view.
pub struct Allocation {
    pub plan: MemoryPlan,
    pub buffers: Vec<Tensor>,
    /// value → its view (planned values); external values are bound at [`emit`].
    pub tensors: Vec<Option<Tensor>>,
}

impl Allocation {
    /// Plans and allocates `g`'s buffers.
    pub fn new(gpu: &Gpu, g: &Graph) -> Result<Allocation> {
        let plan = liveness::plan(g);
        let buffers: Vec<Tensor> = plan
            .buffers
            .iter()
            .map(|&n| gpu.zeros(&[n]))
            .collect::<Result<_>>()?;
        let tensors = g
            .values
            .iter()
            .zip(&plan.slots)
            .map(|(v, slot)| match slot {
                Some((b, off)) => buffers[*b].view(*off, v.len())?.reshape(&v.shape).map(Some),
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(Allocation {
            plan,
            buffers,
            tensors,
        })
    }

    /// The planned tensor of the value named `name`.
    pub fn get(&self, g: &Graph, name: &str) -> Result<Tensor> {
        g.find(name)
            .and_then(|v| self.tensors[v].clone())
            .ok_or_else(|| Error::Invalid(format!("graph: no planned value '{name}'")))
    }

    /// The adapters' shared scratch, when the graph declares it.
    pub fn adapter_scratch(&self, g: &Graph) -> Option<GradScratch> {
        let a = self.get(g, "adapters.partials_a").ok()?;
        let b = self.get(g, "adapters.partials_b").ok()?;
        let u = self.get(g, "adapters.bottleneck").ok()?;
        Some(GradScratch::from_parts(a, b, u))
    }
}

/// Emitted dispatches, with the range each node produced.
pub struct Compiled {
    pub dispatches: Vec<Dispatch>,
    pub ranges: Vec<Range<usize>>,
}

impl Compiled {
    /// The dispatches of nodes `nodes` (a contiguous range of the graph's nodes).
    pub fn slice(&self, nodes: Range<usize>) -> &[Dispatch] {
        if nodes.is_empty() {
            return &[];
        }
        let start = self.ranges[nodes.start].start;
        let end = self.ranges[nodes.end - 1].end;
        &self.dispatches[start..end]
    }
}

/// Emits every node of `g` over `alloc`'s buffers, `w`'s weights, `adapters` and the
/// `extra` externals (KV caches, by value name).
pub fn emit(
    gpu: &Gpu,
    g: &Graph,
    alloc: &Allocation,
    w: &Weights,
    adapters: Option<&Adapters>,
    extra: &[(String, Tensor)],
) -> Result<Compiled> {
    let mut tensors = alloc.tensors.clone();
    for (v, val) in g.values.iter().enumerate() {
        if val.role != Role::External {
            continue;
        }
        let t = match extra.iter().find(|(n, _)| *n == val.name) {
            Some((_, t)) => t.clone(),
            None => match w.tensor(&val.name) {
                Some(t) => t.clone(),
                None => continue,
            },
        };
        tensors[v] = Some(t);
    }
    let mut dispatches = Vec::new();
    let mut ranges = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let start = dispatches.len();
        let get = |v: usize| -> Result<&Tensor> {
            tensors[v].as_ref().ok_or_else(|| {
                Error::Invalid(format!(
                    "graph: {} of {} has no storage",
                    g.values[v].name,
                    n.op.name()
                ))
            })
        };
        dispatches.extend(node(gpu, n, &get, w, adapters).map_err(|e| match e {
            Error::Invalid(m) => {
                Error::Invalid(format!("{} (layer {:?}): {m}", n.op.name(), n.layer))
            }
            e => e,
        })?);
        ranges.push(start..dispatches.len());
    }
    Ok(Compiled { dispatches, ranges })
}

fn node<'t>(
    gpu: &Gpu,
    n: &Node,
    get: &dyn Fn(usize) -> Result<&'t Tensor>,
    w: &Weights,
    adapters: Option<&Adapters>,
) -> Result<Vec<Dispatch>> {
    let i = |k: usize| get(n.inputs[k]);
    let o = |k: usize| get(n.outputs[k]);
    let t = |k: usize| get(n.temps[k]);
    // An adapted projection must find its adapter: a graph built for other targets
    // than the adapters given is an error, not a silent frozen product.
    let adapter = |proj: &crate::graph::ir::Proj| {
        if !proj.adapted {
            return Ok(None);
        }
        adapters
            .and_then(|a| a.get(proj.layer, proj.name))
            .map(Some)
            .ok_or_else(|| {
                Error::Invalid(format!("no adapter on layers.{}.{}", proj.layer, proj.name))
            })
    };
    Ok(match &n.op {
        Op::Embed { scale } => embedding::forward(gpu, i(0)?, i(1)?, o(0)?, *scale)?,
        Op::RmsNorm { norm } => rmsnorm::forward(gpu, norm, i(0)?, i(1)?, o(0)?)?,
        Op::Linear { proj } => {
            let (x, w0, y) = (i(0)?, i(1)?, o(0)?);
            let mut ds = match adapter(proj)? {
                Some(ad) => ad.forward(gpu, w0, x, y)?,
                None => matmul_nt(gpu, x, w0, y, 0.0)?,
            };
            if n.inputs.len() > 2 {
                ds.extend(w.add_bias(gpu, i(2)?, y)?);
            }
            ds
        }
        Op::Rope { seq, head_size } => {
            let starts = if n.inputs.len() > 2 {
                Some(i(2)?)
            } else {
                None
            };
            rope::forward(gpu, o(0)?, i(1)?, starts, *seq, *head_size)?
        }
        Op::Attention { layer, batch, seq } => {
            let a = w.attention(*layer, *batch, *seq);
            attention::forward(gpu, &a, i(0)?, i(1)?, i(2)?, o(0)?, o(1)?)?
        }
        Op::CacheWrite { layer, batch, seq } => {
            let a = w.attention(*layer, *batch, *seq);
            attention::cache_write(gpu, &a, i(0)?, o(0)?, i(1)?)?
        }
        Op::AttentionCached { layer, batch, seq } => {
            let a = w.attention(*layer, *batch, *seq);
            attention::forward_cached(gpu, &a, i(0)?, i(1)?, i(2)?, i(3)?, o(0)?)?
        }
        Op::Glu { act } => activation::glu_forward(gpu, *act, i(0)?, i(1)?, o(0)?)?,
        Op::Add => crate::ops::elementwise::add(gpu, i(0)?, i(1)?, o(0)?)?,
        Op::Gather => embedding::forward(gpu, i(0)?, i(1)?, o(0)?, 1.0)?,
        Op::Rows { .. } => Vec::new(),
        Op::Loss { ce } => cross_entropy::forward_with(
            gpu,
            ce,
            i(0)?,
            i(1)?,
            i(2)?,
            o(0)?,
            o(1)?,
            Some(cross_entropy::Rooms {
                logits: t(0)?,
                rows: t(1)?,
            }),
        )?,
        Op::Logits { softcap } => cross_entropy::logits(gpu, i(0)?, i(1)?, o(0)?, *softcap)?,
        Op::LossBackward { ce } => cross_entropy::backward_with(
            gpu,
            ce,
            i(0)?,
            i(1)?,
            i(2)?,
            i(3)?,
            o(0)?,
            1.0,
            Some(cross_entropy::Rooms {
                logits: t(0)?,
                rows: t(1)?,
            }),
        )?,
        Op::Scatter => {
            let mut ds = fill(gpu, 0.0, o(0)?)?;
            ds.extend(embedding::scatter(gpu, i(0)?, i(1)?, o(0)?)?);
            ds
        }
        Op::RmsNormBackward { norm } => {
            rmsnorm::backward(gpu, norm, i(0)?, i(1)?, i(2)?, o(0)?, n.accumulate)?
        }
        Op::LinearBackward { proj } => {
            let dx = if n.outputs.is_empty() {
                None
            } else {
                Some(o(0)?)
            };
            match adapter(proj)? {
                Some(ad) => {
                    let (x, w0, dy) = (i(0)?, i(1)?, i(2)?);
                    let mut ds = Vec::new();
                    if let (Some(dx), false) = (dx, n.accumulate) {
                        ds.extend(fill(gpu, 0.0, dx)?);
                    }
                    ds.extend(ad.backward(gpu, w0, x, dy, dx, None)?);
                    ds
                }
                None => {
                    let (w0, dy) = (i(0)?, i(1)?);
                    match dx {
                        Some(dx) => {
                            matmul_nn(gpu, dy, w0, dx, if n.accumulate { 1.0 } else { 0.0 })?
                        }
                        None => Vec::new(),
                    }
                }
            }
        }
        Op::RopeBackward { seq, head_size } => {
            rope::backward(gpu, o(0)?, i(1)?, None, *seq, *head_size)?
        }
        Op::AttentionBackward { layer, batch, seq } => {
            let a = w.attention(*layer, *batch, *seq);
            attention::backward_with(
                gpu,
                &a,
                [i(0)?, i(1)?, i(2)?, i(3)?, i(4)?, i(5)?],
                [o(0)?, o(1)?, o(2)?],
                Some(t(0)?),
            )?
        }
        Op::GluBackward { act } => {
            activation::glu_backward(gpu, *act, i(0)?, i(1)?, i(2)?, o(0)?, o(1)?)?
        }
    })
}
