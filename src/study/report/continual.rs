//! The report's continual-diagnostic section: retention and plasticity per method over
//! seeds, BoHA against the additive control and LoRA paired over items, and retention at
//! matched plasticity along the first seed's stage-2 runs.

use super::*;

/// Retention and plasticity of one stage-2 run: (commonsense avg after stage 2 − after
/// stage 1, GSM8K after stage 2).
fn stage2_point(c: &Collected, m: Method, lr: f32, seed: u64) -> Result<Option<(f64, f64)>> {
    let cs = commonsense_tasks(c.p);
    let Some(k1) = c.run("commonsense", m, seed) else {
        return Ok(None);
    };
    let k2 = RunKey {
        suite: CONTINUAL.into(),
        method: m,
        lr,
        seed,
    };
    let before = c.seed_means(|_| Some(k1.clone()), &cs)?;
    let after = c.seed_means(|_| Some(k2.clone()), &cs)?;
    let plastic = items(c.layout, Some(&k2), Benchmark::Gsm8k)?;
    Ok(match (before.first(), after.first(), plastic) {
        (Some(b), Some(a), Some(g)) => Some((a - b, acc(&g))),
        _ => None,
    })
}

/// Per item of `task`, the change in correctness from stage 1 (the commonsense run) to
/// stage 2 (the continual run at the method's GSM8K rate), averaged over the seeds that
/// have both (`plasticity`: stage 2's correctness alone); None when no seed has both.
fn stage2_items(
    c: &Collected,
    m: Method,
    task: Benchmark,
    plasticity: bool,
) -> Result<Option<Vec<f64>>> {
    let Some(&lr2) = c.lr.get(&("gsm8k", m.name())) else {
        return Ok(None);
    };
    let mut sum: Option<Vec<f64>> = None;
    let mut n = 0;
    for &seed in &c.p.seeds {
        let Some(k1) = c.run("commonsense", m, seed) else {
            return Ok(None);
        };
        let k2 = RunKey {
            suite: CONTINUAL.into(),
            method: m,
            lr: lr2,
            seed,
        };
        let Some(after) = items(c.layout, Some(&k2), task)? else {
            continue;
        };
        let d = if plasticity {
            after
        } else {
            let Some(before) = items(c.layout, Some(&k1), task)? else {
                continue;
            };
            after.iter().zip(&before).map(|(a, b)| a - b).collect()
        };
        match &mut sum {
            Some(s) if s.len() == d.len() => s.iter_mut().zip(&d).for_each(|(a, b)| *a += b),
            Some(_) => continue,
            None => sum = Some(d),
        }
        n += 1;
    }
    Ok(sum.map(|s| s.iter().map(|v| v / n as f64).collect()))
}

/// BoHA's retention and plasticity against the additive control's and LoRA's: the
/// paired bootstrap over items of the per-item differences (commonsense tasks for
/// retention, GSM8K for plasticity).
fn continual_pairs(c: &Collected, md: &mut String) -> Result<()> {
    md.push_str(
        "Paired over items (each item's stage-2 change, or GSM8K correctness, averaged over \
         seeds, then BoHA's minus the other's, resampled over items per task 2000 times):\n\n\
         | comparison | measure | difference (points) | 95 % interval | verdict |\n\
         |---|---|---|---|---|\n",
    );
    let cs = commonsense_tasks(c.p);
    for other in [Method::Additive, Method::Lora] {
        if !c.p.methods.contains(&other) || !c.p.methods.contains(&Method::Boha) {
            continue;
        }
        for (measure, tasks, plasticity) in [
            ("retention", cs.clone(), false),
            ("plasticity", vec![Benchmark::Gsm8k], true),
        ] {
            let mut diffs = Vec::new();
            for &t in &tasks {
                let b = stage2_items(c, Method::Boha, t, plasticity)?;
                let o = stage2_items(c, other, t, plasticity)?;
                if let (Some(b), Some(o)) = (b, o) {
                    diffs.push(b.iter().zip(&o).map(|(x, y)| x - y).collect::<Vec<f64>>());
                }
            }
            let cells = paired_cells(&diffs, tasks.len(), 21, |lo, hi| {
                let (more, less) = if plasticity {
                    ("learns more", "learns less")
                } else {
                    ("retains more", "forgets more")
                };
                if lo > 0.0 {
                    format!("BoHA {more}")
                } else if hi < 0.0 {
                    format!("**BoHA {less}**")
                } else {
                    "not distinguishable (the interval holds 0)".into()
                }
            });
            md.push_str(&format!(
                "| BoHA − {} | {measure} | {cells} |\n",
                short(other)
            ));
        }
    }
    md.push('\n');
    Ok(())
}

/// Linear interpolation of retention at plasticity `x` along `points` (sorted by
/// plasticity), when `x` lies within them.
fn at_plasticity(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = points.iter().map(|&(r, g)| (g, r)).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in pts.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x0 <= x && x <= x1 {
            return Some(if x1 > x0 {
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            } else {
                y0.max(y1)
            });
        }
    }
    pts.iter().find(|p| p.0 == x).map(|p| p.1)
}

