//! The closed-form step memory estimate (`graph::memory::estimate`, finetune's pre-check)
//! against the allocator's measured peak: a trainer for each tiny model and every
//! method, with and without gradient checkpointing (and with gathered loss rows, as
//! finetune runs), built and stepped once; the two agree within 5%.

mod common;
mod model_specs;

use boha::adapters::{AdapterSpec, Method};
use boha::graph::memory::estimate;
use boha::graph::{TrainOptions, Trainer};
use boha::loaders::load_checkpoint;
use boha::model::transformer::Adapters;
use boha::rng::Rng;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};

const BATCH: usize = 2;
const SEQ: usize = 16;

fn specs() -> Vec<AdapterSpec> {
    [
        (Method::Boha, Some(2), None, Some(4)),
        (Method::Hira, None, Some(8), None),
        (Method::Lora, None, Some(8), None),
        (Method::Additive, Some(2), None, Some(4)),
        (Method::Abba, None, Some(8), None),
        (Method::Loha, None, Some(4), None),
    ]
    .into_iter()
    .map(|(m, b, r, rb)| AdapterSpec::from_options(m, b, r, rb, None).unwrap())
    .collect()
}

#[test]
fn estimate_is_within_five_percent_of_the_measured_peak() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    let mut rng = Rng::new(3);
    let mut worst: (f64, String) = (0.0, String::new());
    for (name, tiny) in model_specs::specs() {
        let dir = temp_dir(&format!("mem-{name}"));
        write_tiny_hf(&dir, &tiny);
        let ck = load_checkpoint(&dir).unwrap();
        let v = ck.config.vocab_size;
        let tokens: Vec<u32> = (0..BATCH * SEQ).map(|_| rng.below(v) as u32).collect();
        for spec in specs() {
            let mut cases = vec![(false, None), (true, None)];
            // Gathered loss rows (finetune's way) change only the loss's part: once per
            // model is enough.
            if spec.method == Method::Boha {
                cases.push((false, Some(9)));
            }
            for (recompute, loss_rows) in cases {
                let opts = TrainOptions {
                    recompute,
                    loss_rows,
                    ..TrainOptions::default()
                };
                let targets = Adapters::parse_targets(&["all"]).unwrap();
                let est = estimate(
                    &gpu,
                    &ck.config,
                    &ck.frozen_dtypes(gpu.base_dtype()),
                    &spec,
                    &targets,
                    BATCH,
                    SEQ,
                    &opts,
                )
                .unwrap();
                gpu.wait().unwrap();
                let base = gpu.live_bytes();
                gpu.reset_peak();
                let mut tr = Trainer::new(&gpu, &ck, spec, &["all"], BATCH, SEQ, opts).unwrap();
                // At most `loss_rows` positions carry a target.
                let mut kept = 0;
                let targets: Vec<u32> = tokens
                    .iter()
                    .map(|&t| {
                        kept += 1;
                        if loss_rows.is_some_and(|k| kept > k) {
                            u32::MAX
                        } else {
                            t
                        }
                    })
                    .collect();
                tr.step(&gpu, &tokens, &targets, 1e-3, true).unwrap();
                let measured = gpu.peak_bytes() - base;
                drop(tr);
                let e = est.total() as f64 / measured as f64 - 1.0;
                let what = format!(
                    "{name} {} recompute={recompute} loss_rows={loss_rows:?}: estimate {} \
                     ({est:?}), measured {measured}",
                    spec.method.name(),
                    est.total()
                );
                eprintln!("{e:+.4} {what}");
                if e.abs() > worst.0 {
                    worst = (e.abs(), what.clone());
                }
                assert!(e.abs() <= 0.05, "off by {:.1}%: {what}", 100.0 * e);
            }
        }
    }
    eprintln!("worst: {:.2}% ({})", 100.0 * worst.0, worst.1);
}

#[test]
fn the_meter_counts_uniforms_and_read_back_staging() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    let t = gpu.upload(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    gpu.wait().unwrap();
    let before = gpu.live_bytes();
    // fill's Params (≤ 4 words) make one 16-byte uniform, held while the dispatch lives
    // and shared by its clones.
    let ds = boha::ops::elementwise::fill(&gpu, 0.0, &t).unwrap();
    let copy = ds.clone();
    assert_eq!(gpu.live_bytes(), before + 16 * ds.len() as u64);
    drop((ds, copy));
    assert_eq!(gpu.live_bytes(), before);
    // A download's staging buffer counts at the peak during the read, not after.
    gpu.reset_peak();
    gpu.download(&t).unwrap();
    assert_eq!(gpu.peak_bytes(), before + 20);
    assert_eq!(gpu.live_bytes(), before);
}
