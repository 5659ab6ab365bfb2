//! Batched decoding: every slot of a `DecodeBatch` follows the same sequence decoded
//! alone in a `Session` (and the CPU reference), whatever the prompt lengths, when the
//! slots are filled and refilled, with sliding windows, soft-caps and unmerged adapters;
//! a full slot stays full without disturbing the others.

mod common;
mod model_specs;

use boha::adapters::{AdapterSpec, Method};
use boha::gpu::Gpu;
use boha::loaders::{load_checkpoint, Checkpoint};
use boha::model::decode_batch::DecodeBatch;
use boha::model::kv_cache::{Model, Session};
use boha::model::reference::Reference;
use boha::model::transformer::Adapters;
use boha::rng::Rng;
use common::assert_close;

fn checkpoint(arch: &str) -> Checkpoint {
    load_checkpoint(&model_specs::write_dir(arch, &format!("batch-{arch}"))).unwrap()
}

/// The logits after each of `seq`'s positions from `prompt_len` - 1 on, decoding alone.
fn alone(gpu: &Gpu, model: &Model, seq: &[u32], prompt_len: usize, cap: usize) -> Vec<Vec<f32>> {
    let mut s = Session::new(gpu, model, cap).unwrap();
    let mut out = vec![s.forward(gpu, &seq[..prompt_len], false).unwrap()];
    for &t in &seq[prompt_len..] {
        out.push(s.forward(gpu, &[t], false).unwrap());
    }
    out
}

/// Prefills `prompt` alone and puts it into `slot`.
fn load(gpu: &Gpu, model: &Model, b: &mut DecodeBatch, slot: usize, prompt: &[u32]) -> Vec<f32> {
    let mut s = Session::new(gpu, model, b.capacity()).unwrap();
    let first = s.forward(gpu, prompt, false).unwrap();
    b.load(gpu, slot, &s).unwrap();
    assert_eq!(b.len(slot), prompt.len());
    first
}

/// Three sequences of different prompt lengths decoded in a 3-slot batch: slot 0 starts
/// alone, slots 1 and 2 join two steps later, and slot 1 is refilled with a fourth
/// sequence once its own ends. Every row matches the lone decode.
fn check(gpu: &Gpu, ck: &Checkpoint, model: &Model, what: &str) {
    let v = ck.config.vocab_size;
    let mut rng = Rng::new(21);
    let cap = 16;
    let prompts = [3usize, 7, 1, 5];
    let seqs: Vec<Vec<u32>> = prompts
        .iter()
        .map(|&p| (0..p + 6).map(|_| rng.below(v) as u32).collect())
        .collect();
    let want: Vec<Vec<Vec<f32>>> = seqs
        .iter()
        .zip(prompts)
        .map(|(s, p)| alone(gpu, model, s, p, cap))
        .collect();
    let mut b = DecodeBatch::new(gpu, model, 3, cap).unwrap();
    assert!(b.is_empty());
    // (sequence, next position to feed) per slot.
    let mut at: Vec<Option<(usize, usize)>> = vec![None; 3];
    let begin = |b: &mut DecodeBatch, slot: usize, q: usize, at: &mut Vec<_>| {
        let first = load(gpu, model, b, slot, &seqs[q][..prompts[q]]);
        assert_close(&format!("{what}: prefill {q}"), &first, &want[q][0], 1e-5);
        at[slot] = Some((q, prompts[q]));
    };
    begin(&mut b, 0, 0, &mut at);
    for step in 0..9 {
        if step == 2 {
            begin(&mut b, 1, 1, &mut at);
            begin(&mut b, 2, 2, &mut at);
        }
        let tokens: Vec<u32> = at
            .iter()
            .map(|a| a.map_or(0, |(q, p)| seqs[q][p]))
            .collect();
        let logits = b.step(gpu, &tokens).unwrap();
        for slot in 0..3 {
            let Some((q, p)) = at[slot] else { continue };
            let got = &logits[slot * v..(slot + 1) * v];
            let k = p + 1 - prompts[q];
            let tag = format!("{what}: slot {slot}, sequence {q}, position {p}");
            assert_close(&tag, got, &want[q][k], 1e-4);
            assert_eq!(b.len(slot), p + 1, "{tag}");
            at[slot] = (p + 1 < seqs[q].len()).then_some((q, p + 1));
        }
        if at[1].is_none() && step < 8 {
            begin(&mut b, 1, 3, &mut at);
        }
    }
}

