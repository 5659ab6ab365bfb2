//! The adapter file formats ([`AdapterFormat`]); [`super::files`] does what they share
//! (names, validation, atomic writing).
//!
//! - [`Lora`]: PEFT's "LORA", `lora_A.weight` [r, in], `lora_B.weight` [out, r],
//!   s = lora_alpha / r (`use_rslora` files load with s = lora_alpha / √r).
//! - [`Hira`]: PEFT's "HIRA", `hira_A` [r, in], `hira_B` [out, r]. PEFT's HiRA has no
//!   scale (W' = W0 ⊙ (1 + BA)), so s is folded into B on save and loads back as s = 1.
//! - [`Gralora`] (the additive control): PEFT's GraLoRA with `hybrid_r` = 0 and
//!   `gralora_k` = b, whose block (j, n) (output block j, input block n) is
//!   ΔW_jn[o, i] = alpha/r · Σ_k gralora_B[j, n·r_b + k, o] · gralora_A[n, i, j·r_b + k]
//!   with `gralora_A` [b, in/b, r] and `gralora_B` [b, r, out/b], r = b·r_b: boha's
//!   A[j, n, k, i] and B[j, n, o, k] rearranged, and alpha = s·r. Files written by
//!   earlier versions ("BOHA_ADDITIVE", boha's layout) still load.
//! - [`Loha`] (LoHa and ABBA): PEFT's "LOHA", r = h (the rank of each pair), scale
//!   alpha / r; `hada_w1_a` = B1 [out, h], `hada_w1_b` = A1 [h, in], `hada_w2_a` = B2
//!   [out, h], `hada_w2_b` = A2 [h, in]. ABBA's files load back as LoHa (the same
//!   function).
//! - [`Boha`]: boha's own "BOHA" (PEFT has no BoHA): `boha_A` [b, b, r_b, in/b],
//!   `boha_B` [b, b, out/b, r_b], with `blocks`, `block_rank`, `r`, `scale`, `update` and
//!   `format_version` in the config.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::files::{bad_file, get_f64, get_usize, number_json, require_default};
use super::kind::{AdapterFormat, FileTensor, Method, ReadMatrix, Stored};
use super::AdapterSpec;
use crate::error::Result;

pub struct Lora;
pub struct Hira;
pub struct Gralora;
pub struct Loha;
pub struct Boha;

/// Adds `fields` to `common`.
fn with(mut common: Map<String, Value>, fields: Vec<(&str, Value)>) -> Value {
    for (k, v) in fields {
        common.insert(k.into(), v);
    }
    Value::Object(common)
}

/// (A [r, d_in], B [d_out, r]) of a b = 1 file, or None.
fn plain(rank: usize, parts: Vec<Stored>) -> Option<ReadMatrix> {
    let [(a_shape, a), (b_shape, b)]: [Stored; 2] = parts.try_into().ok()?;
    match (&a_shape[..], &b_shape[..]) {
        ([ra, d_in], [d_out, rb]) if *ra == rank && *rb == rank && *d_in > 0 && *d_out > 0 => {
            Some((*d_out, *d_in, a, b))
        }
        _ => None,
    }
}

impl AdapterFormat for Lora {
    fn peft_types(&self) -> &'static [&'static str] {
        &["LORA"]
    }
    fn suffixes(&self, _peft_type: &str) -> &'static [&'static str] {
        &["lora_A.weight", "lora_B.weight"]
    }
    fn config(&self, spec: &AdapterSpec, common: Map<String, Value>) -> Value {
        let r = spec.rank();
        with(
            common,
            vec![
                ("alpha_pattern", json!({})),
                ("auto_mapping", Value::Null),
                ("bias", json!("none")),
                ("fan_in_fan_out", json!(false)),
                ("init_lora_weights", json!(true)),
                ("layer_replication", Value::Null),
                ("layers_pattern", Value::Null),
                ("layers_to_transform", Value::Null),
                ("loftq_config", json!({})),
                ("lora_alpha", number_json(spec.scale as f64 * r as f64)),
                ("lora_dropout", json!(0.0)),
                ("megatron_config", Value::Null),
                ("megatron_core", json!("megatron.core")),
                ("modules_to_save", Value::Null),
                ("peft_type", json!("LORA")),
                ("r", json!(r)),
                ("rank_pattern", json!({})),
                ("revision", Value::Null),
                ("use_dora", json!(false)),
                ("use_rslora", json!(false)),
            ],
        )
    }
    fn spec_from_config(&self, cfg: &Map<String, Value>, path: &Path) -> Result<AdapterSpec> {
        let r = get_usize(cfg, path, "r")?;
        let alpha = get_f64(cfg, path, "lora_alpha")?;
        let rslora = cfg
            .get("use_rslora")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (null, f, empty) = (Value::Null, json!(false), json!({}));
        require_default(cfg, path, "use_dora", &[f.clone(), null.clone()])?;
        require_default(cfg, path, "fan_in_fan_out", &[f, null.clone()])?;
        require_default(cfg, path, "bias", &[json!("none"), null.clone()])?;
        require_default(cfg, path, "rank_pattern", &[empty.clone(), null.clone()])?;
        require_default(cfg, path, "alpha_pattern", &[empty, null])?;
        let div = if rslora { (r as f64).sqrt() } else { r as f64 };
        Ok(AdapterSpec {
            method: Method::Lora,
            blocks: 1,
            block_rank: r,
            scale: (alpha / div) as f32,
        })
    }
    fn to_file(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f32],
        b: &[f32],
    ) -> Vec<FileTensor> {
        let r = spec.block_rank;
        vec![
            ("lora_A.weight", vec![r, d_in], a.to_vec()),
            ("lora_B.weight", vec![d_out, r], b.to_vec()),
        ]
    }
    fn read_file(&self, spec: &AdapterSpec, parts: Vec<Stored>) -> Option<ReadMatrix> {
        plain(spec.block_rank, parts)
    }
}

