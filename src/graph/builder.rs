//! Builds a decoder's forward graph from its config. One layer is described once
//! (`layer`); Llama, Mistral, Gemma-2 and Qwen2 differ only in what the config turns
//! on: q/k/v biases (Qwen2), post-norms, GeGLU, embedding scale and soft-caps (Gemma-2),
//! sliding windows (Mistral, Gemma-2's alternate layers). With N = batch·seq rows:
//!
//! ```text
//! x0 = embed(ids)
//! per layer:  h1 = rmsnorm(x, attn_norm)
//!             q, k, v = linear(h1, Wq [+ bq]), linear(h1, Wk [+ bk]), linear(h1, Wv [+ bv])
//!             q, k = rope(q), rope(k)                        (in place)
//!             att, lse = attention(q, k, v)   — or, cached: write k, v at `starts`,
//!                                               attend over the cache
//!             a = linear(att, Wo);  a2 = rmsnorm(a, post_attn_norm) or a
//!             xmid = x + a2;  h2 = rmsnorm(xmid, mlp_norm)
//!             m = glu(linear(h2, Wgate), linear(h2, Wup));  d = linear(m, Wdown)
//!             d2 = rmsnorm(d, post_mlp_norm) or d;  x' = xmid + d2
//! head:       loss = cross_entropy(rmsnorm(x_L, final_norm) [gathered rows], lm_head)
//!             or logits = rmsnorm(last rows of x_L)·lm_headᵀ (soft-capped)
//! ```

use super::ir::{DType, Graph, Node, Op, Phase, Proj, Role, ValueId};
use crate::adapters::AdapterSpec;
use crate::gpu::Gpu;
use crate::model::ModelConfig;
use crate::ops::cross_entropy::{self, CrossEntropy};
use crate::ops::rmsnorm::RmsNorm;

/// How attention sees its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attn {
    /// Keys are the same positions (training, scoring).
    Train,
    /// New keys go into per-layer caches of `capacity` positions at `starts`; attention
    /// reads the caches (prefill and decode).
    Cached { capacity: usize },
}

/// What the graph ends in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Head {
    /// The mean cross-entropy over the rows with a target; with `loss_rows` = Some(k)
    /// (k < N), only k gathered rows go through the LM head.
    Loss {
        ce: CrossEntropy,
        loss_rows: Option<usize>,
    },
    /// Logits of the last `rows` positions.
    Logits { rows: usize },
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub batch: usize,
    pub seq: usize,
    /// Adapted projections (names of [`crate::model::transformer::PROJECTIONS`]), the
    /// same in every layer.
    pub targets: Vec<String>,
    pub attn: Attn,
    pub head: Head,
    /// Declare the adapted matrices' shared scratch (a trainer's), sized for this spec.
    pub adapter_scratch: Option<AdapterSpec>,
}

/// Builds the forward graph.
pub fn decoder(gpu: &Gpu, cfg: &ModelConfig, o: &BuildOptions) -> Graph {
    let mut g = Graph::new(cfg.clone());
    let n = o.batch * o.seq;
    let c = cfg.hidden_size;
    let ids = g.typed("ids", &[n], DType::U32, Role::Io);
    let table = g.value("embed", &[cfg.vocab_size, c], Role::External);
    let inv_freq = g.value("rope.inv_freq", &[cfg.head_dim / 2], Role::External);
    let starts = matches!(o.attn, Attn::Cached { .. })
        .then(|| g.typed("starts", &[o.batch], DType::U32, Role::External));
    if let Some(spec) = &o.adapter_scratch {
        declare_adapter_scratch(&mut g, gpu, spec, &o.targets, n);
    }
    let mut x = g.value("x.0", &[n, c], Role::Activation);
    node(
        &mut g,
        Op::Embed {
            scale: cfg.embedding_scale(),
        },
        &[table, ids],
        &[x],
        None,
    );
    let ctx = Ctx {
        o,
        inv_freq,
        starts,
        norm: RmsNorm {
            eps: cfg.rms_norm_eps,
            unit_offset: cfg.norm_weight_offset,
        },
    };
    for l in 0..cfg.num_layers {
        x = layer(&mut g, &ctx, l, x);
    }
    head(&mut g, gpu, &ctx, x);
    g
}

