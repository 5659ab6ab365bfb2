//! The Khatri–Rao pair products (`boha::adapters::khatri_rao`) against their f64 CPU
//! references: forward, accumulating backward, views into larger buffers, and shape
//! errors.

mod common;

use boha::adapters::khatri_rao::{self, reference};
use boha::gpu::{Dispatch, Gpu, GpuOptions, Recorder, Tensor};
use boha::rng::Rng;
use common::assert_close;

fn run(gpu: &Gpu, ds: &[Dispatch]) {
    let mut r = Recorder::new();
    r.run_all(ds);
    gpu.run(&r).unwrap();
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

const SHAPES: &[(usize, usize)] = &[(1, 7), (2, 12), (3, 33), (5, 7), (5, 33), (8, 12)];

/// The forward and accumulating backward of one side (`b`: pair_b, else pair_a) at h, d.
fn check_side(gpu: &Gpu, rng: &mut Rng, b_side: bool, h: usize, d: usize) {
    let what = format!("{} h {h} d {d}", if b_side { "pair_b" } else { "pair_a" });
    let (x_shape, kr_shape) = if b_side {
        ([d, 2 * h], [d, h * h])
    } else {
        ([2 * h, d], [h * h, d])
    };
    let x = rng.vec_f32(2 * h * d, -1.5, 1.5);
    let dkr = rng.vec_f32(h * h * d, -1.0, 1.0);
    let start = rng.vec_f32(2 * h * d, -0.5, 0.5);

    let mut kr_want = vec![0.0; h * h * d];
    let mut grad_want = f64s(&start);
    if b_side {
        reference::pair_b(&f64s(&x), h, d, &mut kr_want).unwrap();
        reference::pair_b_backward(&f64s(&x), &f64s(&dkr), h, d, &mut grad_want).unwrap();
    } else {
        reference::pair_a(&f64s(&x), h, d, &mut kr_want).unwrap();
        reference::pair_a_backward(&f64s(&x), &f64s(&dkr), h, d, &mut grad_want).unwrap();
    }

    let xt = gpu.upload(&x_shape, &x).unwrap();
    // Garbage in the output: the forward overwrites it.
    let krt = gpu.upload(&kr_shape, &vec![7.0; h * h * d]).unwrap();
    let dkrt = gpu.upload(&kr_shape, &dkr).unwrap();
    let gt = gpu.upload(&x_shape, &start).unwrap();
    let (fwd, bwd) = if b_side {
        (
            khatri_rao::pair_b(gpu, &xt, h, d, &krt).unwrap(),
            khatri_rao::pair_b_backward(gpu, &xt, &dkrt, h, d, &gt).unwrap(),
        )
    } else {
        (
            khatri_rao::pair_a(gpu, &xt, h, d, &krt).unwrap(),
            khatri_rao::pair_a_backward(gpu, &xt, &dkrt, h, d, &gt).unwrap(),
        )
    };
    run(gpu, &fwd);
    run(gpu, &bwd);
    assert_close(
        &format!("{what} forward"),
        &gpu.download(&krt).unwrap(),
        &f32s(&kr_want),
        1e-6,
    );
    assert_close(
        &format!("{what} backward"),
        &gpu.download(&gt).unwrap(),
        &f32s(&grad_want),
        1e-5,
    );

    // Recording the backward twice adds twice.
    run(gpu, &bwd);
    let twice: Vec<f64> = grad_want
        .iter()
        .zip(&start)
        .map(|(g, &s)| 2.0 * g - s as f64)
        .collect();
    assert_close(
        &format!("{what} backward twice"),
        &gpu.download(&gt).unwrap(),
        &f32s(&twice),
        1e-5,
    );
}

#[test]
fn pair_b_matches_reference() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(1);
    for &(h, d) in SHAPES {
        check_side(&gpu, &mut rng, true, h, d);
    }
}

#[test]
fn pair_a_matches_reference() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(2);
    for &(h, d) in SHAPES {
        check_side(&gpu, &mut rng, false, h, d);
    }
}

