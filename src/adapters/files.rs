//! Adapter files: `DIR/adapter_config.json` and `DIR/adapter_model.safetensors`.
//!
//! **LoRA and HiRA** are written in PEFT's own format, so `PeftModel.from_pretrained`
//! loads them: `peft_type` "LORA" / "HIRA", `r`, `lora_alpha` (LoRA), `target_modules`
//! (Hugging Face module names), `base_model_name_or_path`, `task_type` "CAUSAL_LM" and
//! the other fields of PEFT's `LoraConfig` / `HiraConfig` at their defaults. Tensors:
//!
//! ```text
//! base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_A.weight   [r, in]
//! base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_B.weight    [out, r]
//! ….hira_A  [r, in]      ….hira_B  [out, r]        (HiRA: PEFT ParameterDicts, no ".weight")
//! ```
//!
//! LoRA's scale is s = lora_alpha / r (lora_alpha / √r with `use_rslora`). PEFT's HiRA
//! has no scale (W' = W0 ⊙ (1 + B A)), so a HiRA adapter with s ≠ 1 is saved with s
//! folded into B and loads back with s = 1: the same function, in PEFT's terms.
//!
//! **BoHA and the additive control** use the same scheme with their own type:
//!
//! ```text
//! {"peft_type": "BOHA" | "BOHA_ADDITIVE", "blocks": b, "block_rank": r_b, "r": b·r_b,
//!  "scale": s, "update": "hadamard" | "additive", "target_modules": [...],
//!  "base_model_name_or_path": ..., "task_type": "CAUSAL_LM", "format_version": 1}
//! ….boha_A  [b, b, r_b, in/b]      ….boha_B  [b, b, out/b, r_b]
//! ```
//!
//! with W' = W0 ⊙ (1 + s·M) (BOHA) or W0 + s·M (BOHA_ADDITIVE), M_ij = B_ij A_ij: block
//! (i, j) covers rows i·out/b.. and columns j·in/b.. of the d_out × d_in weight.
//!
//! Tensors are F32 on save; F16 and BF16 are accepted on load. Projections are named
//! as in boha (`q`, `k`, `v`, `o`, `gate`, `up`, `down`); the Hugging Face names
//! (`q_proj`, …) are accepted on save too.
//!
//! Saving is atomic: both files are written into a temporary directory next to DIR.
//! When DIR does not exist the directory is renamed into place; when it does (it may hold
//! a training log), any old `adapter_config.json` is removed first, the tensors moved in,
//! and the config moved in last, so a DIR holding a config always holds its tensors.
//! Nothing is written unless every tensor is finite and has the shape the spec implies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Map, Value};

use super::{AdapterSpec, Method};
use crate::{Error, Result};

/// File names inside an adapter directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// boha's projection names with their Hugging Face module paths, in canonical order.
pub const PROJECTIONS: [(&str, &str); 7] = [
    ("q", "self_attn.q_proj"),
    ("k", "self_attn.k_proj"),
    ("v", "self_attn.v_proj"),
    ("o", "self_attn.o_proj"),
    ("gate", "mlp.gate_proj"),
    ("up", "mlp.up_proj"),
    ("down", "mlp.down_proj"),
];

/// One adapted matrix for [`save_adapter`]: (layer index, projection name, A, B,
/// d_out, d_in), A and B in boha's layout ([b, b, r_b, q] and [b, b, p, r_b]).
pub type LayerFactors<'a> = (usize, &'a str, &'a [f32], &'a [f32], usize, usize);

/// The factors of one adapted matrix, in boha's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterTensors {
    pub layer: usize,
    /// boha's projection name (`q` … `down`).
    pub target: String,
    /// [b, b, r_b, d_in/b]
    pub a: Vec<f32>,
    /// [b, b, d_out/b, r_b]
    pub b: Vec<f32>,
    pub d_out: usize,
    pub d_in: usize,
}

/// An adapter read from a directory.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedAdapter {
    pub spec: AdapterSpec,
    pub base_model: String,
    /// boha's projection names, canonical order.
    pub targets: Vec<String>,
    /// Sorted by layer, then projection in canonical order.
    pub tensors: Vec<AdapterTensors>,
}

/// boha's name of a projection given as `q` or `q_proj`.
pub fn canonical_target(name: &str) -> Result<&'static str> {
    let n = name.strip_suffix("_proj").unwrap_or(name);
    PROJECTIONS
        .iter()
        .find(|(short, _)| *short == n)
        .map(|(short, _)| *short)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unknown projection '{name}' (expected q, k, v, o, gate, up or down)"
            ))
        })
}

