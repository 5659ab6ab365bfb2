//! The report's GSM8K likelihood section. A small model's GSM8K accuracy sits near the
//! floor, where no method can be told from another; the gold worked solution's
//! log-likelihood per token after the prompt (ℓ_i for item i, nats, higher is better;
//! [`crate::eval::EvalOptions::gold_loglik`]) still moves with training. Per run the
//! score is the mean of ℓ_i over the test items; over seeds, mean ± 95 % t-interval; two
//! methods are compared by the paired bootstrap of the per-item difference of their
//! seed-averaged ℓ_i, as accuracy is.

use serde_json::Value;

use super::super::run::{read_json, Layout, RunKey, CONTINUAL};
use super::super::stats::{mean_ci, paired_bootstrap, BOOTSTRAP_SAMPLES};
use super::{acc, label, short, Collected};
use crate::adapters::Method;
use crate::data::benchmarks::Benchmark;
use crate::Result;

/// Per-item ℓ_i of one run's GSM8K test (None: not run yet, or run before the gold was
/// scored).
fn gold_items(layout: &Layout, run: Option<&RunKey>) -> Result<Option<Vec<f64>>> {
    let p = layout.eval_result(run, Benchmark::Gsm8k);
    if !p.exists() {
        return Ok(None);
    }
    let v = read_json(&p)?;
    let Some(xs) = v.get("gold_loglik").and_then(Value::as_array) else {
        return Ok(None);
    };
    let xs: Vec<f64> = xs.iter().filter_map(Value::as_f64).collect();
    let n = v.get("n").and_then(Value::as_u64).unwrap_or(0) as usize;
    Ok((xs.len() == n && n > 0).then_some(xs))
}

/// The run key of `method`'s seed on `suite` (the continual second stage runs at the
/// method's GSM8K rate).
fn key(c: &Collected, suite: &'static str, m: Method, seed: u64) -> Option<RunKey> {
    if suite == CONTINUAL {
        c.lr.get(&("gsm8k", m.name())).map(|&lr| RunKey {
            suite: CONTINUAL.into(),
            method: m,
            lr,
            seed,
        })
    } else {
        c.run(suite, m, seed)
    }
}

/// Per seed with a scored test, its per-item ℓ_i.
fn per_seed(c: &Collected, suite: &'static str, m: Method) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::new();
    for &seed in &c.p.seeds {
        if let Some(k) = key(c, suite, m, seed) {
            if let Some(xs) = gold_items(c.layout, Some(&k))? {
                out.push(xs);
            }
        }
    }
    Ok(out)
}

/// Per item, ℓ_i averaged over the seeds that have it (None: no seed yet).
fn item_means(c: &Collected, suite: &'static str, m: Method) -> Result<Option<Vec<f64>>> {
    let seeds = per_seed(c, suite, m)?;
    let Some(first) = seeds.first() else {
        return Ok(None);
    };
    let n = first.len();
    let same: Vec<&Vec<f64>> = seeds.iter().filter(|s| s.len() == n).collect();
    Ok(Some(
        (0..n)
            .map(|i| same.iter().map(|s| s[i]).sum::<f64>() / same.len() as f64)
            .collect(),
    ))
}

fn nats_ci((m, h): (f64, f64)) -> String {
    if m.is_nan() {
        "–".into()
    } else if h.is_nan() {
        format!("{m:.3}")
    } else {
        format!("{m:.3} ± {h:.3}")
    }
}

/// The GSM8K likelihood section: per method on the GSM8K suite and after the continual
/// second stage, then BoHA against the others, paired over items.
pub(super) fn gold_section(c: &Collected, md: &mut String) -> Result<()> {
    if c.p.suite("gsm8k").is_none() {
        return Ok(());
    }
    md.push_str(
        "## GSM8K: the gold solution's log-likelihood\n\n\
         A small model's GSM8K accuracy sits near the floor, where methods cannot be told \
         apart; the log-likelihood per token of each test item's gold worked solution after \
         its prompt (nats; higher is better) still moves with training. Per run, its mean \
         over the items; mean ± 95 % interval over seeds (how many seeds in parentheses). The continual column is stage 2 \
         (GSM8K after commonsense), the plasticity of the continual diagnostic.\n\n\
         | method | GSM8K suite | continual stage 2 |\n|---|---|---|\n",
    );
    let base = gold_items(c.layout, None)?.map_or("–".into(), |xs| format!("{:.3}", acc(&xs)));
    md.push_str(&format!("| base model | {base} | – |\n"));
    let seeds = c.p.seeds.len();
    for &m in &c.p.methods {
        let suite = per_seed(c, "gsm8k", m)?;
        let stage2 = per_seed(c, CONTINUAL, m)?;
        let ci = |runs: &[Vec<f64>]| match runs.len() {
            0 => "–".to_string(),
            k => {
                let per_run: Vec<f64> = runs.iter().map(|x| acc(x)).collect();
                format!("{} ({k}/{seeds})", nats_ci(mean_ci(&per_run)))
            }
        };
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            label(c.p, m),
            ci(&suite),
            ci(&stage2)
        ));
    }
    md.push_str(
        "\nPaired over items (each item's log-likelihood averaged over seeds, BoHA's minus \
         the other's, resampled over items 2000 times):\n\n\
         | comparison | setting | difference (nats per token) | 95 % interval | verdict |\n\
         |---|---|---|---|---|\n",
    );
    let pairs = [
        (Method::Lora, "gsm8k"),
        (Method::Abba, "gsm8k"),
        (Method::Additive, CONTINUAL),
        (Method::Lora, CONTINUAL),
    ];
    for (i, (other, suite)) in pairs.into_iter().enumerate() {
        if !c.p.methods.contains(&other) || !c.p.methods.contains(&Method::Boha) {
            continue;
        }
        let setting = if suite == CONTINUAL {
            "continual stage 2"
        } else {
            "GSM8K suite"
        };
        let cells = match (
            item_means(c, suite, Method::Boha)?,
            item_means(c, suite, other)?,
        ) {
            (Some(b), Some(o)) if b.len() == o.len() => {
                let d: Vec<f64> = b.iter().zip(&o).map(|(x, y)| x - y).collect();
                let (obs, lo, hi) = paired_bootstrap(&[d], BOOTSTRAP_SAMPLES, 40 + i as u64);
                let verdict = if lo > 0.0 {
                    "BoHA fits the gold better"
                } else if hi < 0.0 {
                    "**BoHA fits the gold worse**"
                } else {
                    "not distinguishable (the interval holds 0)"
                };
                format!("{obs:+.3} | [{lo:+.3}, {hi:+.3}] | {verdict}")
            }
            _ => "– | – | not run yet".into(),
        };
        md.push_str(&format!(
            "| BoHA − {} | {setting} | {cells} |\n",
            short(other)
        ));
    }
    md.push('\n');
    Ok(())
}
