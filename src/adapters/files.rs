//! Adapter files: `DIR/adapter_config.json` and `DIR/adapter_model.safetensors`, in
//! PEFT's layout so that `PeftModel.from_pretrained` loads every kind PEFT has:
//!
//! | kind       | `peft_type`  | tensors of one matrix (after the module path)          |
//! |------------|--------------|--------------------------------------------------------|
//! | LoRA       | LORA         | `lora_A.weight` [r, in], `lora_B.weight` [out, r]      |
//! | HiRA       | HIRA         | `hira_A` [r, in], `hira_B` [out, r] (s folded into B)  |
//! | additive   | GRALORA      | `gralora_A` [b, in/b, r], `gralora_B` [b, r, out/b]    |
//! | LoHa, ABBA | LOHA         | `hada_w1_a`, `hada_w1_b`, `hada_w2_a`, `hada_w2_b`     |
//! | BoHA       | BOHA (boha's)| `boha_A` [b, b, r_b, in/b], `boha_B` [b, b, out/b, r_b] |
//!
//! with names `base_model.model.model.layers.{i}.self_attn.q_proj.<suffix>` (and
//! `mlp.gate_proj` …). Each kind's file names its config fields and the rearrangement
//! (`fused_kind`, `lora`, `pair`); this module does what they share: target names,
//! validation, and writing both files atomically. BoHA has no PEFT type; its config is
//! `{"peft_type": "BOHA", "blocks": b, "block_rank": r_b, "r": b·r_b, "scale": s,
//! "update": "hadamard", "format_version": 1, …}`. Additive-control files written as
//! "BOHA_ADDITIVE" (boha's layout) by earlier versions still load.
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

use super::kind::Stored;
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

fn key(suffix: &str, layer: usize, short: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{suffix}",
        hf_path(short)
    )
}

