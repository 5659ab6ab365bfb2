//! The graph executor's training step (`boha::graph::Trainer`: the decoder as an op
//! graph, reverse mode derived from per-op rules, optional per-layer recomputation,
//! planned buffers) against central finite differences of the f64 CPU reference loss,
//! for every architecture the tests build and several adapter kinds; and the structure
//! of the derived graph itself (pruned backward, recomputation segments, buffer plan).
//!
//! Unlike tests/model_train.rs, which compares the GPU gradients with the reference's
//! analytic backward, nothing here trusts an analytic gradient: every sampled entry is
//! checked against (L(θ + h) − L(θ − h)) / 2h of the reference loss in f64.

mod common;

mod model_specs;

use std::collections::HashSet;

use boha::adapters::{AdapterSpec, Method};
use boha::gpu::Gpu;
use boha::graph::ir::{Graph, Op, Phase, Role};
use boha::graph::liveness;
use boha::graph::{train_graph, TrainOptions, Trainer, IGNORE};
use boha::loaders::{load_checkpoint, Checkpoint};
use boha::model::reference::Reference;
use boha::model::transformer::Adapters;
use boha::rng::Rng;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};

const BATCH: usize = 2;
const SEQ: usize = 7;
/// Three layers: a first, a middle and a last one (recomputation treats the last apart).
const LAYERS: usize = 3;
/// Finite-difference step on the f64 reference (central differences: O(h²) truncation,
/// ~1e-11 rounding on a loss of ~5).
const H: f64 = 1e-5;
/// |gpu − fd| ≤ TOL · scale, scale = the largest |fd| of the sampled entries of that
/// factor (which include the GPU's three largest entries, so it is that factor's
/// gradient magnitude). The GPU computes in f32; tests/model_train.rs holds it to the
/// same 2e-3 of the largest entry against the reference's analytic gradient.
const TOL: f64 = 2e-3;
/// Sampled entries per factor: the GPU's 3 largest and 3 random others.
const SAMPLES: usize = 6;

fn checkpoint(arch: &str) -> Checkpoint {
    let (name, mut spec) = model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == arch)
        .unwrap_or_else(|| panic!("no tiny spec {arch}"));
    spec.layers = LAYERS;
    let dir = temp_dir(&format!("graph-grad-{name}"));
    write_tiny_hf(&dir, &spec);
    load_checkpoint(&dir).unwrap()
}

/// Random tokens and targets, two targets ignored; with `sparse`, only every third
/// position keeps its target (a response-only loss, for gathered loss rows).
fn batch(v: usize, seed: u64, sparse: bool) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let tokens: Vec<u32> = (0..BATCH * SEQ).map(|_| rng.below(v) as u32).collect();
    let mut targets: Vec<u32> = (0..BATCH * SEQ).map(|_| rng.below(v) as u32).collect();
    targets[0] = IGNORE;
    targets[SEQ + 3] = IGNORE;
    if sparse {
        for (i, t) in targets.iter_mut().enumerate() {
            if i % 3 != 1 {
                *t = IGNORE;
            }
        }
    }
    (tokens, targets)
}

fn boha() -> AdapterSpec {
    AdapterSpec::from_options(Method::Boha, Some(2), None, Some(2), Some(1.0)).unwrap()
}

fn lora() -> AdapterSpec {
    AdapterSpec::from_options(Method::Lora, None, Some(3), None, Some(2.0)).unwrap()
}

fn abba() -> AdapterSpec {
    AdapterSpec::from_options(Method::Abba, None, Some(4), None, Some(1.5)).unwrap()
}

fn loha() -> AdapterSpec {
    AdapterSpec::from_options(Method::Loha, None, Some(6), None, None).unwrap()
}

/// One gradient check.
struct Case {
    arch: &'static str,
    kind: &'static str,
    spec: AdapterSpec,
    targets: &'static [&'static str],
    recompute: bool,
    loss_rows: Option<usize>,
}

