//! Loads a checkpoint (Hugging Face directory or .gguf file) and prints what boha sees:
//! config, tensors, weight statistics, the tokenizer on a sample sentence and the
//! rendered chat template.
//!
//!     cargo run --release --example inspect_model -- path/to/model.gguf

use std::collections::BTreeMap;
use std::path::PathBuf;

use boha::loaders::gguf::{permute_rows, unpermute_rows, GgufFile, MetaValue};
use boha::loaders::{load_checkpoint, ChatMessage};

fn main() {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: inspect_model <model.gguf | hf-directory>");
        std::process::exit(2);
    };
    if let Err(e) = run(&path) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(path: &std::path::Path) -> boha::Result<()> {
    let gguf = if path.is_file() {
        Some(GgufFile::open(path)?)
    } else {
        None
    };
    if let Some(g) = &gguf {
        println!(
            "== GGUF v{}: {} metadata entries, {} tensors, data at byte {}",
            g.version,
            g.metadata.entries.len(),
            g.tensors.len(),
            g.data_start
        );
        for (k, v) in &g.metadata.entries {
            println!("  {k} = {}", short(v));
        }
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &g.tensors {
            *types.entry(t.ggml_type.name()).or_default() += 1;
        }
        println!("  tensor types: {types:?}");
        for t in g.tensors.iter().take(12) {
            println!("  {:<28} {:<6} ne={:?}", t.name, t.ggml_type.name(), t.ne);
        }
    }

    let t0 = std::time::Instant::now();
    let ck = load_checkpoint(path)?;
    println!("\n== loaded in {:.2?}", t0.elapsed());
    println!("{:#?}", ck.config);
    println!("parameters: {}", ck.config.num_parameters());
    println!(
        "bos {:?}, eos {:?}, add_bos {}, generation {:?}",
        ck.bos_token, ck.eos_tokens, ck.add_bos, ck.generation
    );

    println!("\n== tensors ({})", ck.tensors.len());
    let (mut nan, mut total) = (0usize, 0usize);
    for (name, t) in &ck.tensors {
        let data = t.to_f32()?;
        let s = stats(&data);
        nan += s.nonfinite;
        total += t.len();
        if !name.starts_with("layers.")
            || name.starts_with("layers.0.")
            || name.starts_with("layers.29.")
        {
            println!(
                "  {name:<22} {:?} mean {:+.4} std {:.4} min {:+.4} max {:+.4} first {:?}",
                t.shape,
                s.mean,
                s.std,
                s.min,
                s.max,
                &data[..4.min(data.len())]
                    .iter()
                    .map(|v| (v * 1e4).round() / 1e4)
                    .collect::<Vec<_>>()
            );
        }
    }
    println!("  {total} values, {nan} not finite");

    if let Some(g) = &gguf {
        // Rotary pairs (j, j + HS/2) in HF layout turn at one frequency, and trained q/k
        // rows carry norms that follow the frequency, so the norm profile (averaged over
        // layers and heads) repeats with period HS/2 in HF layout. In the raw GGUF
        // layout the pairs are (2j, 2j + 1) instead.
        let c = &ck.config;
        if let Some(raw) = g
            .tensor("blk.0.attn_q.weight")
            .map(|t| g.read_f32(t))
            .transpose()?
        {
            let back = unpermute_rows(&raw.to_f32()?, c.q_dim(), c.hidden_size, c.num_heads)
                .unwrap_or_default();
            println!(
                "\n== q/k un-permutation: layers.0.q == unpermute(raw blk.0.attn_q): {}",
                back == ck.tensor("layers.0.q")?.to_f32()?
            );
        }
        for which in ["q", "k"] {
            let heads = if which == "q" {
                c.num_heads
            } else {
                c.num_kv_heads
            };
            let mut prof = vec![0f64; c.head_dim];
            let mut prof_raw = vec![0f64; c.head_dim];
            for l in 0..c.num_layers {
                let w = &ck.tensor(&format!("layers.{l}.{which}"))?.to_f32()?;
                let raw =
                    permute_rows(w, heads * c.head_dim, c.hidden_size, heads).unwrap_or_default();
                for (p, w) in [(&mut prof, w), (&mut prof_raw, &raw)] {
                    for r in 0..heads * c.head_dim {
                        p[r % c.head_dim] += w[r * c.hidden_size..(r + 1) * c.hidden_size]
                            .iter()
                            .map(|v| (*v as f64).powi(2))
                            .sum::<f64>();
                    }
                }
            }
            println!(
                "  {which}: row-norm² profile mismatch between pair dims j, j+HS/2: loaded {:.3}, GGUF order {:.3} (lower = pairs match)",
                half_mismatch(&prof),
                half_mismatch(&prof_raw)
            );
        }
    }

    println!("\n== tokenizer");
    let text = "What is the capital of France?";
    let ids = ck.encode(text)?;
    let pieces: Vec<String> = ids
        .iter()
        .map(|&i| ck.tokenizer.id_to_token(i).unwrap_or_default())
        .collect();
    println!("  {text:?} -> {ids:?}");
    println!("  pieces {pieces:?}");
    println!("  decoded {:?}", ck.decode(&ids)?);
    let digits = ck.encode("In 2024, 12345 cats.\n")?;
    println!(
        "  digits/newline -> {digits:?} {:?}",
        digits
            .iter()
            .map(|&i| ck.tokenizer.id_to_token(i).unwrap_or_default())
            .collect::<Vec<_>>()
    );

    if ck.chat_template.is_some() {
        let msgs = [ChatMessage::new("user", text)];
        let rendered = ck.render_chat(&msgs, true)?;
        println!("\n== chat template rendered:\n{rendered}");
        let ids = ck.encode(&rendered)?;
        println!("  {} tokens: {ids:?}", ids.len());
        println!("  round trip exact: {}", ck.decode(&ids)? == rendered);
    }
    Ok(())
}

fn short(v: &MetaValue) -> String {
    match v {
        MetaValue::Array(a) => format!(
            "[{} items: {}{}]",
            a.len(),
            a.iter().take(4).map(short).collect::<Vec<_>>().join(", "),
            if a.len() > 4 { ", …" } else { "" }
        ),
        MetaValue::Str(s) if s.len() > 80 => format!(
            "{:?}… ({} bytes)",
            &s[..s.char_indices().nth(60).map_or(s.len(), |c| c.0)],
            s.len()
        ),
        MetaValue::Str(s) => format!("{s:?}"),
        other => format!("{other:?}"),
    }
}

struct Stats {
    mean: f64,
    std: f64,
    min: f32,
    max: f32,
    nonfinite: usize,
}

fn stats(data: &[f32]) -> Stats {
    let (mut s, mut s2, mut min, mut max, mut bad) =
        (0f64, 0f64, f32::INFINITY, f32::NEG_INFINITY, 0);
    for &v in data {
        if !v.is_finite() {
            bad += 1;
            continue;
        }
        s += v as f64;
        s2 += (v as f64) * (v as f64);
        min = min.min(v);
        max = max.max(v);
    }
    let n = data.len().max(1) as f64;
    let mean = s / n;
    Stats {
        mean,
        std: (s2 / n - mean * mean).max(0.0).sqrt(),
        min,
        max,
        nonfinite: bad,
    }
}

/// Σ_j |p[j] − p[j + HS/2]| / Σ_j p[j] over a head's profile.
fn half_mismatch(p: &[f64]) -> f64 {
    let h = p.len() / 2;
    (0..h).map(|j| (p[j] - p[j + h]).abs()).sum::<f64>() / p.iter().sum::<f64>()
}