fn target_order(short: &str) -> usize {
    PROJECTIONS
        .iter()
        .position(|(s, _)| *s == short)
        .unwrap_or(usize::MAX)
}

fn hf_path(short: &str) -> &'static str {
    PROJECTIONS
        .iter()
        .find(|(s, _)| *s == short)
        .map(|(_, p)| *p)
        .unwrap_or("")
}

fn hf_module(short: &str) -> &'static str {
    hf_path(short).rsplit('.').next().unwrap_or("")
}

fn peft_type(method: Method) -> &'static str {
    match method {
        Method::Lora => "LORA",
        Method::Hira => "HIRA",
        Method::Boha => "BOHA",
        Method::Additive => "BOHA_ADDITIVE",
    }
}

/// Tensor-name suffixes of A and B.
fn suffixes(method: Method) -> (&'static str, &'static str) {
    match method {
        Method::Lora => ("lora_A.weight", "lora_B.weight"),
        Method::Hira => ("hira_A", "hira_B"),
        Method::Boha | Method::Additive => ("boha_A", "boha_B"),
    }
}

fn key(method: Method, layer: usize, short: &str, a: bool) -> String {
    let (sa, sb) = suffixes(method);
    format!(
        "base_model.model.model.layers.{layer}.{}.{}",
        hf_path(short),
        if a { sa } else { sb }
    )
}

/// Shapes of A and B as stored in the file.
fn file_shapes(spec: &AdapterSpec, d_out: usize, d_in: usize) -> (Vec<usize>, Vec<usize>) {
    match spec.method {
        Method::Lora | Method::Hira => (vec![spec.block_rank, d_in], vec![d_out, spec.block_rank]),
        Method::Boha | Method::Additive => {
            (spec.a_shape(d_in).to_vec(), spec.b_shape(d_out).to_vec())
        }
    }
}

fn config_json(spec: &AdapterSpec, base_model: &str, targets: &[&str]) -> Value {
    let modules: Vec<&str> = targets.iter().map(|t| hf_module(t)).collect();
    let r = spec.rank();
    match spec.method {
        Method::Lora => {
            let alpha = spec.scale as f64 * r as f64;
            let alpha = if alpha.fract() == 0.0 && alpha.abs() < 1e15 {
                json!(alpha as i64)
            } else {
                json!(alpha)
            };
            json!({
                "alpha_pattern": {},
                "auto_mapping": null,
                "base_model_name_or_path": base_model,
                "bias": "none",
                "fan_in_fan_out": false,
                "inference_mode": true,
                "init_lora_weights": true,
                "layer_replication": null,
                "layers_pattern": null,
                "layers_to_transform": null,
                "loftq_config": {},
                "lora_alpha": alpha,
                "lora_dropout": 0.0,
                "megatron_config": null,
                "megatron_core": "megatron.core",
                "modules_to_save": null,
                "peft_type": "LORA",
                "r": r,
                "rank_pattern": {},
                "revision": null,
                "target_modules": modules,
                "task_type": "CAUSAL_LM",
                "use_dora": false,
                "use_rslora": false,
            })
        }
        Method::Hira => json!({
            "auto_mapping": null,
            "base_model_name_or_path": base_model,
            "exclude_modules": null,
            "fan_in_fan_out": false,
            "hira_dropout": 0.0,
            "inference_mode": true,
            "init_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "modules_to_save": null,
            "peft_type": "HIRA",
            "r": r,
            "rank_pattern": {},
            "revision": null,
            "target_modules": modules,
            "task_type": "CAUSAL_LM",
        }),
        Method::Boha | Method::Additive => json!({
            "base_model_name_or_path": base_model,
            "block_rank": spec.block_rank,
            "blocks": spec.blocks,
            "format_version": 1,
            "inference_mode": true,
            "peft_type": peft_type(spec.method),
            "r": r,
            "scale": spec.scale,
            "target_modules": modules,
            "task_type": "CAUSAL_LM",
            "update": if spec.method == Method::Boha { "hadamard" } else { "additive" },
        }),
    }
}