/// The worst |got − fd| / (TOL · scale) over one factor's sample (≤ 1 passes), with
/// the entry it occurs at; scale = max |fd| of the sample.
fn worst(got: &[f64], fd: &[f64]) -> (f64, usize) {
    let scale = fd.iter().fold(0f64, |m, v| m.max(v.abs()));
    let mut w = (0.0, 0);
    for (i, (g, f)) in got.iter().zip(fd).enumerate() {
        let r = (g - f).abs() / (TOL * scale);
        if r > w.0 || r.is_nan() {
            w = (r, i);
        }
    }
    w
}

/// The GPU's three largest entries of `grad` and three random other ones.
fn sample(grad: &[f32], rng: &mut Rng) -> Vec<usize> {
    let mut by: Vec<usize> = (0..grad.len()).collect();
    by.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    let mut out: Vec<usize> = by.iter().copied().take(3.min(grad.len())).collect();
    let want = SAMPLES.min(grad.len());
    while out.len() < want {
        let j = rng.below(grad.len());
        if !out.contains(&j) {
            out.push(j);
        }
    }
    out
}

/// The reference loss's central difference in factor `which` (0: A, 1: B) of adapter
/// `key`, entry `j`.
fn finite_difference(
    reference: &mut Reference,
    key: &str,
    which: usize,
    j: usize,
    tokens: &[u32],
    targets: &[u32],
) -> f64 {
    let mut at = |delta: f64| {
        let ad = reference.adapters.get_mut(key).unwrap();
        let p = if which == 0 { &mut ad.a } else { &mut ad.b };
        let keep = p[j];
        p[j] = keep + delta;
        let l = reference.loss(tokens, targets, BATCH).unwrap();
        let ad = reference.adapters.get_mut(key).unwrap();
        let p = if which == 0 { &mut ad.a } else { &mut ad.b };
        p[j] = keep;
        l
    };
    let plus = at(H);
    let minus = at(-H);
    (plus - minus) / (2.0 * H)
}