impl AdapterFormat for Hira {
    fn peft_types(&self) -> &'static [&'static str] {
        &["HIRA"]
    }
    fn suffixes(&self, _peft_type: &str) -> &'static [&'static str] {
        &["hira_A", "hira_B"]
    }
    fn config(&self, spec: &AdapterSpec, common: Map<String, Value>) -> Value {
        with(
            common,
            vec![
                ("auto_mapping", Value::Null),
                ("exclude_modules", Value::Null),
                ("fan_in_fan_out", json!(false)),
                ("hira_dropout", json!(0.0)),
                ("init_weights", json!(true)),
                ("layers_pattern", Value::Null),
                ("layers_to_transform", Value::Null),
                ("modules_to_save", Value::Null),
                ("peft_type", json!("HIRA")),
                ("r", json!(spec.rank())),
                ("rank_pattern", json!({})),
                ("revision", Value::Null),
            ],
        )
    }
    fn spec_from_config(&self, cfg: &Map<String, Value>, path: &Path) -> Result<AdapterSpec> {
        let (null, f) = (Value::Null, json!(false));
        require_default(cfg, path, "fan_in_fan_out", &[f, null.clone()])?;
        require_default(cfg, path, "rank_pattern", &[json!({}), null])?;
        Ok(AdapterSpec {
            method: Method::Hira,
            blocks: 1,
            block_rank: get_usize(cfg, path, "r")?,
            scale: 1.0,
        })
    }
    fn to_file(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f32],
        b: &[f32],
    ) -> Vec<FileTensor> {
        let r = spec.block_rank;
        // PEFT's HiRA has no scale: fold it into B.
        let b = b.iter().map(|v| v * spec.scale).collect();
        vec![
            ("hira_A", vec![r, d_in], a.to_vec()),
            ("hira_B", vec![d_out, r], b),
        ]
    }
    fn read_file(&self, spec: &AdapterSpec, parts: Vec<Stored>) -> Option<ReadMatrix> {
        plain(spec.block_rank, parts)
    }
}

/// A "BOHA" or "BOHA_ADDITIVE" config's spec.
fn boha_spec(method: Method, cfg: &Map<String, Value>, path: &Path) -> Result<AdapterSpec> {
    let spec = AdapterSpec {
        method,
        blocks: get_usize(cfg, path, "blocks")?,
        block_rank: get_usize(cfg, path, "block_rank")?,
        scale: get_f64(cfg, path, "scale")? as f32,
    };
    if let Some(r) = cfg.get("r").and_then(Value::as_u64) {
        if r as usize != spec.rank() {
            return Err(bad_file(
                path,
                format!("\"r\" {r} is not blocks × block_rank = {}", spec.rank()),
            ));
        }
    }
    Ok(spec)
}

/// One matrix in boha's own layout (A [b, b, r_b, q], B [b, b, p, r_b]).
fn boha_layout(spec: &AdapterSpec, parts: Vec<Stored>) -> Option<ReadMatrix> {
    let (g, r) = (spec.blocks, spec.block_rank);
    let [(a_shape, a), (b_shape, b)]: [Stored; 2] = parts.try_into().ok()?;
    match (&a_shape[..], &b_shape[..]) {
        ([g1, g2, ra, q], [h1, h2, p, rb])
            if [*g1, *g2, *h1, *h2] == [g; 4] && *ra == r && *rb == r && *p > 0 && *q > 0 =>
        {
            Some((p * g, q * g, a, b))
        }
        _ => None,
    }
}