/// Writes the adapter `spec` with the factors `layers` to `dir` (see the module docs).
pub fn save_adapter(
    dir: &Path,
    spec: &AdapterSpec,
    base_model: &str,
    layers: &[LayerFactors<'_>],
) -> Result<()> {
    let bad = |m: String| Error::Invalid(format!("cannot save adapter to {}: {m}", dir.display()));
    if matches!(spec.method, Method::Lora | Method::Hira) && spec.blocks != 1 {
        return Err(bad(format!(
            "{} has no block grid (blocks = {})",
            spec.method.name(),
            spec.blocks
        )));
    }
    if spec.blocks == 0 || spec.block_rank == 0 || !spec.scale.is_finite() {
        return Err(bad(format!(
            "invalid spec (blocks {}, block rank {}, scale {})",
            spec.blocks, spec.block_rank, spec.scale
        )));
    }
    if layers.is_empty() {
        return Err(bad("no adapted layers".into()));
    }
    // Validate everything before touching the file system.
    let mut per_layer: BTreeMap<usize, BTreeSet<&'static str>> = BTreeMap::new();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for &(layer, name, a, b, d_out, d_in) in layers {
        let short = canonical_target(name)?;
        let what = format!("layers.{layer}.{short}");
        if !per_layer.entry(layer).or_default().insert(short) {
            return Err(bad(format!("{what} is given twice")));
        }
        spec.check_shape(&what, d_out, d_in)?;
        let (sa, sb) = file_shapes(spec, d_out, d_in);
        let (na, nb) = (sa.iter().product::<usize>(), sb.iter().product::<usize>());
        if a.len() != na || b.len() != nb {
            return Err(bad(format!(
                "{what}: A has {} values and B {}, expected {na} ({sa:?}) and {nb} ({sb:?}) for a \
                 {d_out}×{d_in} matrix",
                a.len(),
                b.len()
            )));
        }
        if let Some(i) = a.iter().chain(b).position(|v| !v.is_finite()) {
            return Err(bad(format!("{what}: non-finite value at index {i} of A‖B")));
        }
        // PEFT's HiRA has no scale: fold it into B.
        let fold = if spec.method == Method::Hira {
            spec.scale
        } else {
            1.0
        };
        let b_bytes: Vec<u8> = b.iter().flat_map(|v| (v * fold).to_le_bytes()).collect();
        let a_bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((key(spec.method, layer, short, true), sa, a_bytes));
        tensors.push((key(spec.method, layer, short, false), sb, b_bytes));
    }
    let targets: BTreeSet<&'static str> = per_layer.values().flatten().copied().collect();
    for (layer, set) in &per_layer {
        if set.len() != targets.len() {
            let missing: Vec<&str> = targets.difference(set).copied().collect();
            return Err(bad(format!("layer {layer} lacks {}", missing.join(", "))));
        }
    }
    let mut targets: Vec<&str> = targets.into_iter().collect();
    targets.sort_by_key(|t| target_order(t));
    let mut saved_spec = *spec;
    if spec.method == Method::Hira {
        saved_spec.scale = 1.0;
    }
    let config = serde_json::to_string_pretty(&config_json(&saved_spec, base_model, &targets))
        .map_err(|e| bad(e.to_string()))?;
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| bad(format!("{k}: {e}")))
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights =
        safetensors::tensor::serialize(views, Some(meta)).map_err(|e| bad(e.to_string()))?;
    write_dir_atomic(dir, &weights, config.as_bytes())
}

fn temp_sibling(dir: &Path) -> Result<PathBuf> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = dir
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a directory path", dir.display())))?;
    Ok(dir.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )))
}

fn write_dir_atomic(dir: &Path, weights: &[u8], config: &[u8]) -> Result<()> {
    let tmp = temp_sibling(dir)?;
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        write_synced(&tmp.join(WEIGHTS_FILE), weights)?;
        write_synced(&tmp.join(CONFIG_FILE), config)?;
        if !dir.exists() {
            return std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e));
        }
        let cfg = dir.join(CONFIG_FILE);
        match std::fs::remove_file(&cfg) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&cfg, e)),
        }
        let w = dir.join(WEIGHTS_FILE);
        std::fs::rename(tmp.join(WEIGHTS_FILE), &w).map_err(|e| Error::io(&w, e))?;
        std::fs::rename(tmp.join(CONFIG_FILE), &cfg).map_err(|e| Error::io(&cfg, e))?;
        std::fs::remove_dir(&tmp).map_err(|e| Error::io(&tmp, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn bad_file(path: &Path, message: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        message: crate::loaders::escape_controls(&message.into()),
    }
}

/// The largest grid size or rank an adapter file may claim (far above any real one;
/// it keeps products of sizes from overflowing).
const MAX_SIZE: u64 = 1 << 20;

fn get_usize(cfg: &Map<String, Value>, path: &Path, name: &str) -> Result<usize> {
    cfg.get(name)
        .and_then(Value::as_u64)
        .filter(|&v| v > 0 && v <= MAX_SIZE)
        .map(|v| v as usize)
        .ok_or_else(|| {
            bad_file(
                path,
                format!(
                    "\"{name}\" must be a positive integer up to {MAX_SIZE}, found {}",
                    cfg.get(name)
                        .map_or("nothing".to_string(), |v| v.to_string())
                ),
            )
        })
}

fn get_f64(cfg: &Map<String, Value>, path: &Path, name: &str) -> Result<f64> {
    cfg.get(name)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad_file(path, format!("\"{name}\" must be a finite number")))
}

