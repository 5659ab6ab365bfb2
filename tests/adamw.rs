//! AdamW and the global gradient norm against the CPU: several steps, odd sizes, weight
//! decay and grad_scale ≠ 1, clipping, multi-step recordings and ranged bindings.

mod common;

use boha::gpu::{Gpu, GpuOptions, Recorder, Tensor};
use boha::ops::adamw::{self, reference, AdamW, Optimizer, StepScalars, SCALARS};
use boha::rng::Rng;
use common::assert_close;

const OPT: AdamW = AdamW {
    lr: 3e-2,
    beta1: 0.85,
    beta2: 0.99,
    eps: 1e-6,
    weight_decay: 0.1,
};

/// Host copy of one parameter with its moments.
struct Host {
    theta: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

fn check_steps(gpu: &Gpu, sizes: &[usize], max_norm: Option<f32>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut hosts: Vec<Host> = sizes
        .iter()
        .map(|&n| Host {
            theta: rng.vec_f32(n, -1.0, 1.0),
            m: vec![0.0; n],
            v: vec![0.0; n],
        })
        .collect();
    let params: Vec<Tensor> = hosts
        .iter()
        .map(|h| gpu.upload(&[h.theta.len()], &h.theta).unwrap())
        .collect();
    let grads: Vec<Tensor> = sizes.iter().map(|&n| gpu.zeros(&[n]).unwrap()).collect();
    let pairs: Vec<(&Tensor, &Tensor)> = params.iter().zip(&grads).collect();
    let opt = Optimizer::new(gpu, OPT, &pairs, max_norm).unwrap();
    for step in 1..=5u32 {
        // Gradients change every step, with magnitudes far from 1 so that the scaling
        // and clipping paths matter.
        let gs: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec_f32(n, -3.0, 2.0)).collect();
        for (t, g) in grads.iter().zip(&gs) {
            gpu.write(t, g).unwrap();
        }
        let lr = OPT.lr / step as f32;
        let g0 = 0.37;
        opt.set_step(gpu, step, lr, g0).unwrap();
        let mut rec = Recorder::new();
        rec.run_all(opt.dispatches());
        gpu.run(&rec).unwrap();

        let refs: Vec<&[f32]> = gs.iter().map(|g| g.as_slice()).collect();
        let norm = g0 as f64 * reference::sum_squares(&refs).sqrt();
        let scale = g0 as f64 * max_norm.map_or(1.0, |c| reference::clip_factor(norm, c));
        if let Some(c) = max_norm {
            let got = opt.scalars.grad_norm(gpu).unwrap();
            assert_close("grad norm", &[got], &[norm as f32], 1e-5);
            if c > 0.0 {
                assert!(
                    norm > c as f64,
                    "test gradients should be clipped ({norm} ≤ {c})"
                );
            }
        }
        for (h, g) in hosts.iter_mut().zip(&gs) {
            reference::adamw_step(
                &OPT,
                step,
                lr,
                scale as f32,
                &mut h.theta,
                g,
                &mut h.m,
                &mut h.v,
            );
        }
        for (i, h) in hosts.iter().enumerate() {
            let what = format!("step {step} tensor {i} ({} elements)", sizes[i]);
            assert_close(
                &format!("{what} θ"),
                &gpu.download(&params[i]).unwrap(),
                &h.theta,
                2e-5,
            );
            assert_close(
                &format!("{what} m"),
                &gpu.download(&opt.states[i].m).unwrap(),
                &h.m,
                2e-5,
            );
            assert_close(
                &format!("{what} v"),
                &gpu.download(&opt.states[i].v).unwrap(),
                &h.v,
                2e-5,
            );
        }
    }
}

#[test]
fn adamw_matches_cpu_over_steps() {
    let Some(gpu) = common::gpu() else { return };
    check_steps(&gpu, &[1, 37, 4099], None, 1);
}

