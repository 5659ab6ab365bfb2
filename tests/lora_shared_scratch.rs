//! LoRA's U and dU through the scratch a model's matrices share: bit for bit the same
//! forward, dx and gradients as with buffers of its own, for several matrices of
//! different shapes recorded in one submit through one room, and one [T, r] room held
//! in all instead of two per matrix (before the room existed: three).

mod common;

use boha::adapters::grad::GradScratch;
use boha::adapters::layer::AdaptedLinear;
use boha::adapters::{AdapterSpec, Method};
use boha::gpu::{Gpu, Recorder, Tensor};
use boha::rng::Rng;

const T: usize = 37;
const SHAPES: [(usize, usize); 3] = [(44, 32), (32, 44), (24, 32)];

struct Case {
    layer: AdaptedLinear,
    w0: Tensor,
    x: Tensor,
    y: Tensor,
    dy: Tensor,
    dx: Tensor,
}

fn cases(gpu: &Gpu, spec: AdapterSpec, shared: Option<&GradScratch>) -> Vec<Case> {
    let mut rng = Rng::new(21);
    SHAPES
        .iter()
        .map(|&(d_out, d_in)| {
            let r = spec.block_rank;
            let a = rng.vec_f32(r * d_in, -0.5, 0.5);
            let b = rng.vec_f32(d_out * r, -0.5, 0.5);
            let mut layer =
                AdaptedLinear::from_host(gpu, spec, "t.proj", d_out, d_in, &a, &b).unwrap();
            if let Some(s) = shared {
                layer.share_scratch(s);
            }
            let up = |shape: &[usize], rng: &mut Rng| {
                let n = shape.iter().product();
                gpu.upload(shape, &rng.vec_f32(n, -1.0, 1.0)).unwrap()
            };
            Case {
                layer,
                w0: up(&[d_out, d_in], &mut rng),
                x: up(&[T, d_in], &mut rng),
                y: up(&[T, d_out], &mut rng),
                dy: up(&[T, d_out], &mut rng),
                dx: up(&[T, d_in], &mut rng),
            }
        })
        .collect()
}

/// Every forward, then every backward in reverse (as a trainer records them), in one
/// submit; the outputs as bit patterns.
fn run(gpu: &Gpu, cs: &[Case]) -> Vec<Vec<u32>> {
    let mut rec = Recorder::new();
    for c in cs {
        rec.run_all(&c.layer.forward(gpu, &c.w0, &c.x, &c.y).unwrap());
    }
    for c in cs.iter().rev() {
        let ds = c.layer.backward(gpu, &c.w0, &c.x, &c.dy, Some(&c.dx), None);
        rec.run_all(&ds.unwrap());
    }
    gpu.run(&rec).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        gpu.download(t)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    cs.iter()
        .flat_map(|c| {
            [
                bits(&c.y),
                bits(&c.dx),
                bits(&c.layer.grad_a),
                bits(&c.layer.grad_b),
            ]
        })
        .collect()
}

#[test]
fn lora_through_the_shared_room_is_bit_identical_and_smaller() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    let spec = AdapterSpec::from_options(Method::Lora, None, Some(8), None, Some(16.0)).unwrap();
    let own = cases(&gpu, spec, None);
    let want = run(&gpu, &own);
    drop(own);

    // Peaks over building and running each version (the dispatch lists, which hold
    // their buffers, live until the outputs are read).
    let peak = |f: &dyn Fn() -> Vec<Vec<u32>>| {
        gpu.wait().unwrap();
        let base = gpu.live_bytes();
        gpu.reset_peak();
        let out = f();
        (out, gpu.peak_bytes() - base)
    };
    let (got, shared_bytes) = peak(&|| {
        let rooms = SHAPES.iter().map(|&(o, i)| (&spec, T, o, i));
        let scratch = GradScratch::new(&gpu, rooms).unwrap();
        run(&gpu, &cases(&gpu, spec, Some(&scratch)))
    });
    assert!(got == want, "LoRA through the shared room differs");
    // With buffers of their own the matrices hold 2·T·r floats each (the forward's U,
    // the backward's U and then dU) where the shared version holds one room for all.
    let (_, own_bytes) = peak(&|| run(&gpu, &cases(&gpu, spec, None)));
    let r = spec.block_rank;
    let want_saved = (4 * (2 * SHAPES.len() * T * r - T * r)) as i64;
    // The shared scratch also holds two 1-element partial rooms: a few bytes.
    let saved = own_bytes as i64 - shared_bytes as i64;
    assert!(
        (saved - want_saved).abs() <= 16,
        "saved {saved} bytes, expected {want_saved}"
    );
}