/// Fails when `name` is set to anything but one of `ok` (PEFT options boha does not
/// implement).
fn require_default(cfg: &Map<String, Value>, path: &Path, name: &str, ok: &[Value]) -> Result<()> {
    match cfg.get(name) {
        None => Ok(()),
        Some(v) if ok.contains(v) => Ok(()),
        Some(v) => Err(bad_file(
            path,
            format!("\"{name}\": {v} is not supported by boha"),
        )),
    }
}

/// A tensor as read: its shape and values.
type Stored = (Vec<usize>, Vec<f32>);

/// Reads and validates the adapter in `dir`.
pub fn load_adapter(dir: &Path) -> Result<LoadedAdapter> {
    let cpath = dir.join(CONFIG_FILE);
    let wpath = dir.join(WEIGHTS_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
    let cfg: Value =
        serde_json::from_str(&text).map_err(|e| bad_file(&cpath, format!("invalid JSON: {e}")))?;
    let cfg = cfg
        .as_object()
        .ok_or_else(|| bad_file(&cpath, "expected a JSON object"))?;
    let ptype = cfg
        .get("peft_type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_file(&cpath, "missing \"peft_type\""))?;
    let empty = json!({});
    let (null, f) = (Value::Null, json!(false));
    let spec = match ptype {
        "LORA" => {
            let r = get_usize(cfg, &cpath, "r")?;
            let alpha = get_f64(cfg, &cpath, "lora_alpha")?;
            let rslora = cfg
                .get("use_rslora")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            require_default(cfg, &cpath, "use_dora", &[f.clone(), null.clone()])?;
            require_default(cfg, &cpath, "fan_in_fan_out", &[f.clone(), null.clone()])?;
            require_default(cfg, &cpath, "bias", &[json!("none"), null.clone()])?;
            require_default(cfg, &cpath, "rank_pattern", &[empty.clone(), null.clone()])?;
            require_default(cfg, &cpath, "alpha_pattern", &[empty.clone(), null.clone()])?;
            let div = if rslora { (r as f64).sqrt() } else { r as f64 };
            AdapterSpec {
                method: Method::Lora,
                blocks: 1,
                block_rank: r,
                scale: (alpha / div) as f32,
            }
        }
        "HIRA" => {
            require_default(cfg, &cpath, "fan_in_fan_out", &[f.clone(), null.clone()])?;
            require_default(cfg, &cpath, "rank_pattern", &[empty.clone(), null.clone()])?;
            AdapterSpec {
                method: Method::Hira,
                blocks: 1,
                block_rank: get_usize(cfg, &cpath, "r")?,
                scale: 1.0,
            }
        }
        "BOHA" | "BOHA_ADDITIVE" => {
            let spec = AdapterSpec {
                method: if ptype == "BOHA" {
                    Method::Boha
                } else {
                    Method::Additive
                },
                blocks: get_usize(cfg, &cpath, "blocks")?,
                block_rank: get_usize(cfg, &cpath, "block_rank")?,
                scale: get_f64(cfg, &cpath, "scale")? as f32,
            };
            if let Some(r) = cfg.get("r").and_then(Value::as_u64) {
                if r as usize != spec.rank() {
                    return Err(bad_file(
                        &cpath,
                        format!("\"r\" {r} is not blocks × block_rank = {}", spec.rank()),
                    ));
                }
            }
            spec
        }
        other => {
            return Err(bad_file(
                &cpath,
                format!(
                "unsupported peft_type \"{other}\" (expected LORA, HIRA, BOHA or BOHA_ADDITIVE)"
            ),
            ))
        }
    };
    if !spec.scale.is_finite() {
        return Err(bad_file(
            &cpath,
            format!("the scale {} is not a finite f32", spec.scale),
        ));
    }
    let base_model = cfg
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let modules = cfg
        .get("target_modules")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_file(&cpath, "\"target_modules\" must be a list of module names"))?;
    let mut targets: Vec<&'static str> = Vec::new();
    for m in modules {
        let name = m
            .as_str()
            .ok_or_else(|| bad_file(&cpath, format!("target_modules: {m} is not a string")))?;
        let short = canonical_target(name).map_err(|e| bad_file(&cpath, e.to_string()))?;
        if !targets.contains(&short) {
            targets.push(short);
        }
    }
    if targets.is_empty() {
        return Err(bad_file(&cpath, "\"target_modules\" is empty"));
    }
    targets.sort_by_key(|t| target_order(t));

    let bytes = std::fs::read(&wpath).map_err(|e| Error::io(&wpath, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad_file(&wpath, e.to_string()))?;
    let (sa, sb) = suffixes(spec.method);
    // (layer, target) → (A, B) views
    let mut found: BTreeMap<(usize, usize), [Option<Stored>; 2]> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let parsed = parse_key(&name, sa, sb).ok_or_else(|| {
            bad_file(
                &wpath,
                format!("unexpected tensor '{name}' for a {ptype} adapter"),
            )
        })?;
        let (layer, short, is_a) = parsed;
        if !targets.contains(&short) {
            return Err(bad_file(
                &wpath,
                format!(
                    "tensor '{name}' is for {}, which target_modules does not list",
                    hf_module(short)
                ),
            ));
        }
        let data =
            crate::loaders::safetensors::to_f32(view.dtype(), view.data()).ok_or_else(|| {
                bad_file(
                    &wpath,
                    format!("'{name}': unsupported dtype {:?}", view.dtype()),
                )
            })?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(bad_file(
                &wpath,
                format!(
                    "tensor '{name}' holds a non-finite value ({}) at element {i} (a damaged file?)",
                    data[i]
                ),
            ));
        }
        let slot =
            &mut found.entry((layer, target_order(short))).or_default()[if is_a { 0 } else { 1 }];
        *slot = Some((view.shape().to_vec(), data));
    }
    if found.is_empty() {
        return Err(bad_file(&wpath, "no adapter tensors"));
    }
    let layers: BTreeSet<usize> = found.keys().map(|k| k.0).collect();
    let mut tensors = Vec::new();
    for &layer in &layers {
        for &t in &targets {
            let ti = target_order(t);
            let entry = found.remove(&(layer, ti)).unwrap_or([None, None]);
            let [a, b] = entry;
            let (a_shape, a) = a.ok_or_else(|| {
                bad_file(
                    &wpath,
                    format!("missing tensor '{}'", key(spec.method, layer, t, true)),
                )
            })?;
            let (b_shape, b) = b.ok_or_else(|| {
                bad_file(
                    &wpath,
                    format!("missing tensor '{}'", key(spec.method, layer, t, false)),
                )
            })?;
            let (d_out, d_in) = infer_dims(&spec, &a_shape, &b_shape).ok_or_else(|| {
                bad_file(
                    &wpath,
                    format!(
                        "layers.{layer}.{t}: shapes A {a_shape:?} and B {b_shape:?} do not fit {} with \
                         blocks {} and rank {} (as {CONFIG_FILE} says)",
                        ptype, spec.blocks, spec.block_rank
                    ),
                )
            })?;
            tensors.push(AdapterTensors {
                layer,
                target: t.to_string(),
                a,
                b,
                d_out,
                d_in,
            });
        }
    }
    Ok(LoadedAdapter {
        spec,
        base_model,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        tensors,
    })
}