impl AdapterFormat for Boha {
    fn peft_types(&self) -> &'static [&'static str] {
        &["BOHA"]
    }
    fn suffixes(&self, _peft_type: &str) -> &'static [&'static str] {
        &["boha_A", "boha_B"]
    }
    fn config(&self, spec: &AdapterSpec, common: Map<String, Value>) -> Value {
        with(
            common,
            vec![
                ("block_rank", json!(spec.block_rank)),
                ("blocks", json!(spec.blocks)),
                ("format_version", json!(1)),
                ("peft_type", json!("BOHA")),
                ("r", json!(spec.rank())),
                ("scale", json!(spec.scale)),
                ("update", json!("hadamard")),
            ],
        )
    }
    fn spec_from_config(&self, cfg: &Map<String, Value>, path: &Path) -> Result<AdapterSpec> {
        boha_spec(Method::Boha, cfg, path)
    }
    fn to_file(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f32],
        b: &[f32],
    ) -> Vec<FileTensor> {
        vec![
            ("boha_A", spec.a_shape(d_in).to_vec(), a.to_vec()),
            ("boha_B", spec.b_shape(d_out).to_vec(), b.to_vec()),
        ]
    }
    fn read_file(&self, spec: &AdapterSpec, parts: Vec<Stored>) -> Option<ReadMatrix> {
        boha_layout(spec, parts)
    }
}

impl AdapterFormat for Gralora {
    fn peft_types(&self) -> &'static [&'static str] {
        &["GRALORA", "BOHA_ADDITIVE"]
    }
    fn suffixes(&self, peft_type: &str) -> &'static [&'static str] {
        if peft_type == "BOHA_ADDITIVE" {
            &["boha_A", "boha_B"]
        } else {
            &["gralora_A", "gralora_B"]
        }
    }
    fn config(&self, spec: &AdapterSpec, common: Map<String, Value>) -> Value {
        let r = spec.rank();
        with(
            common,
            vec![
                ("alpha", number_json(spec.scale as f64 * r as f64)),
                ("bias", json!("none")),
                ("fan_in_fan_out", json!(false)),
                ("gralora_dropout", json!(0.0)),
                ("gralora_k", json!(spec.blocks)),
                ("hybrid_r", json!(0)),
                ("init_weights", json!(true)),
                ("layers_pattern", Value::Null),
                ("layers_to_transform", Value::Null),
                ("modules_to_save", Value::Null),
                ("peft_type", json!("GRALORA")),
                ("r", json!(r)),
                ("revision", Value::Null),
            ],
        )
    }
    fn spec_from_config(&self, cfg: &Map<String, Value>, path: &Path) -> Result<AdapterSpec> {
        if cfg.get("peft_type").and_then(Value::as_str) == Some("BOHA_ADDITIVE") {
            return boha_spec(Method::Additive, cfg, path);
        }
        let null = Value::Null;
        require_default(cfg, path, "hybrid_r", &[json!(0), null.clone()])?;
        require_default(cfg, path, "fan_in_fan_out", &[json!(false), null.clone()])?;
        require_default(cfg, path, "bias", &[json!("none"), null])?;
        let r = get_usize(cfg, path, "r")?;
        let k = get_usize(cfg, path, "gralora_k")?;
        if !r.is_multiple_of(k) {
            return Err(bad_file(
                path,
                format!("\"r\" {r} is not a multiple of \"gralora_k\" {k}"),
            ));
        }
        let alpha = get_f64(cfg, path, "alpha")?;
        Ok(AdapterSpec {
            method: Method::Additive,
            blocks: k,
            block_rank: r / k,
            scale: (alpha / r as f64) as f32,
        })
    }
    fn to_file(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f32],
        b: &[f32],
    ) -> Vec<FileTensor> {
        let (g, rb) = (spec.blocks, spec.block_rank);
        let (p, q, r) = (d_out / g, d_in / g, g * rb);
        // gralora_A[n, i, j·r_b + k] = A[j, n, k, i]; gralora_B[j, n·r_b + k, o] = B[j, n, o, k]
        let mut ga = vec![0.0; g * q * r];
        let mut gb = vec![0.0; g * r * p];
        for j in 0..g {
            for n in 0..g {
                let blk = j * g + n;
                for k in 0..rb {
                    for i in 0..q {
                        ga[(n * q + i) * r + j * rb + k] = a[(blk * rb + k) * q + i];
                    }
                    for o in 0..p {
                        gb[(j * r + n * rb + k) * p + o] = b[(blk * p + o) * rb + k];
                    }
                }
            }
        }
        vec![
            ("gralora_A", vec![g, q, r], ga),
            ("gralora_B", vec![g, r, p], gb),
        ]
    }
    fn read_file(&self, spec: &AdapterSpec, parts: Vec<Stored>) -> Option<ReadMatrix> {
        let (g, rb) = (spec.blocks, spec.block_rank);
        let r = g * rb;
        if parts.iter().any(|(shape, _)| shape.len() == 4) {
            // An earlier version's BOHA_ADDITIVE file: boha's layout.
            return boha_layout(spec, parts);
        }
        let [(ga_shape, ga), (gb_shape, gb)]: [Stored; 2] = parts.try_into().ok()?;
        let (q, p) = match (&ga_shape[..], &gb_shape[..]) {
            ([g1, q, r1], [g2, r2, p])
                if *g1 == g && *g2 == g && *r1 == r && *r2 == r && *q > 0 && *p > 0 =>
            {
                (*q, *p)
            }
            _ => return None,
        };
        let mut a = vec![0.0; g * g * rb * q];
        let mut b = vec![0.0; g * g * p * rb];
        for j in 0..g {
            for n in 0..g {
                let blk = j * g + n;
                for k in 0..rb {
                    for i in 0..q {
                        a[(blk * rb + k) * q + i] = ga[(n * q + i) * r + j * rb + k];
                    }
                    for o in 0..p {
                        b[(blk * p + o) * rb + k] = gb[(j * r + n * rb + k) * p + o];
                    }
                }
            }
        }
        Some((p * g, q * g, a, b))
    }
}