#[test]
fn every_slot_decodes_as_it_would_alone() {
    let Some(gpu) = common::gpu() else { return };
    for arch in ["llama", "mistral", "gemma2", "qwen2"] {
        let ck = checkpoint(arch);
        let model = Model::load(&gpu, &ck).unwrap();
        check(&gpu, &ck, &model, arch);
    }
}

#[test]
fn unmerged_adapters_decode_batched_as_alone_and_as_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    let ck = checkpoint("qwen2");
    let spec = AdapterSpec::from_options(Method::Boha, Some(2), None, Some(2), None).unwrap();
    let mut reference = Reference::new(&ck).unwrap();
    let mut model = Model::load(&gpu, &ck).unwrap();
    let ads = Adapters::new(&gpu, &model.weights, spec, &["q,v,down"], 1).unwrap();
    common::randomize_adapters(&gpu, &ads, &mut reference, &mut Rng::new(8));
    model.attach(&gpu, ads, false).unwrap();
    check(&gpu, &ck, &model, "qwen2 + boha");

    // Two slots against the reference's last-position logits.
    let v = ck.config.vocab_size;
    let seqs: [&[u32]; 2] = [&[4, 9, 33, 2, 71], &[60, 5, 18]];
    let mut b = DecodeBatch::new(&gpu, &model, 2, 8).unwrap();
    for (slot, s) in seqs.iter().enumerate() {
        load(&gpu, &model, &mut b, slot, &s[..s.len() - 1]);
    }
    let last: Vec<u32> = seqs.iter().map(|s| s[s.len() - 1]).collect();
    let got = b.step(&gpu, &last).unwrap();
    for (slot, s) in seqs.iter().enumerate() {
        let all = reference.logits(s, 1).unwrap();
        let want: Vec<f32> = all[all.len() - v..].iter().map(|&x| x as f32).collect();
        assert_close(
            &format!("slot {slot} vs reference"),
            &got[slot * v..(slot + 1) * v],
            &want,
            2e-4,
        );
    }
}

#[test]
fn a_full_slot_stays_full_and_leaves_the_others_alone() {
    let Some(gpu) = common::gpu() else { return };
    let ck = checkpoint("llama");
    let model = Model::load(&gpu, &ck).unwrap();
    let v = ck.config.vocab_size;
    let cap = 6;
    let other: Vec<u32> = vec![8, 1, 40, 3];
    let want = alone(&gpu, &model, &other, 2, cap);
    let mut b = DecodeBatch::new(&gpu, &model, 2, cap).unwrap();
    load(&gpu, &model, &mut b, 0, &[1, 2, 3, 4, 5, 6]);
    load(&gpu, &model, &mut b, 1, &other[..2]);
    for (k, &t) in other[2..].iter().enumerate() {
        let logits = b.step(&gpu, &[7, t]).unwrap();
        assert_eq!(b.len(0), cap, "a full slot keeps its length");
        assert_close("the other slot", &logits[v..], &want[k + 1], 1e-4);
    }
}

#[test]
fn bad_batch_calls_are_errors() {
    let Some(gpu) = common::gpu() else { return };
    let ck = checkpoint("llama");
    let model = Model::load(&gpu, &ck).unwrap();
    assert!(DecodeBatch::new(&gpu, &model, 0, 4).is_err());
    let mut b = DecodeBatch::new(&gpu, &model, 2, 4).unwrap();
    let e = b.step(&gpu, &[1]).unwrap_err().to_string();
    assert!(e.contains("1 tokens for a 2-slot"), "{e}");
    let e = b.step(&gpu, &[1, 1 << 30]).unwrap_err().to_string();
    assert!(e.contains("vocabulary"), "{e}");
    let mut s = Session::new(&gpu, &model, 6).unwrap();
    s.forward(&gpu, &[1, 2, 3, 4, 5], false).unwrap();
    let e = b.load(&gpu, 0, &s).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
    let e = b.load(&gpu, 2, &s).unwrap_err().to_string();
    assert!(e.contains("slot 2"), "{e}");
}
