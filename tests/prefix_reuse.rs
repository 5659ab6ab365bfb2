//! A session's prefill that keeps the cached prefix its sequence shares with the one
//! before (`Session::prefill_reusing`): the logits match a fresh prefill and the
//! reference, through rewinds, single-token steps and prompts that share nothing, all of
//! the prompt, or more than the prompt.

mod common;
mod model_specs;

use boha::loaders::load_checkpoint;
use boha::model::kv_cache::{Model, Session};
use boha::model::reference::Reference;
use common::assert_close;

#[test]
fn reused_prefix_gives_the_logits_of_a_fresh_prefill() {
    let Some(gpu) = common::gpu() else { return };
    for arch in ["llama", "gemma2"] {
        let ck = load_checkpoint(&model_specs::write_dir(arch, &format!("reuse-{arch}"))).unwrap();
        let v = ck.config.vocab_size;
        let reference = Reference::new(&ck).unwrap();
        let model = Model::load(&gpu, &ck).unwrap();
        let a: Vec<u32> = (0..37).map(|i| (i * 7 + 3) % v as u32).collect();
        let mut b = a[..21].to_vec();
        b.extend((0..9).map(|i| (i * 11 + 5) % v as u32));
        let c: Vec<u32> = (0..12).map(|i| (i * 13 + 1) % v as u32).collect();
        let mut s = Session::new(&gpu, &model, 64).unwrap();
        // (sequence, positions the cache shares with it before the call, logit rows)
        let cases: [(&[u32], usize, usize); 7] = [
            (&a, 0, 1),
            (&b, 21, 1),
            (&a, 21, 3),
            (&a, 37, 1),       // the same prompt again: its last token runs again
            (&a[..30], 30, 1), // a prefix of the cached sequence
            (&a, 30, 9),       // more rows than the new tokens: 28 of 30 are kept
            (&c, 0, 12),
        ];
        for (i, (seq, shared, rows)) in cases.iter().enumerate() {
            assert_eq!(s.shared_prefix(seq), *shared, "{arch} case {i}");
            let got = s.prefill_reusing(&gpu, seq, *rows, 8).unwrap();
            assert_eq!(s.cache.len, seq.len(), "{arch} case {i}");
            let want: Vec<f32> = reference.logits(seq, 1).unwrap()[(seq.len() - rows) * v..]
                .iter()
                .map(|&x| x as f32)
                .collect();
            assert_close(&format!("{arch} case {i}"), &got, &want, 2e-4);
            let mut fresh = Session::new(&gpu, &model, 64).unwrap();
            let alone = fresh.prefill_rows(&gpu, seq, *rows, 8).unwrap();
            assert_close(&format!("{arch} case {i} vs fresh"), &got, &alone, 1e-5);
        }
        // A rewind and a step after the prompt: the cache then holds c[..5] + [9].
        s.rewind(5);
        s.forward(&gpu, &[9], false).unwrap();
        let mut d = c[..5].to_vec();
        d.extend([9, 4, 4]);
        assert_eq!(s.shared_prefix(&d), 6);
        assert_eq!(s.shared_prefix(&c), 5);
        let got = s.prefill_reusing(&gpu, &d, 1, 8).unwrap();
        let want: Vec<f32> = reference.logits(&d, 1).unwrap()[(d.len() - 1) * v..]
            .iter()
            .map(|&x| x as f32)
            .collect();
        assert_close(&format!("{arch} after a rewind"), &got, &want, 2e-4);
        s.reset();
        assert_eq!(s.shared_prefix(&d), 0);
        assert!(s.prefill_reusing(&gpu, &[], 1, 8).is_err());
        assert!(s.prefill_reusing(&gpu, &d, 0, 8).is_err());
        assert!(s.prefill_reusing(&gpu, &d, d.len() + 1, 8).is_err());
    }
}