struct Ctx<'a> {
    o: &'a BuildOptions,
    inv_freq: ValueId,
    starts: Option<ValueId>,
    norm: RmsNorm,
}

fn node(g: &mut Graph, op: Op, inputs: &[ValueId], outputs: &[ValueId], layer: Option<usize>) {
    g.push(Node {
        op,
        inputs: inputs.to_vec(),
        outputs: outputs.to_vec(),
        temps: Vec::new(),
        accumulate: false,
        layer,
        phase: Phase::Forward,
    });
}

/// One decoder layer from residual `x`; returns the next residual.
fn layer(g: &mut Graph, cx: &Ctx, l: usize, x: ValueId) -> ValueId {
    let cfg = g.config.clone();
    let o = cx.o;
    let n = o.batch * o.seq;
    let (c, f, qd, kvd) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.q_dim(),
        cfg.kv_dim(),
    );
    let at = Some(l);
    let w = |g: &mut Graph, name: &str, shape: &[usize]| {
        g.value(format!("layers.{l}.{name}"), shape, Role::External)
    };
    let act = |g: &mut Graph, name: &str, cols: usize| {
        g.value(format!("layers.{l}.{name}"), &[n, cols], Role::Activation)
    };
    let norm = |g: &mut Graph, input: ValueId, weight: &str, out: &str| {
        let wv = w(g, weight, &[c]);
        let y = act(g, out, c);
        node(g, Op::RmsNorm { norm: cx.norm }, &[input, wv], &[y], at);
        y
    };
    let linear = |g: &mut Graph, input: ValueId, name: &'static str, d_out: usize, d_in, bias| {
        let wv = w(g, name, &[d_out, d_in]);
        let y = act(g, &format!("{name}_out"), d_out);
        let mut ins = vec![input, wv];
        if bias {
            ins.push(w(g, &format!("{name}_bias"), &[d_out]));
        }
        let proj = Proj {
            layer: l,
            name,
            adapted: o.targets.iter().any(|t| t == name),
        };
        node(g, Op::Linear { proj }, &ins, &[y], at);
        y
    };

    let h1 = norm(g, x, "attn_norm", "h1");
    let q = linear(g, h1, "q", qd, c, cfg.qkv_bias);
    let k = linear(g, h1, "k", kvd, c, cfg.qkv_bias);
    let v = linear(g, h1, "v", kvd, c, cfg.qkv_bias);
    let rope = |g: &mut Graph, input: ValueId, name: &str, cols: usize| {
        let y = g.alias(
            format!("layers.{l}.{name}"),
            &[n, cols],
            Role::Activation,
            input,
            0,
        );
        let mut ins = vec![input, cx.inv_freq];
        ins.extend(cx.starts);
        let op = Op::Rope {
            seq: o.seq,
            head_size: cfg.head_dim,
        };
        node(g, op, &ins, &[y], at);
        y
    };
    let qr = rope(g, q, "q_rope", qd);
    let kr = rope(g, k, "k_rope", kvd);
    let att = act(g, "att", qd);
    match (o.attn, cx.starts) {
        (Attn::Cached { capacity }, Some(starts)) => {
            let shape = [o.batch, capacity, kvd];
            let kc = g.value(format!("layers.{l}.k_cache"), &shape, Role::External);
            let vc = g.value(format!("layers.{l}.v_cache"), &shape, Role::External);
            let write = Op::CacheWrite {
                layer: l,
                batch: o.batch,
                seq: o.seq,
            };
            node(g, write.clone(), &[kr, starts], &[kc], at);
            node(g, write, &[v, starts], &[vc], at);
            let op = Op::AttentionCached {
                layer: l,
                batch: o.batch,
                seq: o.seq,
            };
            node(g, op, &[qr, kc, vc, starts], &[att], at);
        }
        _ => {
            let lse = act(g, "lse", cfg.num_heads);
            let op = Op::Attention {
                layer: l,
                batch: o.batch,
                seq: o.seq,
            };
            node(g, op, &[qr, kr, v], &[att, lse], at);
        }
    }
    let a = linear(g, att, "o", c, qd, false);
    let a2 = if cfg.post_norms {
        norm(g, a, "post_attn_norm", "a2")
    } else {
        a
    };
    let xmid = act(g, "xmid", c);
    node(g, Op::Add, &[x, a2], &[xmid], at);
    let h2 = norm(g, xmid, "mlp_norm", "h2");
    let gate = linear(g, h2, "gate", f, c, false);
    let up = linear(g, h2, "up", f, c, false);
    let m = act(g, "m", f);
    node(
        g,
        Op::Glu {
            act: cfg.hidden_activation,
        },
        &[gate, up],
        &[m],
        at,
    );
    let d = linear(g, m, "down", c, f, false);
    let d2 = if cfg.post_norms {
        norm(g, d, "post_mlp_norm", "d2")
    } else {
        d
    };
    let out = g.value(format!("x.{}", l + 1), &[n, c], Role::Activation);
    node(g, Op::Add, &[xmid, d2], &[out], at);
    out
}