/// Columns `c0..c0 + h` of the rows of a [rows, 2h] matrix.
fn columns(m: &[f32], rows: usize, h: usize, c0: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|o| m[o * 2 * h + c0..][..h].iter().copied())
        .collect()
}

impl AdapterFormat for Loha {
    fn peft_types(&self) -> &'static [&'static str] {
        &["LOHA"]
    }
    fn suffixes(&self, _peft_type: &str) -> &'static [&'static str] {
        &["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"]
    }
    /// alpha = s·h (PEFT's scale is alpha / r with r = h).
    fn config(&self, spec: &AdapterSpec, common: Map<String, Value>) -> Value {
        let h = spec.block_rank / 2;
        with(
            common,
            vec![
                ("alpha", number_json(spec.scale as f64 * h as f64)),
                ("alpha_pattern", json!({})),
                ("exclude_modules", Value::Null),
                ("init_weights", json!(true)),
                ("layers_pattern", Value::Null),
                ("layers_to_transform", Value::Null),
                ("module_dropout", json!(0.0)),
                ("modules_to_save", Value::Null),
                ("peft_type", json!("LOHA")),
                ("r", json!(h)),
                ("rank_dropout", json!(0.0)),
                ("rank_pattern", json!({})),
                ("revision", Value::Null),
                ("use_effective_conv2d", json!(false)),
            ],
        )
    }
    fn spec_from_config(&self, cfg: &Map<String, Value>, path: &Path) -> Result<AdapterSpec> {
        let (null, empty) = (Value::Null, json!({}));
        require_default(cfg, path, "rank_pattern", &[empty.clone(), null.clone()])?;
        require_default(cfg, path, "alpha_pattern", &[empty, null.clone()])?;
        require_default(
            cfg,
            path,
            "rank_dropout",
            &[json!(0.0), json!(0), null.clone()],
        )?;
        require_default(cfg, path, "module_dropout", &[json!(0.0), json!(0), null])?;
        let h = get_usize(cfg, path, "r")?;
        let alpha = get_f64(cfg, path, "alpha")?;
        Ok(AdapterSpec {
            method: Method::Loha,
            blocks: 1,
            block_rank: 2 * h,
            scale: (alpha / h as f64) as f32,
        })
    }
    fn to_file(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f32],
        b: &[f32],
    ) -> Vec<FileTensor> {
        let h = spec.block_rank / 2;
        vec![
            ("hada_w1_a", vec![d_out, h], columns(b, d_out, h, 0)),
            ("hada_w1_b", vec![h, d_in], a[..h * d_in].to_vec()),
            ("hada_w2_a", vec![d_out, h], columns(b, d_out, h, h)),
            ("hada_w2_b", vec![h, d_in], a[h * d_in..].to_vec()),
        ]
    }
    fn read_file(&self, spec: &AdapterSpec, parts: Vec<Stored>) -> Option<ReadMatrix> {
        let h = spec.block_rank / 2;
        let [(s1a, b1), (s1b, a1), (s2a, b2), (s2b, a2)]: [Stored; 4] = parts.try_into().ok()?;
        let (d_out, d_in) = match (&s1a[..], &s1b[..]) {
            ([o, r1], [r2, i]) if *r1 == h && *r2 == h && *o > 0 && *i > 0 => (*o, *i),
            _ => return None,
        };
        if s2a != s1a || s2b != s1b {
            return None;
        }
        let mut b = Vec::with_capacity(d_out * 2 * h);
        for o in 0..d_out {
            b.extend_from_slice(&b1[o * h..][..h]);
            b.extend_from_slice(&b2[o * h..][..h]);
        }
        let mut a = a1;
        a.extend_from_slice(&a2);
        Some((d_out, d_in, a, b))
    }
}