/// A number as JSON: an integer when it is one (PEFT's `alpha` fields are ints).
pub(crate) fn number_json(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// The config fields every kind writes.
fn common_config(base_model: &str, targets: &[&str]) -> Map<String, Value> {
    let modules: Vec<&str> = targets.iter().map(|t| hf_module(t)).collect();
    let mut m = Map::new();
    m.insert("base_model_name_or_path".into(), json!(base_model));
    m.insert("inference_mode".into(), json!(true));
    m.insert("target_modules".into(), json!(modules));
    m.insert("task_type".into(), json!("CAUSAL_LM"));
    m
}

/// Writes the adapter `spec` with the factors `layers` to `dir` (see the module docs).
pub fn save_adapter(
    dir: &Path,
    spec: &AdapterSpec,
    base_model: &str,
    layers: &[LayerFactors<'_>],
) -> Result<()> {
    let (weights, config) =
        encode_adapter(&format!("to {}", dir.display()), spec, base_model, layers)?;
    write_dir_atomic(dir, &weights, config.as_bytes())
}

/// The two files [`save_adapter`] writes, in memory: the safetensors bytes of
/// [`WEIGHTS_FILE`] and the JSON text of [`CONFIG_FILE`] (what a web page offers as
/// downloads).
pub fn adapter_files(
    spec: &AdapterSpec,
    base_model: &str,
    layers: &[LayerFactors<'_>],
) -> Result<(Vec<u8>, String)> {
    encode_adapter("", spec, base_model, layers)
}

/// Validates and encodes an adapter; `dest` ends "cannot save adapter" messages.
fn encode_adapter(
    dest: &str,
    spec: &AdapterSpec,
    base_model: &str,
    layers: &[LayerFactors<'_>],
) -> Result<(Vec<u8>, String)> {
    let bad = |m: String| {
        let sep = if dest.is_empty() { "" } else { " " };
        Error::Invalid(format!("cannot save adapter{sep}{dest}: {m}"))
    };
    let kind = spec.method.kind();
    if !kind.has_grid() && spec.blocks != 1 {
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
        let (sa, sb) = (spec.a_shape(d_in), spec.b_shape(d_out));
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
        for (suffix, shape, values) in kind.format().to_file(spec, d_out, d_in, a, b) {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((key(suffix, layer, short), shape, bytes));
        }
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
    let config = kind
        .format()
        .config(spec, common_config(base_model, &targets));
    let config = serde_json::to_string_pretty(&config).map_err(|e| bad(e.to_string()))?;
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
    Ok((weights, config))
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

pub(crate) fn bad_file(path: &Path, message: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        message: crate::loaders::escape_controls(&message.into()),
    }
}

/// The largest grid size or rank an adapter file may claim (far above any real one;
/// it keeps products of sizes from overflowing).
const MAX_SIZE: u64 = 1 << 20;

pub(crate) fn get_usize(cfg: &Map<String, Value>, path: &Path, name: &str) -> Result<usize> {
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

pub(crate) fn get_f64(cfg: &Map<String, Value>, path: &Path, name: &str) -> Result<f64> {
    cfg.get(name)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad_file(path, format!("\"{name}\" must be a finite number")))
}

/// Fails when `name` is set to anything but one of `ok` (PEFT options boha does not
/// implement).
pub(crate) fn require_default(
    cfg: &Map<String, Value>,
    path: &Path,
    name: &str,
    ok: &[Value],
) -> Result<()> {
    match cfg.get(name) {
        None => Ok(()),
        Some(v) if ok.contains(v) => Ok(()),
        Some(v) => Err(bad_file(
            path,
            format!("\"{name}\": {v} is not supported by boha"),
        )),
    }
}

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
    let format = Method::format_for(ptype).ok_or_else(|| {
        let mut known: Vec<&str> = Method::ALL
            .iter()
            .flat_map(|m| m.kind().format().peft_types().iter().copied())
            .collect();
        known.dedup();
        bad_file(
            &cpath,
            format!(
                "unsupported peft_type \"{ptype}\" (expected {})",
                known.join(", ")
            ),
        )
    })?;
    let spec = format.spec_from_config(cfg, &cpath)?;
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
    let suffixes = format.suffixes(ptype);
    // (layer, target) → the stored tensors, one per suffix
    let mut found: BTreeMap<(usize, usize), Vec<Option<Stored>>> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let parsed = parse_key(&name, suffixes).ok_or_else(|| {
            bad_file(
                &wpath,
                format!("unexpected tensor '{name}' for a {ptype} adapter"),
            )
        })?;
        let (layer, short, part) = parsed;
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
        let slots = found
            .entry((layer, target_order(short)))
            .or_insert_with(|| vec![None; suffixes.len()]);
        slots[part] = Some((view.shape().to_vec(), data));
    }
    if found.is_empty() {
        return Err(bad_file(&wpath, "no adapter tensors"));
    }
    let layers: BTreeSet<usize> = found.keys().map(|k| k.0).collect();
    let mut tensors = Vec::new();
    for &layer in &layers {
        for &t in &targets {
            let ti = target_order(t);
            let entry = found
                .remove(&(layer, ti))
                .unwrap_or_else(|| vec![None; suffixes.len()]);
            let mut parts = Vec::with_capacity(suffixes.len());
            for (slot, suffix) in entry.into_iter().zip(suffixes) {
                parts.push(slot.ok_or_else(|| {
                    bad_file(
                        &wpath,
                        format!("missing tensor '{}'", key(suffix, layer, t)),
                    )
                })?);
            }
            let shapes: Vec<Vec<usize>> = parts.iter().map(|p| p.0.clone()).collect();
            let (d_out, d_in, a, b) = format.read_file(&spec, parts).ok_or_else(|| {
                bad_file(
                    &wpath,
                    format!(
                        "layers.{layer}.{t}: shapes {shapes:?} do not fit {ptype} with blocks {} \
                         and rank {} (as {CONFIG_FILE} says)",
                        spec.blocks, spec.block_rank
                    ),
                )
            })?;
            if spec
                .check_shape(&format!("layers.{layer}.{t}"), d_out, d_in)
                .is_err()
            {
                return Err(bad_file(
                    &wpath,
                    format!("layers.{layer}.{t}: {d_out}×{d_in} does not fit the grid"),
                ));
            }
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

/// (layer, target, index of the suffix) of a tensor name.
fn parse_key(name: &str, suffixes: &[&str]) -> Option<(usize, &'static str, usize)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (idx, rest) = rest.split_once('.')?;
    let layer: usize = idx.parse().ok()?;
    for (short, path) in PROJECTIONS {
        if let Some(suffix) = rest.strip_prefix(path).and_then(|r| r.strip_prefix('.')) {
            if let Some(i) = suffixes.iter().position(|s| *s == suffix) {
                return Some((layer, short, i));
            }
        }
    }
    None
}