/// (layer, target, is A) of a tensor name.
fn parse_key(name: &str, sa: &str, sb: &str) -> Option<(usize, &'static str, bool)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (idx, rest) = rest.split_once('.')?;
    let layer: usize = idx.parse().ok()?;
    for (short, path) in PROJECTIONS {
        if let Some(suffix) = rest.strip_prefix(path).and_then(|r| r.strip_prefix('.')) {
            if suffix == sa {
                return Some((layer, short, true));
            }
            if suffix == sb {
                return Some((layer, short, false));
            }
        }
    }
    None
}

/// (d_out, d_in) when the stored shapes agree with `spec`.
fn infer_dims(spec: &AdapterSpec, a: &[usize], b: &[usize]) -> Option<(usize, usize)> {
    let (g, r) = (spec.blocks, spec.block_rank);
    match spec.method {
        Method::Lora | Method::Hira => match (a, b) {
            ([ra, d_in], [d_out, rb]) if *ra == r && *rb == r && *d_in > 0 && *d_out > 0 => {
                Some((*d_out, *d_in))
            }
            _ => None,
        },
        Method::Boha | Method::Additive => match (a, b) {
            ([g1, g2, ra, q], [h1, h2, p, rb])
                if [*g1, *g2, *h1, *h2] == [g; 4] && *ra == r && *rb == r && *p > 0 && *q > 0 =>
            {
                Some((p * g, q * g))
            }
            _ => None,
        },
    }
}