fn head(g: &mut Graph, gpu: &Gpu, cx: &Ctx, x: ValueId) {
    let cfg = g.config.clone();
    let (n, c, v) = (cx.o.batch * cx.o.seq, cfg.hidden_size, cfg.vocab_size);
    let final_norm = g.value("final_norm", &[c], Role::External);
    let lm_head = g.value("lm_head", &[v, c], Role::External);
    let norm = Op::RmsNorm { norm: cx.norm };
    match cx.o.head {
        Head::Loss { ce, loss_rows } => {
            let hf = g.value("hf", &[n, c], Role::Activation);
            node(g, norm, &[x, final_norm], &[hf], None);
            let targets = g.typed("targets", &[n], DType::U32, Role::Io);
            let (h, t, r) = match loss_rows {
                Some(k) if k < n => {
                    let k = k.max(1);
                    let rows = g.typed("loss_rows", &[k], DType::U32, Role::Io);
                    let t = g.typed("loss_targets", &[k], DType::U32, Role::Io);
                    let h = g.value("h_rows", &[k, c], Role::Activation);
                    node(g, Op::Gather, &[hf, rows], &[h], None);
                    (h, t, k)
                }
                _ => (hf, targets, n),
            };
            let loss = g.value("loss", &[1], Role::Io);
            let lse = g.value("loss.lse", &[r], Role::Activation);
            let logits = g.value(
                "loss.logits_chunk",
                &[cross_entropy::scratch_len(gpu, &ce, r, c, v)],
                Role::Temp,
            );
            let stats = g.value("loss.stats", &[r, 3], Role::Temp);
            g.push(Node {
                op: Op::Loss { ce },
                inputs: vec![h, lm_head, t],
                outputs: vec![loss, lse],
                temps: vec![logits, stats],
                accumulate: false,
                layer: None,
                phase: Phase::Forward,
            });
            g.loss = Some(loss);
        }
        Head::Logits { rows } => {
            let rows = rows.clamp(1, n);
            let last = g.alias("x_last", &[rows, c], Role::Activation, x, (n - rows) * c);
            node(g, Op::Rows { start: n - rows }, &[x], &[last], None);
            let hf = g.value("hf", &[rows, c], Role::Activation);
            node(g, norm, &[last, final_norm], &[hf], None);
            let logits = g.value("logits", &[rows, v], Role::Io);
            let op = Op::Logits {
                softcap: cfg.final_logit_softcapping,
            };
            node(g, op, &[hf, lm_head], &[logits], None);
        }
    }
}

/// The three rooms every adapted matrix shares ([`crate::adapters::grad::GradScratch`]),
/// sized for the largest.
fn declare_adapter_scratch(
    g: &mut Graph,
    gpu: &Gpu,
    spec: &AdapterSpec,
    targets: &[String],
    n: usize,
) {
    let cfg = g.config.clone();
    let shapes: Vec<(usize, usize)> = targets
        .iter()
        .map(|t| super::memory::shape(&cfg, t))
        .collect();
    let (a, b, u) = crate::adapters::grad::rooms(gpu, shapes.iter().map(|&(o, i)| (spec, n, o, i)));
    for (name, len) in [
        ("adapters.partials_a", a),
        ("adapters.partials_b", b),
        ("adapters.bottleneck", u),
    ] {
        g.value(name, &[len], Role::AdapterScratch);
    }
}
