//! `boha tune`: it times a tiny model's own GEMM shapes and pair paths, writes a tuning
//! file to the cache that `boha devices` names and that commands read (a broken one is
//! ignored, not fatal), and a device's tuning table really decides the GEMM tile and the
//! pair path.

mod common;
mod model_specs;

use std::path::Path;
use std::process::Command;

use boha::adapters::{pair, AdapterSpec, Method};
use boha::gpu::tuning::{GemmKey, PairKey, Tuning};
use boha::gpu::{GemmTile, GpuOptions};
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};
use serde_json::Value;

fn boha(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_boha"));
    c.env("XDG_CACHE_HOME", cache).env_remove("BOHA_NO_TUNE");
    c
}

fn tuning_files(cache: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache.join("boha").join("tune"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn tune_writes_winners_that_devices_and_commands_use() {
    if common::gpu().is_none() {
        return;
    }
    let (_, spec) = model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == "llama")
        .unwrap();
    let dir = temp_dir("tune-model");
    write_tiny_hf(&dir, &spec);
    let cache = temp_dir("tune-cache");

    let o = boha(&cache)
        .args([
            "tune",
            "--batch",
            "2",
            "--max-len",
            "8",
            "--runs",
            "1",
            "--json",
        ])
        .arg("--model")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tokens"], 16);
    let gemms = v["gemm"].as_array().unwrap();
    // Forward and input-gradient products of every projection shape and the LM head.
    assert!(gemms.len() >= 4, "{v}");
    for c in gemms {
        let ms = c["ms"].as_object().unwrap();
        let winner = c["winner"].as_str().unwrap();
        assert!(GemmTile::parse(winner).is_some(), "{c}");
        let w = ms[winner].as_f64().unwrap();
        assert!(w > 0.0 && w.is_finite(), "{c}");
        // The winner is the fastest of the tiles whose output matched, or the profile's
        // tile within 3% of it.
        let profile = ms[c["default"].as_str().unwrap()].as_f64().unwrap();
        for (_, t) in ms {
            if let Some(t) = t.as_f64().filter(|t| t.is_finite()) {
                assert!(w <= t || (w == profile && w <= 1.03 * t), "{c}");
            }
        }
        // At least the register and shared families ran on every shape.
        assert!(
            ms.contains_key("register") && ms.contains_key("shared64"),
            "{c}"
        );
    }
    // The tiny llama's distinct adapted shapes: q/o, k/v, gate/up and down.
    let pairs = v["pair"].as_array().unwrap();
    assert!(!pairs.is_empty(), "{v}");
    for p in pairs {
        let (f, k) = (
            p["fused_ms"].as_f64().unwrap(),
            p["khatri_rao_ms"].as_f64().unwrap(),
        );
        let want = if f < k { "fused" } else { "khatri-rao" };
        assert_eq!(p["winner"], want, "{p}");
    }

    let files = tuning_files(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = boha::gpu::tuning::read(&files[0]).unwrap();
    assert_eq!(file.gemm.len(), gemms.len());
    assert_eq!(file.pair.len(), pairs.len());
    // Nothing half-written is left beside it.
    assert!(files[0].extension().unwrap() == "json");

    let o = boha(&cache).arg("devices").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("profile:"), "{text}");
    assert!(
        text.contains(&format!("tuned: {}", files[0].display())),
        "{text}"
    );

    // A command reads the file; a broken one is ignored with a warning.
    let run = |cache: &Path| {
        boha(cache)
            .args(["generate", "--prompt", "a b", "--max-new-tokens", "2"])
            .arg("--model")
            .arg(&dir)
            .env("RUST_LOG", "boha=info")
            .output()
            .unwrap()
    };
    let o = run(&cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tuning:"), "{err}");
    std::fs::write(&files[0], "{ not json").unwrap();
    let o = run(&cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a tuning file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn tune_rejects_bad_input_with_one_line() {
    let cache = temp_dir("tune-bad");
    for args in [
        vec!["tune", "--model", "/no/such/model.gguf"],
        vec!["tune", "--model", "/tmp", "--batch", "0"],
    ] {
        let o = boha(&cache).args(&args).output().unwrap();
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    assert!(tuning_files(&cache).is_empty());
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn the_tuning_table_decides_tiles_and_pair_paths() {
    let Some(mut gpu) = common::gpu_with(&GpuOptions {
        untuned: true,
        ..Default::default()
    }) else {
        return;
    };
    let profile_tile = gpu.profile().gemm_tile;
    let key = GemmKey::new(100, 48, 40, false, true, 1);
    assert_eq!(gpu.gemm_tile_for(&key), profile_tile);
    let other = GemmTile::candidates()
        .into_iter()
        .find(|&t| t != profile_tile && gpu.tile_fits(t))
        .unwrap();
    let spec = AdapterSpec {
        method: Method::Abba,
        blocks: 1,
        block_rank: 8,
        scale: 1.0,
    };
    let rule = pair::runs_fused_by_rule(&gpu, &spec, 64, 48);
    let mut t = Tuning::default();
    t.set_gemm(key, other);
    t.set_pair(PairKey::new(64, 48, 4), !rule);
    gpu.set_tuning(t);
    assert_eq!(gpu.gemm_tile_for(&key), other);
    // Rows are bucketed: 120 tokens share 100's entry, 200 do not.
    assert_eq!(
        gpu.gemm_tile_for(&GemmKey::new(120, 48, 40, false, true, 1)),
        other
    );
    assert_eq!(
        gpu.gemm_tile_for(&GemmKey::new(200, 48, 40, false, true, 1)),
        profile_tile
    );
    assert_eq!(pair::runs_fused(&gpu, &spec, 64, 48), !rule);
    assert_eq!(
        pair::runs_fused(&gpu, &spec, 48, 64),
        pair::runs_fused_by_rule(&gpu, &spec, 48, 64)
    );

    // Shape logging records what the ops plan.
    gpu.log_gemm_shapes(true);
    let x = gpu.upload(&[5, 7], &[0.5; 35]).unwrap();
    let w = gpu.upload(&[3, 7], &[0.25; 21]).unwrap();
    let y = gpu.zeros(&[5, 3]).unwrap();
    boha::ops::gemm::matmul_nt(&gpu, &x, &w, &y, 0.0).unwrap();
    assert_eq!(
        gpu.log_gemm_shapes(false),
        vec![GemmKey::new(5, 3, 7, false, true, 1)]
    );
    assert!(gpu.log_gemm_shapes(false).is_empty());
}
