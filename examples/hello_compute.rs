//! The smallest boha program: open the default device, add two vectors on the GPU with
//! the elementwise kernels, read the result back.
//!
//! `cargo run --example hello_compute`

use boha::gpu::{Gpu, GpuOptions, Recorder};
use boha::ops::elementwise;

fn main() -> boha::Result<()> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    println!("device: {} ({})", gpu.info().name, gpu.info().backend);
    let a = gpu.upload(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0])?;
    let b = gpu.upload(&[5], &[10.0, 20.0, 30.0, 40.0, 50.0])?;
    let y = gpu.zeros(&[5])?;
    let mut rec = Recorder::new();
    rec.run_all(&elementwise::add(&gpu, &a, &b, &y)?);
    gpu.run(&rec)?;
    println!("a + b = {:?}", gpu.download(&y)?);
    Ok(())
}
