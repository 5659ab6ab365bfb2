//! Waiting on the device never hangs: with a deliberately tiny poll timeout, a long
//! submission becomes `Error::DeviceTimeout`, and the device stays usable afterwards.
//! Misuse that wgpu would reject becomes an error, not a panic.

mod common;

use std::time::Duration;

use boha::gpu::{Kernel, Params, Recorder};
use boha::ops::elementwise;
use boha::Error;

#[test]
fn tiny_timeout_turns_a_long_submit_into_an_error() {
    let Some(mut gpu) = common::gpu() else { return };
    let n = 1 << 22;
    let a = gpu.upload(&[n], &vec![1.0; n]).unwrap();
    let y = gpu.zeros(&[n]).unwrap();
    let mut rec = Recorder::new();
    for _ in 0..32 {
        rec.run_all(&elementwise::axpy(&gpu, 0.5, &a, &y).unwrap());
    }
    gpu.set_timeout(Duration::from_nanos(1));
    let err = gpu.run(&rec).unwrap_err();
    assert!(matches!(err, Error::DeviceTimeout(_)), "{err}");
    assert!(err.to_string().contains("did not finish"), "{err}");
    gpu.set_timeout(Duration::from_secs(120));
    gpu.wait().unwrap();
    let out = gpu.download(&y).unwrap();
    assert_eq!(out[0], 16.0);
    assert_eq!(out[n - 1], 16.0);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let Some(gpu) = common::gpu() else { return };
    let a = gpu.upload(&[3], &[1.0, 2.0, 3.0]).unwrap();
    let b = gpu.zeros(&[4]).unwrap();
    // Shape mismatch.
    assert!(elementwise::add(&gpu, &a, &a, &b).is_err());
    // Unknown entry point.
    let k = Kernel::new(boha::shaders::ELEMENTWISE, "no_such_entry");
    let e = gpu
        .prepare(&k, &Params::new(), &[&a], [1, 1, 1])
        .unwrap_err();
    assert!(e.to_string().contains("no_such_entry"), "{e}");
    // Wrong number of tensors for the entry point.
    let k = Kernel::new(boha::shaders::ELEMENTWISE, "add_forward");
    assert!(gpu
        .prepare(&k, &Params::new().u(3), &[&a], [1, 1, 1])
        .is_err());
    // A view that does not start at an aligned offset cannot be bound.
    let big = gpu.zeros(&[1024]).unwrap();
    let v = big.view(1, 3).unwrap();
    let e = gpu
        .prepare(&k, &Params::new().u(3), &[&v, &v, &v], [1, 1, 1])
        .unwrap_err();
    assert!(e.to_string().contains("multiple of"), "{e}");
    // Too many workgroups in one dimension.
    let e = gpu
        .prepare(&k, &Params::new().u(3), &[&a, &a, &a], [u32::MAX, 1, 1])
        .unwrap_err();
    assert!(e.to_string().contains("exceed"), "{e}");
    // A buffer bound both read-only and read-write in one dispatch is a wgpu validation
    // error; the error scope turns it into an error naming the step.
    let mut r = Recorder::new();
    r.run_all(&elementwise::add(&gpu, &a, &a, &a.clone()).unwrap());
    let e = gpu.run(&r).unwrap_err();
    assert!(e.to_string().contains("conflicting usages"), "{e}");
    // The device is still usable.
    let mut r = Recorder::new();
    r.run_all(&elementwise::add(&gpu, &a, &a, &b.view(0, 3).unwrap()).unwrap());
    gpu.run(&r).unwrap();
    assert_eq!(gpu.download(&b).unwrap(), vec![2.0, 4.0, 6.0, 0.0]);
}

#[test]
fn unknown_device_is_a_clear_error() {
    // Without any adapter the error is "none found", not about the name.
    if common::gpu().is_none() {
        return;
    }
    let opts = boha::gpu::GpuOptions {
        device: Some("no-such-adapter-xyz".into()),
        ..Default::default()
    };
    if let Err(e) = boha::gpu::Gpu::new(&opts) {
        assert!(e.to_string().contains("no-such-adapter-xyz"), "{e}");
    } else {
        panic!("an adapter matched a name that does not exist");
    }
}