pub(super) fn continual(c: &Collected, md: &mut String) -> Result<()> {
    md.push_str(
        "## Continual diagnostic: commonsense, then GSM8K on the same adapter\n\n\
         Retention is the commonsense average after stage 2 minus after stage 1 (points; \
         0 is no forgetting); plasticity is GSM8K accuracy after stage 2. Stage 2 runs at \
         the method's GSM8K rate; mean ± 95 % interval over seeds.\n\n\
         | method | seeds | retention (points) | plasticity (%) |\n|---|---|---|---|\n",
    );
    let mut curves: Vec<(Method, Vec<(f64, f64)>)> = Vec::new();
    for &m in &c.p.methods {
        let Some(&lr2) = c.lr.get(&("gsm8k", m.name())) else {
            md.push_str(&format!(
                "| {} | 0/{} | – | – |\n",
                label(c.p, m),
                c.p.seeds.len()
            ));
            continue;
        };
        let mut ret = Vec::new();
        let mut pla = Vec::new();
        for &s in &c.p.seeds {
            if let Some((r, g)) = stage2_point(c, m, lr2, s)? {
                ret.push(r);
                pla.push(g);
            }
        }
        md.push_str(&format!(
            "| {} | {}/{} | {} | {} |\n",
            label(c.p, m),
            ret.len(),
            c.p.seeds.len(),
            pct_ci(mean_ci(&ret)),
            pct_ci(mean_ci(&pla))
        ));
        let mut pts = Vec::new();
        for &lr in c.rates_of("gsm8k", m) {
            if let Some(pt) = stage2_point(c, m, lr, c.p.seeds[0])? {
                pts.push(pt);
            }
        }
        curves.push((m, pts));
    }
    md.push('\n');
    continual_pairs(c, md)?;
    // Matched plasticity: the highest GSM8K accuracy every method reaches.
    let reach: Vec<f64> = curves
        .iter()
        .map(|(_, p)| p.iter().map(|x| x.1).fold(f64::NAN, f64::max))
        .collect();
    let complete = curves.len() == c.p.methods.len()
        && curves
            .iter()
            .all(|(m, p)| p.len() == c.rates_of("gsm8k", *m).len() && !p.is_empty());
    md.push_str(
        "### Retention at matched plasticity\n\nWith the first seed, stage 2 also runs at \
         every rate of the method's GSM8K sweep; retention is interpolated linearly along those \
         runs (ordered by plasticity) at the highest plasticity every method reaches.\n\n",
    );
    if !complete {
        md.push_str("Not run yet: it needs every stage-2 rate of every method.\n\n");
        return Ok(());
    }
    let target = reach.iter().copied().fold(f64::INFINITY, f64::min);
    md.push_str(&format!(
        "Matched plasticity: {} % GSM8K.\n\n| method | stage-2 runs (plasticity %, retention points) | retention at the matched plasticity |\n|---|---|---|\n",
        pct(target)
    ));
    for (m, pts) in &curves {
        let shown = pts
            .iter()
            .map(|(r, g)| format!("({}, {:+.1})", pct(*g), 100.0 * r))
            .collect::<Vec<_>>()
            .join(" ");
        let at = at_plasticity(pts, target).map_or("–".into(), |r| format!("{:+.1}", 100.0 * r));
        md.push_str(&format!("| {} | {shown} | {at} |\n", label(c.p, *m)));
    }
    md.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_interpolated_at_a_plasticity() {
        // (retention, plasticity)
        let pts = [(-0.10, 0.20), (-0.02, 0.05), (-0.05, 0.10)];
        assert!((at_plasticity(&pts, 0.15).unwrap() - (-0.075)).abs() < 1e-12);
        assert_eq!(at_plasticity(&pts, 0.05), Some(-0.02));
        assert_eq!(at_plasticity(&pts, 0.30), None);
    }

    #[test]
    fn stage2_items_pair_each_seed_with_its_own_first_stage() {
        let out = std::env::temp_dir().join(format!("boha-report-stage2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let layout = Layout { out: out.clone() };
        let p = Preset::named("smoke").unwrap();
        let m = Method::Boha;
        let mut lr = BTreeMap::new();
        lr.insert(("commonsense", m.name()), 1e-3f32);
        lr.insert(("gsm8k", m.name()), 1e-2f32);
        let c = Collected {
            p: &p,
            layout: &layout,
            lr,
            rates: BTreeMap::new(),
        };
        let write = |suite: &str, lr: f32, seed: u64, task: Benchmark, bits: &str| {
            let k = RunKey {
                suite: suite.into(),
                method: m,
                lr,
                seed,
            };
            let path = layout.eval_result(Some(&k), task);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{{\"correct\": \"{bits}\"}}")).unwrap();
        };
        let t = Benchmark::Piqa;
        assert_eq!(stage2_items(&c, m, t, false).unwrap(), None);
        write("commonsense", 1e-3, 0, t, "1111");
        write(CONTINUAL, 1e-2, 0, t, "1100");
        write("commonsense", 1e-3, 1, t, "0111");
        // Seed 1 has no second stage yet: seed 0 alone.
        let one = stage2_items(&c, m, t, false).unwrap().unwrap();
        assert_eq!(one, [0.0, 0.0, -1.0, -1.0]);
        write(CONTINUAL, 1e-2, 1, t, "1110");
        let both = stage2_items(&c, m, t, false).unwrap().unwrap();
        assert_eq!(both, [0.5, 0.0, -0.5, -1.0]);
        write(CONTINUAL, 1e-2, 0, Benchmark::Gsm8k, "10");
        write(CONTINUAL, 1e-2, 1, Benchmark::Gsm8k, "11");
        let g = stage2_items(&c, m, Benchmark::Gsm8k, true)
            .unwrap()
            .unwrap();
        assert_eq!(g, [1.0, 0.5]);
        let _ = std::fs::remove_dir_all(&out);
    }
}