/// Products over the storage-binding limit are bound in ranges, one dispatch each; the
/// backward adds every range's terms.
#[test]
fn products_over_the_binding_limit_are_bound_in_ranges() {
    let Some(gpu) = common::gpu_with(&GpuOptions {
        max_binding_override: Some(2048),
        ..Default::default()
    }) else {
        return;
    };
    let mut rng = Rng::new(4);
    for &(h, d) in &[(5usize, 33usize), (8, 12), (3, 61)] {
        let n = h * h * d;
        let xt = gpu.zeros(&[2 * h * d]).unwrap();
        let krt = gpu.zeros(&[n]).unwrap();
        let gt = gpu.zeros(&[2 * h * d]).unwrap();
        assert!(khatri_rao::pair_b(&gpu, &xt, h, d, &krt).unwrap().len() > 1);
        assert!(
            khatri_rao::pair_a_backward(&gpu, &xt, &krt, h, d, &gt)
                .unwrap()
                .len()
                > 1
        );
        check_side(&gpu, &mut rng, true, h, d);
        check_side(&gpu, &mut rng, false, h, d);
    }
}

/// Factors and products handed in as reshaped views at offsets of shared buffers (as a
/// trainer hands out scratch): the parameters in one buffer, the products and their
/// gradients in another, the factor gradients in a third.
#[test]
fn views_of_shared_buffers() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(3);
    let (h, d_out, d_in) = (3usize, 12usize, 33usize);
    // Aligned element offsets for views that kernels bind.
    let step = (gpu.binding_offset_align() as usize / 4).max(1);
    let pad = |n: usize| n.div_ceil(step) * step;
    let (nb, na) = (d_out * 2 * h, 2 * h * d_in);
    let (nbk, nak) = (d_out * h * h, h * h * d_in);

    let b = rng.vec_f32(nb, -1.0, 1.0);
    let a = rng.vec_f32(na, -1.0, 1.0);
    let params = gpu.zeros(&[pad(nb) + na]).unwrap();
    let mut host = vec![0.0; pad(nb) + na];
    host[..nb].copy_from_slice(&b);
    host[pad(nb)..].copy_from_slice(&a);
    gpu.write(&params, &host).unwrap();
    let bt = params
        .view(0, nb)
        .unwrap()
        .reshape(&[d_out, 2 * h])
        .unwrap();
    let at = params
        .view(pad(nb), na)
        .unwrap()
        .reshape(&[2 * h, d_in])
        .unwrap();

    // Products [b_kr | a_kr | d_b_kr | d_a_kr] in one scratch buffer.
    let offs = [0, pad(nbk), pad(nbk) + pad(nak), 2 * pad(nbk) + pad(nak)];
    let scratch = gpu.zeros(&[offs[3] + pad(nak)]).unwrap();
    let b_kr = scratch.view(offs[0], nbk).unwrap();
    let a_kr = scratch.view(offs[1], nak).unwrap();
    let d_b_kr = scratch.view(offs[2], nbk).unwrap();
    let d_a_kr = scratch.view(offs[3], nak).unwrap();
    let dbk = rng.vec_f32(nbk, -1.0, 1.0);
    let dak = rng.vec_f32(nak, -1.0, 1.0);
    gpu.write(&d_b_kr, &dbk).unwrap();
    gpu.write(&d_a_kr, &dak).unwrap();

    let grads = gpu.zeros(&[pad(nb) + na]).unwrap();
    let gb = grads.view(0, nb).unwrap();
    let ga = grads.view(pad(nb), na).unwrap();
    let (sb, sa) = (rng.vec_f32(nb, -1.0, 1.0), rng.vec_f32(na, -1.0, 1.0));
    gpu.write(&gb, &sb).unwrap();
    gpu.write(&ga, &sa).unwrap();

    let mut ds = Vec::new();
    ds.extend(khatri_rao::pair_b(&gpu, &bt, h, d_out, &b_kr).unwrap());
    ds.extend(khatri_rao::pair_a(&gpu, &at, h, d_in, &a_kr).unwrap());
    ds.extend(khatri_rao::pair_b_backward(&gpu, &bt, &d_b_kr, h, d_out, &gb).unwrap());
    ds.extend(khatri_rao::pair_a_backward(&gpu, &at, &d_a_kr, h, d_in, &ga).unwrap());
    run(&gpu, &ds);

    let mut want_bk = vec![0.0; nbk];
    let mut want_ak = vec![0.0; nak];
    let mut want_gb = f64s(&sb);
    let mut want_ga = f64s(&sa);
    reference::pair_b(&f64s(&b), h, d_out, &mut want_bk).unwrap();
    reference::pair_a(&f64s(&a), h, d_in, &mut want_ak).unwrap();
    reference::pair_b_backward(&f64s(&b), &f64s(&dbk), h, d_out, &mut want_gb).unwrap();
    reference::pair_a_backward(&f64s(&a), &f64s(&dak), h, d_in, &mut want_ga).unwrap();
    let down = |t: &Tensor| gpu.download(t).unwrap();
    assert_close("b_kr", &down(&b_kr), &f32s(&want_bk), 1e-6);
    assert_close("a_kr", &down(&a_kr), &f32s(&want_ak), 1e-6);
    assert_close("grad_b", &down(&gb), &f32s(&want_gb), 1e-5);
    assert_close("grad_a", &down(&ga), &f32s(&want_ga), 1e-5);
    // The padding between the views is untouched.
    let all = down(&scratch);
    assert!(all[nbk..offs[1]].iter().all(|&v| v == 0.0));
    let g = down(&grads);
    assert!(g[nb..pad(nb)].iter().all(|&v| v == 0.0));
}