#[test]
fn adamw_with_clipping_matches_cpu() {
    let Some(gpu) = common::gpu() else { return };
    // Clip hard (the norm is ~ 0.37·√(n·1.75)), then only record the norm.
    check_steps(&gpu, &[301, 1, 1025], Some(2.5), 2);
    check_steps(&gpu, &[129, 63], Some(0.0), 3);
}

#[test]
fn adamw_binds_large_tensors_in_ranges() {
    let opts = GpuOptions {
        max_binding_override: Some(1024),
        ..Default::default()
    };
    let Some(gpu) = common::gpu_with(&opts) else {
        return;
    };
    check_steps(&gpu, &[3001, 257], Some(4.0), 4);
}

#[test]
fn sum_squares_matches_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(9);
    let sizes = [0usize, 1, 127, 128, 129, 50_003];
    let data: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec_f32(n, -2.0, 1.5)).collect();
    let ts: Vec<Tensor> = data
        .iter()
        .map(|d| gpu.upload(&[d.len()], d).unwrap())
        .collect();
    let total = gpu.zeros(&[1]).unwrap();
    for k in 1..=ts.len() {
        let refs: Vec<&Tensor> = ts[..k].iter().collect();
        let mut rec = Recorder::new();
        rec.run_all(&adamw::sum_squares(&gpu, &refs, &total).unwrap());
        gpu.run(&rec).unwrap();
        let host: Vec<&[f32]> = data[..k].iter().map(|d| d.as_slice()).collect();
        let want = reference::sum_squares(&host) as f32;
        assert_close(
            &format!("sum of squares of {k} tensors"),
            &gpu.download(&total).unwrap(),
            &[want],
            1e-5,
        );
    }
}

/// Several steps in one submit: each step's scalars row is copied from a table into the
/// scalars tensor inside the recording.
#[test]
fn adamw_steps_recorded_in_one_submit() {
    let Some(gpu) = common::gpu() else { return };
    let n = 77;
    let mut rng = Rng::new(5);
    let mut theta = rng.vec_f32(n, -1.0, 1.0);
    let g = rng.vec_f32(n, -1.0, 1.0);
    let p = gpu.upload(&[n], &theta).unwrap();
    let gt = gpu.upload(&[n], &g).unwrap();
    let opt = Optimizer::new(&gpu, OPT, &[(&p, &gt)], None).unwrap();
    let steps = 4u32;
    let mut table = Vec::new();
    for s in 1..=steps {
        table.extend(
            OPT.step_scalars(s, OPT.lr * 0.5f32.powi(s as i32), 1.0 + s as f32)
                .unwrap(),
        );
    }
    let table = gpu.upload(&[steps as usize, SCALARS], &table).unwrap();
    let mut rec = Recorder::new();
    for s in 0..steps as usize {
        rec.copy(
            &table.view(s * SCALARS, SCALARS).unwrap(),
            &opt.scalars.tensor,
        )
        .unwrap();
        rec.run_all(opt.dispatches());
    }
    gpu.run(&rec).unwrap();
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    for s in 1..=steps {
        let lr = OPT.lr * 0.5f32.powi(s as i32);
        reference::adamw_step(&OPT, s, lr, 1.0 + s as f32, &mut theta, &g, &mut m, &mut v);
    }
    assert_close(
        "θ after 4 recorded steps",
        &gpu.download(&p).unwrap(),
        &theta,
        2e-5,
    );
}

#[test]
fn bad_inputs_are_errors() {
    let Some(gpu) = common::gpu() else { return };
    let p = gpu.zeros(&[10]).unwrap();
    let g = gpu.zeros(&[11]).unwrap();
    let st = adamw::AdamState::new(&gpu, &p).unwrap();
    let sc = StepScalars::new(&gpu).unwrap();
    assert!(adamw::adamw_step(&gpu, &OPT, &p, &g, &st, &sc).is_err());
    let bad = AdamW { beta1: 1.0, ..OPT };
    assert!(adamw::adamw_step(&gpu, &bad, &p, &p, &st, &sc).is_err());
    assert!(OPT.step_scalars(0, 1e-3, 1.0).is_err());
    assert!(adamw::sum_squares(&gpu, &[&p], &g).is_err());
}
