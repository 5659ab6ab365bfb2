//! A recording split by the submit limit (`Gpu::set_submit_limit`) gives the same result
//! as one submit, and the submit gate (`Gpu::set_submit_gate`) is passed once per part:
//! what the desktop demo relies on to let frames in between a training step's parts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use boha::gpu::{Gpu, Recorder};
use boha::ops::elementwise as ew;
use common::assert_close;

/// y = x, then ten dependent steps y ← y + 0.5·x, a copy out and a clear of a scratch
/// tensor: 13 commands whose order matters.
fn chain(gpu: &Gpu, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = x.len();
    let tx = gpu.upload(&[n], x).unwrap();
    let y = gpu.zeros(&[n]).unwrap();
    let out = gpu.zeros(&[n]).unwrap();
    let scratch = gpu.upload(&[n], x).unwrap();
    let mut r = Recorder::new();
    r.run_all(&ew::copy(gpu, &tx, &y).unwrap());
    for _ in 0..10 {
        r.run_all(&ew::axpy(gpu, 0.5, &tx, &y).unwrap());
    }
    r.copy(&y, &out).unwrap();
    r.zero(&scratch);
    gpu.run(&r).unwrap();
    (gpu.download(&out).unwrap(), gpu.download(&scratch).unwrap())
}

#[test]
fn parts_match_one_submit_and_pass_the_gate_once_each() {
    let Some(mut gpu) = common::gpu() else { return };
    let x: Vec<f32> = (0..777).map(|i| (i as f32 * 0.37).sin()).collect();
    let want: Vec<f32> = x.iter().map(|v| 6.0 * v).collect();

    let (whole, cleared) = chain(&gpu, &x);
    assert_close("one submit", &whole, &want, 1e-5);
    assert!(cleared.iter().all(|&v| v == 0.0));

    let passes = Arc::new(AtomicUsize::new(0));
    let counter = passes.clone();
    gpu.set_submit_gate(Some(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })));
    gpu.set_submit_limit(Some(3));
    let (parted, cleared) = chain(&gpu, &x);
    assert_close("in parts of 3", &parted, &whole, 0.0);
    assert!(cleared.iter().all(|&v| v == 0.0));
    // Uploads and downloads do not pass the gate; the recording's 13 commands do, in
    // ceil(13 / 3) = 5 parts.
    assert_eq!(passes.load(Ordering::SeqCst), 5);

    gpu.set_submit_limit(None);
    passes.store(0, Ordering::SeqCst);
    let (again, _) = chain(&gpu, &x);
    assert_close("no limit, gate kept", &again, &whole, 0.0);
    assert_eq!(passes.load(Ordering::SeqCst), 1);
}