#[test]
fn shape_errors() {
    let Some(gpu) = common::gpu() else { return };
    let (h, d) = (2usize, 7usize);
    let b = gpu.zeros(&[d, 2 * h]).unwrap();
    let b_kr = gpu.zeros(&[d, h * h]).unwrap();
    let a = gpu.zeros(&[2 * h, d]).unwrap();
    let a_kr = gpu.zeros(&[h * h, d]).unwrap();
    let grad = gpu.zeros(&[d, 2 * h]).unwrap();
    let short = gpu.zeros(&[d * h * h - 1]).unwrap();

    let e = khatri_rao::pair_b(&gpu, &b, h, d, &short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("b_kr") && e.contains("27"), "{e}");
    assert!(khatri_rao::pair_b(&gpu, &b, h, d + 1, &b_kr).is_err());
    assert!(khatri_rao::pair_a(&gpu, &a, 3, d, &a_kr).is_err());
    assert!(khatri_rao::pair_a(&gpu, &a, 0, d, &a_kr).is_err());
    assert!(khatri_rao::pair_b(&gpu, &b, 0, d, &b_kr).is_err());
    assert!(khatri_rao::pair_b_backward(&gpu, &b, &short, h, d, &grad).is_err());
    assert!(khatri_rao::pair_a_backward(&gpu, &a, &a_kr, h, d, &short).is_err());
    assert!(khatri_rao::pair_a_backward(&gpu, &a, &a_kr, 0, d, &grad).is_err());
    // The written tensor may not share a buffer with one the op reads.
    let both = gpu.zeros(&[2 * d * 2 * h]).unwrap();
    let x = both.view(0, d * 2 * h).unwrap();
    let g = both.view(d * 2 * h, d * 2 * h).unwrap();
    let e = khatri_rao::pair_b_backward(&gpu, &x, &b_kr, h, d, &g)
        .unwrap_err()
        .to_string();
    assert!(e.contains("share"), "{e}");
    // The right shapes still work.
    assert!(khatri_rao::pair_b(&gpu, &b, h, d, &b_kr).is_ok());
    assert!(khatri_rao::pair_a_backward(&gpu, &a, &a_kr, h, d, &grad).is_ok());
}