/// Builds the trainer for `c`, gives every adapter random non-zero factors (mirrored
/// into the reference), runs one forward + backward on the GPU and checks the loss and
/// sampled gradient entries of three adapted matrices (layer 0, the middle layer, the
/// last layer) against finite differences of the reference loss.
fn check(gpu: &Gpu, c: &Case) {
    let what = format!(
        "{} {} {:?} recompute={} loss_rows={:?}",
        c.arch, c.kind, c.targets, c.recompute, c.loss_rows
    );
    let ck = checkpoint(c.arch);
    let opts = TrainOptions {
        recompute: c.recompute,
        ce_chunk: 100,
        loss_rows: c.loss_rows,
        ..TrainOptions::default()
    };
    let mut tr = Trainer::new(gpu, &ck, c.spec, c.targets, BATCH, SEQ, opts)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        tr.graph.nodes.iter().any(|n| n.phase == Phase::Recompute) == c.recompute,
        "{what}: recompute nodes"
    );
    let mut reference = Reference::new(&ck).unwrap();
    let mut rng = Rng::new(0x5eed ^ c.arch.len() as u64 ^ ((c.kind.len() as u64) << 8));
    // B must be non-zero, or every gradient of A (and whatever flows below) vanishes.
    common::randomize_adapters(gpu, &tr.adapters, &mut reference, &mut rng);
    assert_eq!(
        tr.parameters().len(),
        2 * reference.adapters.len(),
        "{what}: parameters"
    );

    let (tokens, targets) = batch(ck.config.vocab_size, 17, c.loss_rows.is_some());
    let loss = tr
        .gradients(gpu, &tokens, &targets)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let want = reference.loss(&tokens, &targets, BATCH).unwrap();
    assert!(
        ((loss as f64 - want) / want).abs() < 1e-4,
        "{what}: GPU loss {loss} vs reference {want}"
    );

    let names: Vec<String> = tr.adapters.iter().map(|(n, _)| n).collect();
    let projs: Vec<String> = tr.adapters.targets.clone();
    let last = ck.config.num_layers - 1;
    let keys = [
        format!("layers.0.{}", projs[0]),
        format!("layers.{}.{}", last / 2, projs[projs.len() / 2]),
        format!("layers.{last}.{}", projs[projs.len() - 1]),
    ];
    for key in &keys {
        assert!(names.contains(key), "{what}: no adapter {key} in {names:?}");
        let ad = tr
            .adapters
            .iter()
            .find(|(n, _)| n == key)
            .map(|(_, a)| a)
            .unwrap();
        for which in 0..2 {
            let factor = ["A", "B"][which];
            let grad = gpu
                .download(if which == 0 { &ad.grad_a } else { &ad.grad_b })
                .unwrap();
            assert!(
                grad.iter().all(|g| g.is_finite()),
                "{what} {key} d{factor}: not finite"
            );
            let at = sample(&grad, &mut rng);
            let got: Vec<f64> = at.iter().map(|&j| grad[j] as f64).collect();
            let fd: Vec<f64> = at
                .iter()
                .map(|&j| finite_difference(&mut reference, key, which, j, &tokens, &targets))
                .collect();
            let scale = fd.iter().fold(0f64, |m, v| m.max(v.abs()));
            // The check must be able to fail: a vanishing sample compares nothing.
            assert!(
                scale > 1e-5,
                "{what} {key} d{factor}: finite differences vanish ({fd:?}); the check \
                 would compare nothing"
            );
            let (r, i) = worst(&got, &fd);
            assert!(
                r <= 1.0,
                "{what} {key} d{factor}[{}]: GPU {} vs finite difference {} (|Δ| = {:e} > \
                 {TOL:e} · {scale:e}); sample {at:?}: GPU {got:?}, FD {fd:?}",
                at[i],
                got[i],
                fd[i],
                (got[i] - fd[i]).abs()
            );
            // And the tolerance is tight enough to see a 1% error in the largest entry.
            let mut off = got.clone();
            off[0] *= 1.01;
            assert!(
                worst(&off, &fd).0 > 1.0,
                "{what} {key} d{factor}: the tolerance cannot see a 1% error"
            );
        }
    }
}

/// Every architecture with the four adapter kinds; recomputation alternates so that each
/// architecture and each kind is checked with and without it.
fn check_arch(arch: &'static str, a: usize) {
    let Some(gpu) = common::gpu() else { return };
    let kinds: [(&str, AdapterSpec, &[&str]); 4] = [
        ("boha", boha(), &["all"]),
        ("lora", lora(), &["q", "v", "down"]),
        ("abba", abba(), &["k", "o", "up"]),
        ("loha", loha(), &["v", "gate", "down"]),
    ];
    for (k, (kind, spec, targets)) in kinds.into_iter().enumerate() {
        check(
            &gpu,
            &Case {
                arch,
                kind,
                spec,
                targets,
                recompute: (a + k) % 2 == 1,
                loss_rows: None,
            },
        );
    }
}

#[test]
fn llama_gradients_match_finite_differences() {
    check_arch("llama", 0);
}

#[test]
fn mistral_gradients_match_finite_differences() {
    check_arch("mistral", 1);
}

#[test]
fn gemma2_gradients_match_finite_differences() {
    check_arch("gemma2", 2);
}

#[test]
fn qwen2_gradients_match_finite_differences() {
    check_arch("qwen2", 3);
}

#[test]
fn gathered_loss_rows_gradients_match_finite_differences() {
    let Some(gpu) = common::gpu() else { return };
    // 5 of the 14 positions keep a target (room for 6, or exactly 5).
    for (arch, kind, spec, targets, recompute, k) in [
        ("llama", "boha", boha(), &["all"][..], false, 6),
        ("gemma2", "lora", lora(), &["q", "down"][..], true, 5),
        ("qwen2", "loha", loha(), &["k", "up"][..], true, 6),
    ] {
        check(
            &gpu,
            &Case {
                arch,
                kind,
                spec,
                targets,
                recompute,
                loss_rows: Some(k),
            },
        );
    }
}

