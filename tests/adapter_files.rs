//! Adapter directories: adapter_config.json + adapter_model.safetensors, in PEFT's
//! format for LoRA, HiRA, the additive control (GraLoRA), LoHa and ABBA (both LoHa), and
//! in boha's documented format for BoHA.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use boha::adapters::files::{load_adapter, save_adapter, LayerFactors, CONFIG_FILE, WEIGHTS_FILE};
use boha::adapters::{AdapterSpec, Method};
use boha::rng::Rng;
use common::tiny_checkpoint::temp_dir;
use safetensors::SafeTensors;
use serde_json::Value;

/// Owned factors: (layer, projection, A, B, d_out, d_in).
type Owned = (usize, &'static str, Vec<f32>, Vec<f32>, usize, usize);

/// (layer, projection, A, B, d_out, d_in) for 2 layers of a model with hidden 12,
/// kv width 6 and MLP width 18, in boha's layout for `spec`.
fn factors(spec: &AdapterSpec, seed: u64) -> Vec<Owned> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for layer in 0..2 {
        for (name, d_out, d_in) in [("q", 12, 12), ("v", 6, 12), ("down", 12, 18)] {
            let na: usize = spec.a_shape(d_in).iter().product();
            let nb: usize = spec.b_shape(d_out).iter().product();
            out.push((
                layer,
                name,
                rng.vec_f32(na, -1.0, 1.0),
                rng.vec_f32(nb, -1.0, 1.0),
                d_out,
                d_in,
            ));
        }
    }
    out
}

fn as_refs<'a>(f: &'a [Owned]) -> Vec<LayerFactors<'a>> {
    f.iter()
        .map(|(l, n, a, b, o, i)| (*l, *n, a.as_slice(), b.as_slice(), *o, *i))
        .collect()
}

fn spec(method: Method, blocks: usize, r_b: usize, scale: f32) -> AdapterSpec {
    AdapterSpec {
        method,
        blocks,
        block_rank: r_b,
        scale,
    }
}

fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap()
}

fn shapes(dir: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect()
}

#[test]
fn round_trip_for_every_method() {
    let cases = [
        spec(Method::Lora, 1, 3, 16.0 / 3.0),
        spec(Method::Hira, 1, 5, 1.0),
        spec(Method::Boha, 3, 2, 0.75),
        spec(Method::Additive, 3, 1, 2.5),
        spec(Method::Additive, 2, 3, 0.5),
        spec(Method::Loha, 1, 4, 0.75),
    ];
    for (k, s) in cases.iter().enumerate() {
        let dir = temp_dir("adapter-rt").join("out");
        let f = factors(s, 10 + k as u64);
        save_adapter(&dir, s, "HuggingFaceTB/SmolLM2-135M", &as_refs(&f)).unwrap();
        let l = load_adapter(&dir).unwrap();
        assert_eq!(l.spec, *s, "{:?}", s.method);
        assert_eq!(l.base_model, "HuggingFaceTB/SmolLM2-135M");
        assert_eq!(l.targets, ["q", "v", "down"]);
        assert_eq!(l.tensors.len(), f.len());
        for (t, (layer, name, a, b, d_out, d_in)) in l.tensors.iter().zip(&f) {
            assert_eq!(
                (t.layer, t.target.as_str(), t.d_out, t.d_in),
                (*layer, *name, *d_out, *d_in)
            );
            assert_eq!((&t.a, &t.b), (a, b), "{:?} layers.{layer}.{name}", s.method);
        }
    }
}

