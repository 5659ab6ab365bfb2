//! Inference: greedy generation against the reference's argmax chain, EOS and stop
//! strings, streaming, seeded sampling, adapters unmerged and merged, and scoring with
//! a logits dump.

mod common;
mod model_specs;

use boha::adapters::{AdapterSpec, Method};
use boha::generate::score::{dump_logits, score};
use boha::generate::{generate, GenerateOptions, Sampling, StopReason};
use boha::gpu::Gpu;
use boha::loaders::{load_checkpoint, Checkpoint};
use boha::model::kv_cache::{Model, Session};
use boha::model::reference::Reference;
use boha::model::transformer::Adapters;
use boha::rng::Rng;
use common::assert_close;
use common::tiny_checkpoint::temp_dir;

fn checkpoint(arch: &str) -> Checkpoint {
    load_checkpoint(&model_specs::write_dir(arch, &format!("gen-{arch}"))).unwrap()
}

fn argmax(z: &[f64]) -> u32 {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best as u32
}

fn run(
    gpu: &Gpu,
    model: &Model,
    ck: &Checkpoint,
    prompt: &[u32],
    opts: &GenerateOptions,
) -> (boha::generate::Generation, String) {
    let mut streamed = String::new();
    let g = generate(gpu, model, ck, prompt, opts, &mut |s| streamed.push_str(s)).unwrap();
    (g, streamed)
}

#[test]
fn greedy_generation_follows_reference_and_stops() {
    let Some(gpu) = common::gpu() else { return };
    let ck = checkpoint("llama");
    let v = ck.config.vocab_size;
    let reference = Reference::new(&ck).unwrap();
    let prompt: Vec<u32> = vec![5, 77, 140, 9, 200];
    let mut seq = prompt.clone();
    for _ in 0..6 {
        let z = reference.logits(&seq, 1).unwrap();
        seq.push(argmax(&z[(seq.len() - 1) * v..]));
    }
    let want = seq[prompt.len()..].to_vec();
    let model = Model::load(&gpu, &ck).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 6,
        sampling: Sampling::default(),
        stop_strings: vec![],
        eos: vec![],
    };
    let (g, streamed) = run(&gpu, &model, &ck, &prompt, &opts);
    assert_eq!(g.tokens, want);
    assert_eq!(g.stop, StopReason::MaxTokens);
    assert_eq!(g.text, ck.decode(&want).unwrap());
    assert_eq!(streamed, g.text);

    // EOS: the third greedy token ends generation before it.
    let eos = GenerateOptions {
        eos: vec![want[2]],
        ..opts.clone()
    };
    let first = want.iter().position(|&t| t == want[2]).unwrap();
    let (g, _) = run(&gpu, &model, &ck, &prompt, &eos);
    assert_eq!(
        (g.tokens.as_slice(), g.stop),
        (&want[..first], StopReason::Eos)
    );

    // A stop string cut out of the greedy text ends it just before, streamed or not.
    let full = ck.decode(&want).unwrap();
    let cut = full
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| i >= full.len() / 2)
        .unwrap();
    let stop: String = full[cut..].chars().take(2).collect();
    let at = full.find(&stop).unwrap();
    let st = GenerateOptions {
        stop_strings: vec![stop.clone()],
        ..opts.clone()
    };
    let (g, streamed) = run(&gpu, &model, &ck, &prompt, &st);
    assert_eq!(g.stop, StopReason::StopString);
    assert_eq!(g.text, full[..at]);
    assert_eq!(streamed, g.text);

    // Seeded sampling reproduces itself and differs across seeds.
    let sample = |seed| {
        let o = GenerateOptions {
            max_new_tokens: 8,
            sampling: Sampling {
                temperature: Some(1.5),
                top_k: Some(50),
                top_p: Some(0.95),
                seed,
            },
            ..opts.clone()
        };
        run(&gpu, &model, &ck, &prompt, &o).0.tokens
    };
    let a = sample(1);
    assert_eq!(a, sample(1));
    assert_ne!(a, sample(2));
}

#[test]
fn adapters_unmerged_merged_and_reference_agree() {
    let Some(gpu) = common::gpu() else { return };
    let ck = checkpoint("qwen2");
    let spec = AdapterSpec::from_options(Method::Boha, Some(2), None, Some(2), None).unwrap();
    let mut reference = Reference::new(&ck).unwrap();
    let mut rng = Rng::new(3);
    let mut models = Vec::new();
    for merged in [false, true] {
        let mut model = Model::load(&gpu, &ck).unwrap();
        let ads = Adapters::new(&gpu, &model.weights, spec, &["q,o,up,down"], 1).unwrap();
        common::randomize_adapters(&gpu, &ads, &mut reference, &mut Rng::new(8));
        model.attach(&gpu, ads, merged).unwrap();
        assert_eq!(model.adapters.is_some(), !merged);
        models.push(model);
    }
    let v = ck.config.vocab_size;
    let tokens: Vec<u32> = (0..11).map(|_| rng.below(v) as u32).collect();
    let want: Vec<f32> = reference
        .logits(&tokens, 1)
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    let plain: Vec<f32> = Reference::new(&ck)
        .unwrap()
        .logits(&tokens, 1)
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    for (i, model) in models.iter().enumerate() {
        let mut s = Session::new(&gpu, model, 11).unwrap();
        let got = s.forward(&gpu, &tokens, true).unwrap();
        assert_close(
            &format!("adapted logits (merged: {})", i == 1),
            &got,
            &want,
            2e-4,
        );
        let diff = got
            .iter()
            .zip(&plain)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff > 1e-2, "the adapters change the logits");
    }
}

#[test]
fn score_matches_reference_and_dumps_logits() {
    let Some(gpu) = common::gpu() else { return };
    let ck = checkpoint("gemma2");
    let v = ck.config.vocab_size;
    let tokens: Vec<u32> = vec![3, 250, 17, 99, 4, 61, 200, 8, 140];
    let z = Reference::new(&ck).unwrap().logits(&tokens, 1).unwrap();
    let mut nll = 0.0;
    for t in 0..tokens.len() - 1 {
        let row = &z[t * v..(t + 1) * v];
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        nll += lse - row[tokens[t + 1] as usize];
    }
    nll /= (tokens.len() - 1) as f64;
    let model = Model::load(&gpu, &ck).unwrap();
    let s = score(&gpu, &model, &tokens).unwrap();
    assert!(
        (s.mean_nll() - nll).abs() < 1e-4 * nll.abs().max(1.0),
        "{} vs {nll}",
        s.mean_nll()
    );
    assert!((s.perplexity() - nll.exp()).abs() < 1e-3 * nll.exp());
    let path = temp_dir("score").join("logits.safetensors");
    dump_logits(&path, &s).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tk = st.tensor("tokens").unwrap();
    assert_eq!(
        (tk.dtype(), tk.shape()),
        (safetensors::Dtype::I64, &[tokens.len()][..])
    );
    let ids: Vec<i64> = tk
        .data()
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(ids, tokens.iter().map(|&t| t as i64).collect::<Vec<_>>());
    let lg = st.tensor("logits").unwrap();
    assert_eq!(
        (lg.dtype(), lg.shape()),
        (safetensors::Dtype::F32, &[tokens.len(), v][..])
    );
    let vals: Vec<f32> = lg
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, s.logits);
    assert!(score(&gpu, &model, &tokens[..1]).is_err());
}