fn graph(gpu: &Gpu, arch: &str, targets: &[&str], recompute: bool, rows: Option<usize>) -> Graph {
    let ck = checkpoint(arch);
    let targets = Adapters::parse_targets(targets).unwrap();
    let opts = TrainOptions {
        recompute,
        ce_chunk: 100,
        loss_rows: rows,
        ..TrainOptions::default()
    };
    train_graph(gpu, &ck.config, &boha(), &targets, BATCH, SEQ, &opts).unwrap()
}

/// No node gets two different storages in one buffer (aliases of one storage are the
/// same binding), and nothing is read before something wrote its storage.
fn check_plan(g: &Graph, what: &str) {
    let plan = liveness::plan(g);
    for (i, n) in g.nodes.iter().enumerate() {
        let touched: Vec<usize> = n
            .inputs
            .iter()
            .chain(&n.outputs)
            .chain(&n.temps)
            .copied()
            .collect();
        for (x, &v) in touched.iter().enumerate() {
            for &w in &touched[x + 1..] {
                if g.root(v).0 == g.root(w).0 {
                    continue;
                }
                if let (Some((bv, _)), Some((bw, _))) = (plan.slots[v], plan.slots[w]) {
                    assert_ne!(
                        bv,
                        bw,
                        "{what}: node {i} ({} {:?} layer {:?}) has {} and {} in buffer {bv}",
                        n.op.name(),
                        n.phase,
                        n.layer,
                        g.values[v].name,
                        g.values[w].name
                    );
                }
            }
        }
        for &v in n.inputs.iter().chain(&n.outputs).chain(&n.temps) {
            let role = g.values[v].role;
            if role == Role::External {
                continue;
            }
            assert!(
                plan.slots[v].is_some(),
                "{what}: node {i} touches unplanned {}",
                g.values[v].name
            );
        }
    }
    // Dataflow: an activation or gradient read by a node was written (into its storage)
    // by an earlier node.
    let mut written: HashSet<usize> = HashSet::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in &n.inputs {
            if matches!(g.values[v].role, Role::Activation | Role::Gradient) {
                assert!(
                    written.contains(&g.root(v).0),
                    "{what}: node {i} ({} {:?} layer {:?}) reads {} before it is written",
                    n.op.name(),
                    n.phase,
                    n.layer,
                    g.values[v].name
                );
            }
        }
        for &v in &n.outputs {
            written.insert(g.root(v).0);
        }
    }
}

