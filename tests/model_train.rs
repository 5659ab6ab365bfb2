//! Whole-model adapter gradients: the GPU training graph against the CPU f64 reference,
//! the reference against finite differences, activation recomputation, pruned backward
//! for target subsets, and AdamW steps that lower the loss.

mod common;

mod model_specs;

use boha::adapters::{AdapterSpec, Method};
use boha::gpu::Gpu;
use boha::graph::{TrainOptions, Trainer, IGNORE};
use boha::loaders::{load_checkpoint, Checkpoint};
use boha::model::reference::Reference;
use boha::rng::Rng;
use common::assert_close;

const BATCH: usize = 2;
const SEQ: usize = 7;

fn checkpoint(arch: &str) -> Checkpoint {
    load_checkpoint(&model_specs::write_dir(arch, &format!("train-{arch}"))).unwrap()
}

fn batch(v: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let tokens: Vec<u32> = (0..BATCH * SEQ).map(|_| rng.below(v) as u32).collect();
    let mut targets: Vec<u32> = (0..BATCH * SEQ).map(|_| rng.below(v) as u32).collect();
    targets[0] = IGNORE;
    targets[SEQ + 3] = IGNORE;
    (tokens, targets)
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn check_grads(gpu: &Gpu, arch: &str, spec: AdapterSpec, targets: &[&str], recompute: bool) {
    check_grads_with(gpu, arch, spec, targets, recompute, None);
}

/// With `loss_rows`, only every third position keeps its target (a response-only loss)
/// and the trainer gathers those rows for the LM head.
fn check_grads_with(
    gpu: &Gpu,
    arch: &str,
    spec: AdapterSpec,
    targets: &[&str],
    recompute: bool,
    loss_rows: Option<usize>,
) {
    let ck = checkpoint(arch);
    let opts = TrainOptions {
        recompute,
        ce_chunk: 100,
        loss_rows,
        ..TrainOptions::default()
    };
    let mut tr = Trainer::new(gpu, &ck, spec, targets, BATCH, SEQ, opts).unwrap();
    let mut reference = Reference::new(&ck).unwrap();
    common::randomize_adapters(gpu, &tr.adapters, &mut reference, &mut Rng::new(5));
    let (tokens, mut tgt) = batch(ck.config.vocab_size, 9);
    if loss_rows.is_some() {
        tgt.iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 3 != 1)
            .for_each(|(_, t)| *t = IGNORE);
    }
    let loss = tr.gradients(gpu, &tokens, &tgt).unwrap();
    let (want_loss, want) = reference
        .loss_and_grads(&tokens, &tgt, BATCH, true)
        .unwrap();
    let what = format!("{arch} {targets:?} recompute={recompute} loss_rows={loss_rows:?}");
    assert!(
        ((loss as f64 - want_loss) / want_loss).abs() < 1e-4,
        "{what}: loss {loss} vs {want_loss}"
    );
    assert_eq!(want.len(), tr.adapters.iter().count(), "{what}");
    for (name, ad) in tr.adapters.iter() {
        let (da, db) = &want[&name];
        assert!(
            da.iter().chain(db).any(|&g| g.abs() > 1e-6),
            "{what} {name}: zero gradient"
        );
        assert_close(
            &format!("{what} {name} dA"),
            &gpu.download(&ad.grad_a).unwrap(),
            &f32s(da),
            2e-3,
        );
        assert_close(
            &format!("{what} {name} dB"),
            &gpu.download(&ad.grad_b).unwrap(),
            &f32s(db),
            2e-3,
        );
    }
}

fn boha() -> AdapterSpec {
    AdapterSpec::from_options(Method::Boha, Some(2), None, Some(2), Some(1.0)).unwrap()
}

#[test]
fn gpu_adapter_gradients_match_reference_each_architecture() {
    let Some(gpu) = common::gpu() else { return };
    for arch in ["llama", "mistral", "gemma2", "qwen2"] {
        check_grads(&gpu, arch, boha(), &["all"], false);
    }
}

#[test]
fn pruned_backward_subsets_lora_and_recompute() {
    let Some(gpu) = common::gpu() else { return };
    let lora = AdapterSpec::from_options(Method::Lora, None, Some(3), None, None).unwrap();
    check_grads(&gpu, "llama", lora, &["q", "up"], false);
    // The pair kinds (h = 2, 3: the Khatri–Rao bottleneck), with and without recomputation.
    let abba = AdapterSpec::from_options(Method::Abba, None, Some(4), None, Some(1.5)).unwrap();
    check_grads(&gpu, "llama", abba, &["k", "down"], false);
    let loha = AdapterSpec::from_options(Method::Loha, None, Some(6), None, None).unwrap();
    check_grads(&gpu, "qwen2", loha, &["v", "gate"], true);
    // h = 8: the fused kernels with the pair snippet, at these widths.
    let abba = AdapterSpec::from_options(Method::Abba, None, Some(16), None, None).unwrap();
    check_grads(&gpu, "llama", abba, &["all"], true);
    check_grads(&gpu, "llama", boha(), &["o"], false);
    check_grads(&gpu, "qwen2", boha(), &["down"], false);
    check_grads(&gpu, "gemma2", boha(), &["v,gate"], true);
    check_grads(&gpu, "mistral", boha(), &["all"], true);
}

