//! What a study holds when complete, what is left of it, and about how long that takes
//! at the wall times its finished units measured.
//!
//! A complete study has the data file, one result per training run (sweep rates, the
//! other seeds at the chosen rate, continual second stages) and one per test (the base
//! model's, and each trained run's on each task of its suite, or on every task for a
//! continual second stage). The time left is Σ over kinds of (units left) × (the median
//! wall time of that kind's finished units): the median, because a unit that shared the
//! machine or resumed after a cut reports a time far from the typical one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::super::preset::Preset;
use super::super::run::{read_json, sweep_of, Layout};
use crate::adapters::Method;
use crate::data::benchmarks::Benchmark;
use crate::Result;

/// The units of a complete study, by kind (the data file aside).
pub struct Plan {
    pub trains: usize,
    /// Tests per task, in the order tasks first appear in the suites.
    pub tests: Vec<(Benchmark, usize)>,
}

impl Plan {
    /// Every result file of a complete study, the data file included.
    pub fn total(&self) -> usize {
        1 + self.trains + self.tests.iter().map(|(_, n)| n).sum::<usize>()
    }
}

/// The plan of `p`; a sweep counts the rates it has tried or will try next, so the plan
/// grows when a sweep extends its grid.
pub fn plan(p: &Preset, layout: &Layout) -> Result<Plan> {
    let swept = |suite: &str, m: Method| -> Result<usize> {
        Ok(sweep_of(layout, p, suite, m)?.rates.len())
    };
    let mut tests: Vec<(Benchmark, usize)> = Vec::new();
    let mut add = |t: Benchmark, n: usize| match tests.iter_mut().find(|(u, _)| *u == t) {
        Some((_, m)) => *m += n,
        None => tests.push((t, n)),
    };
    // The base model once on each task.
    let mut unique: Vec<Benchmark> = Vec::new();
    for t in p.suites.iter().flat_map(|s| s.tests.iter().copied()) {
        if !unique.contains(&t) {
            unique.push(t);
            add(t, 1);
        }
    }
    let seeds = p.seeds.len();
    let mut trains = 0;
    for s in &p.suites {
        for &m in &p.methods {
            // The sweep's rates, then the other seeds at the chosen one; every seed is
            // tested on the suite's tasks.
            trains += swept(s.name, m)? + seeds - 1;
            for &t in &s.tests {
                add(t, seeds);
            }
        }
    }
    if p.suite("commonsense").is_some() && p.suite("gsm8k").is_some() {
        for &m in &p.methods {
            let runs = seeds + swept("gsm8k", m)? - 1;
            trains += runs;
            for &t in &unique {
                add(t, runs);
            }
        }
    }
    Ok(Plan { trains, tests })
}

/// Every JSON file under `dir`, sorted.
pub fn json_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// The wall seconds a result file records (a run found already trained records 0).
fn seconds(path: &std::path::Path) -> Result<Option<f64>> {
    let v = read_json(path)?;
    Ok(v.get("seconds")
        .and_then(Value::as_f64)
        .filter(|s| *s > 0.0))
}

/// The report's line on what is left: units by kind, and the hours they take at the
/// median wall time of each kind measured so far.
pub fn remaining_line(p: &Preset, layout: &Layout) -> Result<String> {
    let plan = plan(p, layout)?;
    let trained = json_files(&layout.results().join("train"));
    let mut tested: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for f in json_files(&layout.results().join("eval")) {
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned());
        if let Some(&(t, _)) = plan
            .tests
            .iter()
            .find(|(t, _)| Some(t.name()) == stem.as_deref())
        {
            tested.entry(t.name()).or_default().push(f);
        }
    }
    let trains_left = plan.trains.saturating_sub(trained.len());
    let mut secs = 0.0;
    let mut untimed: Vec<&str> = Vec::new();
    let mut test_minutes: Vec<f64> = Vec::new();
    let mut tests_left = 0;
    for &(t, n) in &plan.tests {
        let done = tested.get(t.name()).map_or(&[][..], Vec::as_slice);
        let left = n.saturating_sub(done.len());
        tests_left += left;
        let times = done
            .iter()
            .map(|f| seconds(f))
            .collect::<Result<Vec<_>>>()?;
        match median(times.into_iter().flatten().collect()) {
            Some(m) => {
                secs += left as f64 * m;
                test_minutes.push(m / 60.0);
            }
            None if left > 0 => untimed.push(t.name()),
            None => {}
        }
    }
    if trains_left + tests_left == 0 {
        return Ok("- Left: nothing; every unit has its result.\n".into());
    }
    let train_times = trained
        .iter()
        .map(|f| seconds(f))
        .collect::<Result<Vec<_>>>()?;
    let train_median = median(train_times.into_iter().flatten().collect());
    let mut line = format!(
        "- Left: {} units ({trains_left} training runs, {tests_left} tests)",
        trains_left + tests_left
    );
    let mut kinds = Vec::new();
    match train_median {
        Some(m) => {
            secs += trains_left as f64 * m;
            kinds.push(format!("a training run {:.0} min", m / 60.0));
        }
        None if trains_left > 0 => untimed.insert(0, "training runs"),
        None => {}
    }
    if !test_minutes.is_empty() {
        let lo = test_minutes.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = test_minutes.iter().copied().fold(0.0, f64::max);
        let range = if format!("{lo:.0}") == format!("{hi:.0}") {
            format!("{hi:.0}")
        } else {
            format!("{lo:.0}–{hi:.0}")
        };
        kinds.push(format!("a test {range} min by task"));
    }
    if !kinds.is_empty() {
        line.push_str(&format!(
            "; about {:.0} hours on this device at the median wall time of each kind so \
             far ({})",
            secs / 3600.0,
            kinds.join(", ")
        ));
    }
    if !untimed.is_empty() {
        line.push_str(&format!(
            ", not counting {} (none timed yet)",
            untimed.join(", ")
        ));
    }
    line.push_str(".\n");
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn the_smoke_plan_counts_every_unit_once() {
        let p = Preset::named("smoke").unwrap();
        let dir = std::env::temp_dir().join(format!("boha-plan-{}", std::process::id()));
        let layout = Layout { out: dir };
        let plan = plan(&p, &layout).unwrap();
        // 5 methods × (2 rates + 1 more seed) × 2 suites, + continual 5 × (2 seeds + 1
        // more rate).
        assert_eq!(plan.trains, 5 * 3 * 2 + 5 * 3);
        let of = |t: Benchmark| plan.tests.iter().find(|(u, _)| *u == t).unwrap().1;
        // Base once, 5 methods × 2 seeds in its suite, 5 × 3 continual runs.
        assert_eq!(of(Benchmark::BoolQ), 1 + 5 * 2 + 5 * 3);
        assert_eq!(of(Benchmark::Gsm8k), 1 + 5 * 2 + 5 * 3);
        assert_eq!(plan.tests.len(), 9);
        assert_eq!(plan.total(), 1 + 45 + 9 * 26);
    }
}
