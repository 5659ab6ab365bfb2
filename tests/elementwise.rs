//! Elementwise ops and row reductions against the CPU, at odd sizes, also with a forced
//! small storage-binding limit so that tensors are bound in ranges.

mod common;

use boha::gpu::{Gpu, GpuOptions, Recorder};
use boha::ops::elementwise::{self as ew, reference};
use boha::rng::Rng;
use common::assert_close;

fn check_all(gpu: &Gpu, n: usize, cols: usize) {
    let mut rng = Rng::new(n as u64);
    let a = rng.vec_f32(n, -2.0, 2.0);
    let b = rng.vec_f32(n, -2.0, 2.0);
    let ta = gpu.upload(&[n / cols, cols], &a).unwrap();
    let tb = gpu.upload(&[n / cols, cols], &b).unwrap();
    let y = gpu.zeros(&[n]).unwrap();
    let run = |ds: Vec<boha::gpu::Dispatch>| {
        let mut r = Recorder::new();
        r.run_all(&ds);
        gpu.run(&r).unwrap();
        gpu.download(&y).unwrap()
    };
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, z)| x + z).collect();
    assert_close(
        "add",
        &run(ew::add(gpu, &ta, &tb, &y).unwrap()),
        &want,
        1e-6,
    );
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, z)| x * z).collect();
    assert_close(
        "mul",
        &run(ew::mul(gpu, &ta, &tb, &y).unwrap()),
        &want,
        1e-6,
    );
    let want: Vec<f32> = a.iter().map(|x| -1.5 * x).collect();
    assert_close(
        "scale",
        &run(ew::scale(gpu, -1.5, &ta, &y).unwrap()),
        &want,
        1e-6,
    );
    assert_close("copy", &run(ew::copy(gpu, &ta, &y).unwrap()), &a, 0.0);
    let want: Vec<f32> = a.iter().map(|x| x + 0.25 * x).collect();
    assert_close(
        "axpy",
        &run(ew::axpy(gpu, 0.25, &ta, &y).unwrap()),
        &want,
        1e-6,
    );
    assert_close(
        "fill",
        &run(ew::fill(gpu, 3.5, &y).unwrap()),
        &vec![3.5; n],
        0.0,
    );

    let rows = n / cols;
    let ys = gpu.zeros(&[rows]).unwrap();
    let mut r = Recorder::new();
    r.run_all(&ew::row_sum(gpu, &ta, &ys).unwrap());
    gpu.run(&r).unwrap();
    assert_close(
        "row_sum",
        &gpu.download(&ys).unwrap(),
        &reference::row_sum(&a, cols),
        1e-5,
    );
    let mut r = Recorder::new();
    r.run_all(&ew::row_max(gpu, &ta, &ys).unwrap());
    gpu.run(&r).unwrap();
    assert_close(
        "row_max",
        &gpu.download(&ys).unwrap(),
        &reference::row_max(&a, cols),
        0.0,
    );
}

#[test]
fn elementwise_matches_cpu_at_odd_sizes() {
    let Some(gpu) = common::gpu() else { return };
    check_all(&gpu, 37 * 13, 13);
    check_all(&gpu, 1, 1);
    check_all(&gpu, 4097 * 3, 3);
}

#[test]
fn elementwise_binds_large_tensors_in_ranges() {
    let opts = GpuOptions {
        max_binding_override: Some(1024),
        ..Default::default()
    };
    let Some(gpu) = common::gpu_with(&opts) else {
        return;
    };
    // 3001 × 7 floats = 84 KB, bound in 1 KiB ranges.
    check_all(&gpu, 3001 * 7, 7);
}