#[test]
fn gathered_loss_rows_match_reference() {
    let Some(gpu) = common::gpu() else { return };
    // 5 of the 14 positions keep a target; room for 6 (one slot of padding).
    check_grads_with(&gpu, "llama", boha(), &["all"], false, Some(6));
    check_grads_with(&gpu, "gemma2", boha(), &["q,down"], true, Some(5));

    // A batch with more loss positions than the step was prepared for is refused.
    let ck = checkpoint("llama");
    let opts = TrainOptions {
        loss_rows: Some(3),
        ..TrainOptions::default()
    };
    let mut tr = Trainer::new(&gpu, &ck, boha(), &["q"], BATCH, SEQ, opts).unwrap();
    let (tokens, tgt) = batch(ck.config.vocab_size, 9);
    let e = tr.gradients(&gpu, &tokens, &tgt).unwrap_err().to_string();
    assert!(e.contains("prepared for at most 3"), "{e}");
}

#[test]
fn reference_gradients_match_finite_differences() {
    for (arch, targets) in [("llama", "all"), ("gemma2", "k,o,down")] {
        let ck = checkpoint(arch);
        let spec = boha();
        let mut reference = Reference::new(&ck).unwrap();
        let mut rng = Rng::new(21);
        let cfg = &ck.config;
        let dims = |p: &str| match p {
            "q" => (cfg.q_dim(), cfg.hidden_size),
            "k" | "v" => (cfg.kv_dim(), cfg.hidden_size),
            "o" => (cfg.hidden_size, cfg.q_dim()),
            "gate" | "up" => (cfg.intermediate_size, cfg.hidden_size),
            _ => (cfg.hidden_size, cfg.intermediate_size),
        };
        let names: Vec<&str> = if targets == "all" {
            vec!["q", "k", "v", "o", "gate", "up", "down"]
        } else {
            targets.split(',').collect()
        };
        for l in 0..cfg.num_layers {
            for p in &names {
                let (o, i) = dims(p);
                let na: usize = spec.a_shape(i).iter().product();
                let nb: usize = spec.b_shape(o).iter().product();
                let a = rng.vec_f32(na, -0.5, 0.5);
                let b = rng.vec_f32(nb, -0.5, 0.5);
                reference.set_adapter(&format!("layers.{l}.{p}"), spec, &a, &b);
            }
        }
        let (tokens, tgt) = batch(cfg.vocab_size, 4);
        let (_, grads) = reference
            .loss_and_grads(&tokens, &tgt, BATCH, true)
            .unwrap();
        let keys: Vec<String> = reference.adapters.keys().cloned().collect();
        let eps = 1e-5;
        for key in keys.iter().step_by(3) {
            for which in 0..2 {
                let len = if which == 0 {
                    grads[key].0.len()
                } else {
                    grads[key].1.len()
                };
                for _ in 0..3 {
                    let j = rng.below(len);
                    let mut plus = 0.0;
                    for (sign, out) in [(1.0, &mut plus as *mut f64), (-1.0, std::ptr::null_mut())]
                    {
                        let ad = reference.adapters.get_mut(key).unwrap();
                        let p = if which == 0 { &mut ad.a } else { &mut ad.b };
                        p[j] += sign * eps;
                        let l = reference.loss(&tokens, &tgt, BATCH).unwrap();
                        let ad = reference.adapters.get_mut(key).unwrap();
                        let p = if which == 0 { &mut ad.a } else { &mut ad.b };
                        p[j] -= sign * eps;
                        if out.is_null() {
                            let fd = (plus - l) / (2.0 * eps);
                            let an = if which == 0 {
                                grads[key].0[j]
                            } else {
                                grads[key].1[j]
                            };
                            assert!(
                                (fd - an).abs() <= 1e-6 + 1e-5 * an.abs().max(fd.abs()),
                                "{arch} {key} {} [{j}]: analytic {an}, finite difference {fd}",
                                ["A", "B"][which]
                            );
                        } else {
                            plus = l;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn adamw_steps_lower_the_loss() {
    let Some(gpu) = common::gpu() else { return };
    let ck = checkpoint("llama");
    let mut tr = Trainer::new(
        &gpu,
        &ck,
        boha(),
        &["q", "v", "down"],
        BATCH,
        SEQ,
        TrainOptions::default(),
    )
    .unwrap();
    let (tokens, tgt) = batch(ck.config.vocab_size, 2);
    let first = tr.eval_loss(&gpu, &tokens, &tgt).unwrap();
    let mut last = None;
    for i in 0..12 {
        let l = tr
            .step(&gpu, &tokens, &tgt, 3e-2, i == 0 || i == 11)
            .unwrap();
        if i == 0 {
            assert!(
                (l.unwrap() - first).abs() <= 1e-4 * first,
                "step loss is the pre-update loss"
            );
        } else if i < 11 {
            assert!(l.is_none(), "the loss is read only when asked");
        }
        last = l;
    }
    let after = tr.eval_loss(&gpu, &tokens, &tgt).unwrap();
    assert!(
        after < 0.95 * first,
        "loss {first} → {after} (last step {last:?})"
    );
    assert!(tr.step(&gpu, &tokens[1..], &tgt[1..], 1e-2, false).is_err());
}