#[test]
fn lora_uses_peft_names_shapes_and_config() {
    let s = spec(Method::Lora, 1, 4, 2.0);
    let dir = temp_dir("adapter-lora").join("a");
    let f = factors(&s, 3);
    save_adapter(&dir, &s, "base", &as_refs(&f)).unwrap();
    let c = config(&dir);
    assert_eq!(c["peft_type"], "LORA");
    assert_eq!(c["task_type"], "CAUSAL_LM");
    assert_eq!(c["r"], 4);
    assert_eq!(c["lora_alpha"], 8);
    assert_eq!(
        c["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    assert_eq!(c["base_model_name_or_path"], "base");
    assert_eq!(c["bias"], "none");
    assert_eq!(c["use_dora"], false);
    let sh = shapes(&dir);
    assert_eq!(sh.len(), 12);
    assert_eq!(
        sh["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"],
        [4, 12]
    );
    assert_eq!(
        sh["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"],
        [6, 4]
    );
    assert_eq!(
        sh["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"],
        [4, 18]
    );
    assert_eq!(
        sh["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"],
        [12, 4]
    );
    // A [r, in] is the boha A of a 1×1 grid, value for value.
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let v = st
        .tensor("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")
        .unwrap();
    let got: Vec<f32> = v
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, f[5].2);
}

#[test]
fn hira_uses_peft_names_and_folds_its_scale() {
    let s = spec(Method::Hira, 1, 3, 0.5);
    let dir = temp_dir("adapter-hira").join("a");
    let f = factors(&s, 4);
    save_adapter(&dir, &s, "base", &as_refs(&f)).unwrap();
    let c = config(&dir);
    assert_eq!(c["peft_type"], "HIRA");
    assert_eq!(c["r"], 3);
    assert!(c.get("lora_alpha").is_none());
    let sh = shapes(&dir);
    assert_eq!(
        sh["base_model.model.model.layers.0.self_attn.q_proj.hira_A"],
        [3, 12]
    );
    assert_eq!(
        sh["base_model.model.model.layers.0.self_attn.v_proj.hira_B"],
        [6, 3]
    );
    assert_eq!(
        sh["base_model.model.model.layers.1.mlp.down_proj.hira_A"],
        [3, 18]
    );
    let l = load_adapter(&dir).unwrap();
    assert_eq!(l.spec.scale, 1.0);
    for (t, (_, _, a, b, _, _)) in l.tensors.iter().zip(&f) {
        assert_eq!(&t.a, a);
        let want: Vec<f32> = b.iter().map(|v| v * 0.5).collect();
        assert_eq!(t.b, want);
    }
}

#[test]
fn boha_format_names_and_shapes() {
    let s = spec(Method::Boha, 3, 2, 1.25);
    let dir = temp_dir("adapter-boha").join("a");
    save_adapter(&dir, &s, "base", &as_refs(&factors(&s, 5))).unwrap();
    let c = config(&dir);
    assert_eq!(c["peft_type"], "BOHA");
    assert_eq!(
        (
            c["blocks"].as_u64(),
            c["block_rank"].as_u64(),
            c["r"].as_u64()
        ),
        (Some(3), Some(2), Some(6))
    );
    assert_eq!(c["scale"], 1.25);
    let sh = shapes(&dir);
    let key = |rest: &str| format!("base_model.model.model.layers.{rest}");
    assert_eq!(sh[&key("0.self_attn.q_proj.boha_A")], [3, 3, 2, 4]);
    assert_eq!(sh[&key("0.self_attn.v_proj.boha_B")], [3, 3, 2, 2]);
    assert_eq!(sh[&key("1.mlp.down_proj.boha_A")], [3, 3, 2, 6]);
    assert_eq!(sh[&key("1.mlp.down_proj.boha_B")], [3, 3, 4, 2]);

    // An earlier version's additive control: BOHA_ADDITIVE in boha's layout still loads.
    let add = spec(Method::Additive, 3, 2, 1.25);
    let mut c = config(&dir);
    c["peft_type"] = "BOHA_ADDITIVE".into();
    c["update"] = "additive".into();
    std::fs::write(dir.join(CONFIG_FILE), c.to_string()).unwrap();
    let l = load_adapter(&dir).unwrap();
    assert_eq!(l.spec, add);
    for (t, (_, _, a, b, _, _)) in l.tensors.iter().zip(&factors(&s, 5)) {
        assert_eq!((&t.a, &t.b), (a, b));
    }
}

/// The additive control as PEFT's GraLoRA (hybrid_r = 0, gralora_k = b): block (j, n) of
/// ΔW is alpha/r · Σ_k gralora_B[j, n·r_b + k, :]ᵀ ⊗ gralora_A[n, :, j·r_b + k].
#[test]
fn additive_control_is_gralora() {
    let s = spec(Method::Additive, 3, 2, 1.5);
    let dir = temp_dir("adapter-gralora").join("a");
    let f = factors(&s, 6);
    save_adapter(&dir, &s, "base", &as_refs(&f)).unwrap();
    let c = config(&dir);
    assert_eq!(c["peft_type"], "GRALORA");
    assert_eq!(
        (c["r"].as_u64(), c["gralora_k"].as_u64()),
        (Some(6), Some(3))
    );
    assert_eq!(
        (c["hybrid_r"].as_u64(), c["alpha"].as_u64()),
        (Some(0), Some(9))
    );
    let sh = shapes(&dir);
    let key = |rest: &str| format!("base_model.model.model.layers.{rest}");
    assert_eq!(sh[&key("0.self_attn.q_proj.gralora_A")], [3, 4, 6]);
    assert_eq!(sh[&key("0.self_attn.v_proj.gralora_B")], [3, 6, 2]);
    assert_eq!(sh[&key("1.mlp.down_proj.gralora_A")], [3, 6, 6]);
    // ΔW from the stored tensors, as PEFT forms it, equals s·M from boha's factors.
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let get = |k: &str| -> Vec<f32> {
        st.tensor(&key(k))
            .unwrap()
            .data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let (ga, gb) = (
        get("1.mlp.down_proj.gralora_A"),
        get("1.mlp.down_proj.gralora_B"),
    );
    let (_, _, a, b, d_out, d_in) = &f[5];
    let (g, rb, r) = (3, 2, 6);
    let (p, q) = (d_out / g, d_in / g);
    let m = boha::adapters::reference::dense_m(&s, &f64s(a), &f64s(b)).unwrap();
    for j in 0..g {
        for n in 0..g {
            for o in 0..p {
                for i in 0..q {
                    let v: f64 = (0..rb)
                        .map(|k| {
                            gb[(j * r + n * rb + k) * p + o] as f64
                                * ga[(n * q + i) * r + j * rb + k] as f64
                        })
                        .sum::<f64>()
                        * 9.0
                        / 6.0;
                    let want = 1.5 * m[(j * p + o) * d_in + n * q + i];
                    assert!((v - want).abs() < 1e-5, "block ({j}, {n}) [{o}, {i}]");
                }
            }
        }
    }
}

/// LoHa and ABBA as PEFT's LoHa: hada_w1_a = B1, hada_w1_b = A1, hada_w2_a = B2,
/// hada_w2_b = A2, r = h, alpha = s·h; ABBA loads back as LoHa (the same function).
#[test]
fn pair_kinds_are_peft_loha() {
    for m in [Method::Loha, Method::Abba] {
        let s = spec(m, 1, 4, 2.5);
        let dir = temp_dir("adapter-loha").join("a");
        let f = factors(&s, 7);
        save_adapter(&dir, &s, "base", &as_refs(&f)).unwrap();
        let c = config(&dir);
        assert_eq!(c["peft_type"], "LOHA");
        assert_eq!((c["r"].as_u64(), c["alpha"].as_u64()), (Some(2), Some(5)));
        let sh = shapes(&dir);
        let key = |rest: &str| format!("base_model.model.model.layers.{rest}");
        assert_eq!(sh[&key("0.self_attn.v_proj.hada_w1_a")], [6, 2]);
        assert_eq!(sh[&key("0.self_attn.v_proj.hada_w1_b")], [2, 12]);
        assert_eq!(sh[&key("1.mlp.down_proj.hada_w2_a")], [12, 2]);
        assert_eq!(sh[&key("1.mlp.down_proj.hada_w2_b")], [2, 18]);
        let l = load_adapter(&dir).unwrap();
        assert_eq!(l.spec, spec(Method::Loha, 1, 4, 2.5));
        for (t, (_, _, a, b, _, _)) in l.tensors.iter().zip(&f) {
            assert_eq!((&t.a, &t.b), (a, b), "{m:?}");
        }
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_save_leaves_nothing() {
    let s = spec(Method::Boha, 3, 2, 1.0);
    let root = temp_dir("adapter-fail");
    let dir = root.join("out");
    let mut f = factors(&s, 6);
    f[2].3.pop();
    let e = save_adapter(&dir, &s, "base", &as_refs(&f))
        .unwrap_err()
        .to_string();
    assert!(e.contains("layers.0.down"), "{e}");
    let mut f = factors(&s, 6);
    f[4].2[3] = f32::NAN;
    assert!(save_adapter(&dir, &s, "base", &as_refs(&f))
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
    let mut f = factors(&s, 6);
    f.remove(4);
    let e = save_adapter(&dir, &s, "base", &as_refs(&f))
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer 1 lacks v"), "{e}");
    assert!(entries(&root).is_empty());

    // DIR is a file: the write gets as far as the rename and must clean up after itself.
    std::fs::write(&dir, b"not a directory").unwrap();
    assert!(save_adapter(&dir, &s, "base", &as_refs(&factors(&s, 6))).is_err());
    assert_eq!(entries(&root), ["out"]);
    assert_eq!(std::fs::read(&dir).unwrap(), b"not a directory");
}

#[test]
fn saving_into_an_existing_run_directory_keeps_its_other_files() {
    let root = temp_dir("adapter-over");
    let dir = root.join("run");
    let s = spec(Method::Lora, 1, 2, 1.0);
    save_adapter(&dir, &s, "base", &as_refs(&factors(&s, 7))).unwrap();
    std::fs::write(dir.join("metrics.jsonl"), b"{}\n").unwrap();
    let f2 = factors(&s, 8);
    save_adapter(&dir, &s, "base", &as_refs(&f2)).unwrap();
    assert_eq!(entries(&dir), [CONFIG_FILE, WEIGHTS_FILE, "metrics.jsonl"]);
    assert_eq!(load_adapter(&dir).unwrap().tensors[0].a, f2[0].2);
    assert_eq!(entries(&root), ["run"]);
}

#[test]
fn bad_adapters_give_clear_errors() {
    let s = spec(Method::Lora, 1, 2, 1.0);
    let root = temp_dir("adapter-bad");
    let fresh = |tag: &str| {
        let d = root.join(tag);
        save_adapter(&d, &s, "base", &as_refs(&factors(&s, 9))).unwrap();
        d
    };
    let err = |d: &Path| load_adapter(d).unwrap_err().to_string();

    let d = fresh("corrupt");
    std::fs::write(d.join(CONFIG_FILE), b"{\"peft_type\": \"LORA\", \"r\": ").unwrap();
    let e = err(&d);
    assert!(e.contains(CONFIG_FILE) && e.contains("invalid JSON"), "{e}");

    let d = fresh("type");
    let mut c = config(&d);
    c["peft_type"] = "IA3".into();
    std::fs::write(d.join(CONFIG_FILE), c.to_string()).unwrap();
    assert!(err(&d).contains("unsupported peft_type \"IA3\""));

    let d = fresh("dora");
    let mut c = config(&d);
    c["use_dora"] = true.into();
    std::fs::write(d.join(CONFIG_FILE), c.to_string()).unwrap();
    assert!(err(&d).contains("use_dora"));

    let d = fresh("nofile");
    std::fs::remove_file(d.join(WEIGHTS_FILE)).unwrap();
    assert!(err(&d).contains(WEIGHTS_FILE));

    // Rewrite the tensors without one of them, or with one of the wrong shape.
    let rewrite = |d: &Path, drop: &str, reshape: Option<(&str, Vec<usize>)>| {
        let bytes = std::fs::read(d.join(WEIGHTS_FILE)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut kept = Vec::new();
        for (k, v) in st.tensors() {
            if k == drop {
                continue;
            }
            let shape = match &reshape {
                Some((name, sh)) if *name == k => sh.clone(),
                _ => v.shape().to_vec(),
            };
            kept.push((k, shape, v.data().to_vec()));
        }
        let views: Vec<_> = kept
            .iter()
            .map(|(k, sh, b)| {
                (
                    k.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, sh.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        std::fs::write(
            d.join(WEIGHTS_FILE),
            safetensors::tensor::serialize(views, None).unwrap(),
        )
        .unwrap();
    };
    let key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
    let d = fresh("missing");
    rewrite(&d, key, None);
    let e = err(&d);
    assert!(
        e.contains(WEIGHTS_FILE) && e.contains(&format!("missing tensor '{key}'")),
        "{e}"
    );

    let d = fresh("shape");
    rewrite(&d, "", Some((key, vec![3, 4])));
    let e = err(&d);
    assert!(
        e.contains(WEIGHTS_FILE) && e.contains("layers.1.v") && e.contains("[3, 4]"),
        "{e}"
    );

    let d = fresh("rank");
    let mut c = config(&d);
    c["r"] = 3.into();
    std::fs::write(d.join(CONFIG_FILE), c.to_string()).unwrap();
    assert!(err(&d).contains("do not fit LORA"));

    let d = fresh("targets");
    let mut c = config(&d);
    c["target_modules"] = serde_json::json!(["q_proj", "v_proj"]);
    std::fs::write(d.join(CONFIG_FILE), c.to_string()).unwrap();
    assert!(err(&d).contains("target_modules does not list"));
}

/// The files a web page offers for download are the files `save_adapter` writes.
#[test]
fn in_memory_files_equal_the_saved_ones() {
    let s = spec(Method::Boha, 3, 2, 0.75);
    let f = factors(&s, 77);
    let dir = temp_dir("adapter-mem").join("out");
    save_adapter(&dir, &s, "base", &as_refs(&f)).unwrap();
    let (weights, config) = boha::adapters::files::adapter_files(&s, "base", &as_refs(&f)).unwrap();
    assert_eq!(weights, std::fs::read(dir.join(WEIGHTS_FILE)).unwrap());
    assert_eq!(
        config,
        std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()
    );
}