#[test]
fn graph_structure_pruned_backward_recompute_and_plan() {
    let Some(gpu) = common::gpu() else { return };
    for arch in ["llama", "gemma2"] {
        let g = graph(&gpu, arch, &["q", "v"], false, None);
        let what = format!("{arch} q,v");
        let layers = g.config.num_layers;
        assert_eq!(layers, LAYERS);
        let name = |v: usize| g.values[v].name.as_str();

        // (a) Layer 0's backward stops at its lowest adapted projections.
        let x0 = g.find("x.0").expect("x.0");
        assert!(
            g.find("dx.0").is_none(),
            "{what}: the embedding output has a gradient"
        );
        assert!(
            g.find("dlayers.0.h1").is_none(),
            "{what}: layer 0's normed input has a gradient"
        );
        for (i, n) in g.nodes.iter().enumerate() {
            match &n.op {
                Op::RmsNormBackward { .. } => assert!(
                    !n.inputs.contains(&x0),
                    "{what}: node {i} differentiates layer 0's input norm"
                ),
                Op::LinearBackward { proj } => {
                    assert_eq!(n.layer, Some(proj.layer), "{what}: node {i}");
                    if proj.layer == 0 && (proj.name == "q" || proj.name == "v") {
                        assert!(
                            n.outputs.is_empty(),
                            "{what}: layer 0 {} writes {:?}",
                            proj.name,
                            n.outputs.iter().map(|&v| name(v)).collect::<Vec<_>>()
                        );
                    }
                    // x is read only for an adapter's gradients.
                    let reads_x = n.inputs.len() == 3;
                    assert_eq!(reads_x, proj.adapted, "{what}: node {i} {}", proj.name);
                }
                Op::Embed { .. } => assert_eq!(n.phase, Phase::Forward),
                _ => {}
            }
        }
        let linear_back = |l: usize| -> Vec<&str> {
            let mut v: Vec<&str> = g
                .nodes
                .iter()
                .filter_map(|n| match &n.op {
                    Op::LinearBackward { proj } if proj.layer == l => Some(proj.name),
                    _ => None,
                })
                .collect();
            v.sort();
            v
        };
        // Unadapted k in layer 0 reads no gradient-carrying input: no backward at all;
        // above layer 0 every projection's input needs a gradient.
        assert_eq!(
            linear_back(0),
            ["down", "gate", "o", "q", "up", "v"],
            "{what}: layer 0"
        );
        for l in 1..layers {
            assert_eq!(
                linear_back(l),
                ["down", "gate", "k", "o", "q", "up", "v"],
                "{what}: layer {l}"
            );
        }
        // Layer 0's q and v products are the only linears whose dX is not formed.
        let no_dx: Vec<(usize, &str)> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::LinearBackward { proj } if n.outputs.is_empty() => {
                    Some((proj.layer, proj.name))
                }
                _ => None,
            })
            .collect();
        assert_eq!(no_dx, [(0, "v"), (0, "q")], "{what}");
        assert!(!g.nodes.iter().any(|n| n.phase == Phase::Recompute));
        check_plan(&g, &what);

        // (b) Recomputation: every layer but the last replays its forward, just before
        // its backward, and that backward reads the replayed activations only.
        let g = graph(&gpu, arch, &["q", "v"], true, None);
        let what = format!("{arch} q,v recompute");
        for l in 0..layers {
            let at = |phase: Phase| -> Vec<usize> {
                g.nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.phase == phase && n.layer == Some(l))
                    .map(|(i, _)| i)
                    .collect()
            };
            let (re, back) = (at(Phase::Recompute), at(Phase::Backward));
            assert!(!back.is_empty(), "{what}: layer {l} has no backward");
            if l + 1 == layers {
                assert!(re.is_empty(), "{what}: the last layer is recomputed");
                continue;
            }
            assert!(!re.is_empty(), "{what}: layer {l} is not recomputed");
            assert!(
                re.last() < back.first(),
                "{what}: layer {l} recomputed after its backward started"
            );
            let later_back =
                g.nodes.iter().enumerate().rposition(|(_, n)| {
                    n.phase == Phase::Backward && n.layer.is_some_and(|k| k > l)
                });
            assert!(
                later_back < re.first().copied(),
                "{what}: layer {l} recomputed before the layers above finished"
            );
            let first_forward: HashSet<usize> = g
                .nodes
                .iter()
                .filter(|n| n.phase == Phase::Forward && n.layer == Some(l))
                .flat_map(|n| n.outputs.iter().map(|&v| g.root(v).0))
                .collect();
            for &i in &back {
                for &v in &g.nodes[i].inputs {
                    assert!(
                        !first_forward.contains(&g.root(v).0),
                        "{what}: layer {l}'s backward node {i} ({}) reads {} from the \
                         first forward",
                        g.nodes[i].op.name(),
                        name(v)
                    );
                }
            }
        }
        check_plan(&g, &what);

        // (c) The plan with gathered loss rows, and with every projection adapted.
        check_plan(
            &graph(&gpu, arch, &["q", "v"], true, Some(5)),
            &format!("{arch} q,v recompute rows"),
        );
        check_plan(
            &graph(&gpu, arch, &["all"], false, None),
            &format!("{arch} all"),
        );
        check_plan(
            &graph(
                &gpu,
                arch,
                &["k", "o", "gate", "up", "down", "q", "v"],
                true,
                Some(6),
            ),
            &format!("{arch} all recompute rows"),
        );
    }
}
