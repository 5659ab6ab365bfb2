//! Tokenizers and chat templates.
//!
//! - Hugging Face: `tokenizer.json` goes straight to the `tokenizers` crate;
//!   `tokenizer_config.json` gives the chat template and BOS/EOS strings.
//! - GGUF: the metadata is turned into the equivalent `tokenizer.json` and loaded the
//!   same way. `tokenizer.ggml.model` "gpt2" is byte-level BPE (tokens + merges) with a
//!   pre-tokenizer chosen by `tokenizer.ggml.pre` (GPT-2's regex when unknown). "llama"
//!   (SentencePiece) is approximated the way transformers converts a SentencePiece model
//!   to a fast tokenizer: a BPE whose merges are every split of a vocabulary piece into
//!   two pieces, ranked by the merged piece's score, with byte fallback, "▁" for spaces
//!   and a "▁" prepended to the text. This matches SentencePiece on ordinary text; it
//!   can differ where SentencePiece's own normalization (NFKC) would change the input.
//! - Control tokens (`token_type` 3) become special added tokens, so `<|im_start|>`
//!   written in a prompt is one token; user-defined tokens (4) become added tokens.
//! - Chat templates are rendered with minijinja the way transformers renders them
//!   (`trim_blocks`, `lstrip_blocks`, `raise_exception`, common Python string and dict
//!   methods).

use std::path::Path;

use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;

use super::bad_file;
use super::gguf::Metadata;
use crate::{Error, Result};

/// Parses a `tokenizer.json`. The `tokenizers` crate panics on some malformed parts
/// (a decoder that is not valid JSON, for one) instead of failing; such a panic comes back
/// as an error here.
pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Tokenizer, String> {
    crate::panic_guard::catch(|| Tokenizer::from_bytes(bytes))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| super::escape_controls(&e))
}

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// Token ids of `text`, with special tokens recognized but no BOS/EOS added. (Like every
/// call into `tokenizers` here, a panic inside it from a malformed tokenizer.json comes
/// back as an error.)
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    crate::panic_guard::catch(|| tok.encode(text, false).map(|e| e.get_ids().to_vec()))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| {
            Error::Invalid(format!(
                "tokenizer: cannot encode: {}",
                super::escape_controls(&e)
            ))
        })
}

/// Text of `ids`, special tokens kept.
pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    crate::panic_guard::catch(|| tok.decode(ids, false))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| {
            Error::Invalid(format!(
                "tokenizer: cannot decode: {}",
                super::escape_controls(&e)
            ))
        })
}

/// Whether the tokenizer's post-processor puts `bos` in front of an encoding.
pub fn post_processor_adds(tok: &Tokenizer, bos: Option<u32>) -> bool {
    let Some(bos) = bos else { return false };
    let both = crate::panic_guard::catch(|| (tok.encode("a", true), tok.encode("a", false)));
    let Ok(both) = both else { return false };
    match both {
        (Ok(with), Ok(without)) => {
            with.get_ids().first() == Some(&bos) && without.get_ids().first() != Some(&bos)
        }
        _ => false,
    }
}

/// The parts of `tokenizer_config.json` boha uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerConfig {
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub add_bos_token: Option<bool>,
}

impl TokenizerConfig {
    /// Parses a `tokenizer_config.json` object; `path` names the file in errors.
    pub fn from_json(j: &Value, path: &Path) -> Result<TokenizerConfig> {
        // Tokens are written either as strings or as AddedToken objects.
        let token = |k: &str| -> Option<String> {
            match j.get(k)? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        // The template is a string, or a list of named templates ("default" first).
        let chat_template = match j.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => {
                let named = |n: &str| {
                    list.iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
                        .and_then(|t| t.get("template")?.as_str())
                };
                let first = list.first().and_then(|t| t.get("template")?.as_str());
                Some(
                    named("default")
                        .or(first)
                        .ok_or_else(|| bad_file(path, "chat_template list has no template"))?
                        .to_string(),
                )
            }
            Some(v) => {
                return Err(bad_file(
                    path,
                    format!("chat_template is {}, not a string", type_name(v)),
                ))
            }
        };
        Ok(TokenizerConfig {
            chat_template,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            add_bos_token: j.get("add_bos_token").and_then(Value::as_bool),
        })
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A tokenizer rebuilt from GGUF metadata, with what the metadata says around it.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    /// `tokenizer.ggml.add_bos_token` (default: true for SentencePiece, false for BPE).
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

const TOKEN_UNKNOWN: i128 = 2;
const TOKEN_CONTROL: i128 = 3;
const TOKEN_USER_DEFINED: i128 = 4;

/// The pre-tokenizer regex llama.cpp uses for Llama-3-style BPE vocabularies.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: as Llama-3's but digits one at a time.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Builds the tokenizer described by GGUF metadata (see the module docs).
pub fn from_gguf(m: &Metadata) -> Result<GgufTokenizer> {
    let err = |msg: String| bad_file(&m.path, msg);
    let model = m.str("tokenizer.ggml.model")?;
    let tokens = m
        .opt_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| err("metadata tokenizer.ggml.tokens is missing".into()))?;
    let n = tokens.len();
    let types = m
        .opt_int_array("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    if !types.is_empty() && types.len() != n {
        return Err(err(format!(
            "tokenizer.ggml.token_type has {} entries for {n} tokens",
            types.len()
        )));
    }
    let token_type = |i: usize| types.get(i).copied().unwrap_or(1);
    let id_key = |k: &str| -> Result<Option<u32>> {
        match m.opt_u32(k)? {
            Some(id) if id as usize >= n => Err(err(format!(
                "{k} {id} is outside the vocabulary of {n} tokens"
            ))),
            v => Ok(v),
        }
    };
    let bos = id_key("tokenizer.ggml.bos_token_id")?;
    let mut eos = Vec::new();
    for k in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = id_key(k)? {
            super::push_unique(&mut eos, id);
        }
    }
    let add_bos = m
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(model == "llama");

    let mut vocab = Map::new();
    for (i, t) in tokens.iter().enumerate() {
        if !vocab.contains_key(*t) {
            vocab.insert(t.to_string(), json!(i));
        }
    }
    let added: Vec<Value> = (0..n)
        .filter(|&i| matches!(token_type(i), TOKEN_CONTROL | TOKEN_USER_DEFINED) || (model == "llama" && token_type(i) == TOKEN_UNKNOWN))
        .map(|i| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": token_type(i) != TOKEN_USER_DEFINED})
        })
        .collect();

    let mut j = match model {
        "gpt2" => {
            let merges = m.opt_str_array("tokenizer.ggml.merges")?.ok_or_else(|| {
                err("metadata tokenizer.ggml.merges is missing (needed by a gpt2 tokenizer)".into())
            })?;
            let mut pairs = Vec::with_capacity(merges.len());
            let mut dropped = 0;
            for merge in &merges {
                // llama.cpp splits at the first space after the first character.
                let split = merge
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| c == ' ')
                    .map(|(i, _)| i);
                match split {
                    Some(i)
                        if vocab.contains_key(&merge[..i])
                            && vocab.contains_key(&merge[i + 1..])
                            && vocab.contains_key(&format!(
                                "{}{}",
                                &merge[..i],
                                &merge[i + 1..]
                            )) =>
                    {
                        pairs.push(json!([&merge[..i], &merge[i + 1..]]))
                    }
                    _ => dropped += 1,
                }
            }
            if dropped > 0 {
                log::warn!(
                    "{}: ignored {dropped} merges that do not join two vocabulary tokens",
                    m.path.display()
                );
            }
            let pre = m.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
            json!({
                "normalizer": null,
                "pre_tokenizer": byte_level_pre_tokenizer(pre),
                // Llama-3 vocabularies take a whole pre-token found in the vocabulary
                // as is (llama.cpp's and transformers' `ignore_merges`).
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                          "ignore_merges": LLAMA3_PRE.contains(&pre), "vocab": vocab, "merges": pairs},
            })
        }
        "llama" => {
            let scores = m.opt_f64_array("tokenizer.ggml.scores")?.ok_or_else(|| {
                err(
                    "metadata tokenizer.ggml.scores is missing (needed by a llama tokenizer)"
                        .into(),
                )
            })?;
            if scores.len() != n {
                return Err(err(format!(
                    "tokenizer.ggml.scores has {} entries for {n} tokens",
                    scores.len()
                )));
            }
            let unk_id = id_key("tokenizer.ggml.unknown_token_id")?
                .map(|i| i as usize)
                .or_else(|| (0..n).find(|&i| token_type(i) == TOKEN_UNKNOWN));
            let merges = sentencepiece_merges(&tokens, &scores, &vocab, |i| token_type(i) == 1);
            let prefix = m
                .opt_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let mut norm =
                vec![json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"})];
            if prefix {
                norm.insert(0, json!({"type": "Prepend", "prepend": "▁"}));
            }
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if prefix {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            json!({
                "normalizer": {"type": "Sequence", "normalizers": norm},
                "pre_tokenizer": null,
                "decoder": {"type": "Sequence", "decoders": decoders},
                "model": {"type": "BPE", "dropout": null, "unk_token": unk_id.map(|i| tokens[i]),
                          "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                          "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges},
            })
        }
        other => return Err(err(format!("unsupported tokenizer.ggml.model \"{other}\""))),
    };
    let obj = j
        .as_object_mut()
        .ok_or_else(|| err("internal: tokenizer JSON".into()))?;
    obj.insert("version".into(), json!("1.0"));
    obj.insert("truncation".into(), Value::Null);
    obj.insert("padding".into(), Value::Null);
    obj.insert("added_tokens".into(), Value::Array(added));
    obj.insert(
        "post_processor".into(),
        match (add_bos, bos) {
            (true, Some(b)) => bos_template(tokens[b as usize], b),
            _ => Value::Null,
        },
    );
    let tokenizer: Tokenizer = crate::panic_guard::catch(|| serde_json::from_value(j))
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| {
            err(format!(
                "cannot build the tokenizer from tokenizer.ggml.*: {e}"
            ))
        })?;
    Ok(GgufTokenizer {
        tokenizer,
        bos,
        eos,
        add_bos,
        chat_template: m.opt_str("tokenizer.chat_template")?.map(str::to_string),
    })
}

/// `tokenizer.ggml.pre` names of Llama-3-style vocabularies.
const LLAMA3_PRE: [&str; 6] = [
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "smaug-bpe",
    "dbrx",
];

/// The pre-tokenizer for llama.cpp's `tokenizer.ggml.pre` names.
fn byte_level_pre_tokenizer(pre: &str) -> Value {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" => {
            json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]})
        }
        p if LLAMA3_PRE.contains(&p) => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(false)]})
        }
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" => {
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(false)]})
        }
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        other => {
            log::warn!(
                "tokenizer.ggml.pre \"{other}\" is not known to boha; using GPT-2's pre-tokenizer"
            );
            byte_level(true)
        }
    }
}

/// The `tokenizer.ggml.pre` name whose pre-tokenizer (`byte_level_pre_tokenizer`) is
/// `pre_tokenizer` (a `tokenizer.json` pre-tokenizer), the inverse of that function for
/// the byte-level forms it builds: plain ByteLevel with GPT-2's regex ("gpt2"), digits
/// split one by one before it ("smollm"), Llama-3's split regex ("llama-bpe") and
/// Qwen2's ("qwen2"). Both sides go through the `tokenizers` crate's own (de)serializer,
/// so spelling differences in the JSON (defaults left out, key order) do not matter,
/// and ByteLevel's `trim_offsets` is ignored: it changes offsets, never ids (Qwen2's
/// tokenizer.json has it off, boha's rebuild on). `None` for anything else.
pub fn gguf_pre_name(pre_tokenizer: &Value) -> Option<&'static str> {
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    fn drop_trim_offsets(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.remove("trim_offsets");
                o.values_mut().for_each(drop_trim_offsets);
            }
            Value::Array(a) => a.iter_mut().for_each(drop_trim_offsets),
            _ => {}
        }
    }
    let canonical = |v: Value| -> Option<Value> {
        let w: PreTokenizerWrapper = crate::panic_guard::catch(|| serde_json::from_value(v))
            .ok()?
            .ok()?;
        let mut v = serde_json::to_value(&w).ok()?;
        drop_trim_offsets(&mut v);
        Some(v)
    };
    let want = canonical(pre_tokenizer.clone())?;
    ["gpt2", "smollm", "llama-bpe", "qwen2"]
        .into_iter()
        .find(|name| canonical(byte_level_pre_tokenizer(name)).as_ref() == Some(&want))
}

/// Merges for a SentencePiece vocabulary, as transformers' `SentencePieceExtractor`
/// derives them: every split of a mergeable piece into two vocabulary pieces, ordered by
/// the piece's score (highest first), ties by id.
fn sentencepiece_merges(
    tokens: &[&str],
    scores: &[f64],
    vocab: &Map<String, Value>,
    mergeable: impl Fn(usize) -> bool,
) -> Vec<Value> {
    let id = |s: &str| vocab.get(s).and_then(Value::as_u64);
    let mut merges: Vec<(f64, u64, u64, usize, usize)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        // Real pieces are short (SentencePiece's default limit is 16 characters); the
        // cap keeps a hostile file's megabyte-long "piece" from costing quadratic time.
        if !mergeable(i) || piece.len() > 256 {
            continue;
        }
        let mut local = Vec::new();
        for (b, _) in piece.char_indices().skip(1) {
            if let (Some(l), Some(r)) = (id(&piece[..b]), id(&piece[b..])) {
                local.push((scores[i], l, r, i, b));
            }
        }
        local.sort_by_key(|&(_, l, r, _, _)| (l, r));
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    merges
        .into_iter()
        .map(|(_, _, _, i, b)| json!([&tokens[i][..b], &tokens[i][b..]]))
        .collect()
}

fn bos_template(token: &str, id: u32) -> Value {
    let bos = json!({"SpecialToken": {"id": token, "type_id": 0}});
    json!({
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": token, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {token: {"id": token, "ids": [id], "tokens": [token]}},
    })
}

/// Renders a Hugging Face chat template (Jinja) over `messages`.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    use minijinja::{context, Environment, ErrorKind};
    let mut env = Environment::new();
    // transformers renders with these two set.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.set_unknown_method_callback(python_methods);
    let bad = |e: minijinja::Error| {
        Error::Invalid(super::escape_controls(&format!("chat template: {e}")))
    };
    env.add_template("chat_template", template).map_err(bad)?;
    let t = env.get_template("chat_template").map_err(bad)?;
    t.render(context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token.unwrap_or(""),
        eos_token => eos_token.unwrap_or(""),
    })
    .map_err(bad)
}

/// The Python string and dict methods chat templates call (`.strip()`,
/// `.startswith(..)`, `.items()`, …), which minijinja does not have.
fn python_methods(
    state: &minijinja::State,
    value: &minijinja::Value,
    method: &str,
    args: &[minijinja::Value],
) -> std::result::Result<minijinja::Value, minijinja::Error> {
    use minijinja::value::ValueKind;
    use minijinja::{Error as JErr, ErrorKind, Value as J};
    let unknown = || JErr::from(ErrorKind::UnknownMethod);
    let arg_str = |i: usize| args.get(i).and_then(|a| a.as_str());
    if let Some(s) = value.as_str() {
        let chars = arg_str(0);
        let trim_set = |c: char| chars.map_or(c.is_whitespace(), |set| set.contains(c));
        return Ok(match method {
            "strip" => J::from(s.trim_matches(trim_set)),
            "lstrip" => J::from(s.trim_start_matches(trim_set)),
            "rstrip" => J::from(s.trim_end_matches(trim_set)),
            "startswith" => J::from(s.starts_with(arg_str(0).ok_or_else(unknown)?)),
            "endswith" => J::from(s.ends_with(arg_str(0).ok_or_else(unknown)?)),
            "lower" => J::from(s.to_lowercase()),
            "upper" => J::from(s.to_uppercase()),
            "replace" => J::from(s.replace(
                arg_str(0).ok_or_else(unknown)?,
                arg_str(1).ok_or_else(unknown)?,
            )),
            "split" => match arg_str(0) {
                Some(sep) => J::from(s.split(sep).map(J::from).collect::<Vec<_>>()),
                None => J::from(s.split_whitespace().map(J::from).collect::<Vec<_>>()),
            },
            _ => return Err(unknown()),
        });
    }
    if value.kind() == ValueKind::Map {
        return match method {
            "items" => state.apply_filter("items", std::slice::from_ref(value)),
            "keys" => Ok(J::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => Ok(J::from(
                value
                    .try_iter()?
                    .map(|k| value.get_item(&k).unwrap_or_default())
                    .collect::<Vec<_>>(),
            )),
            "get" => {
                let v = value.get_item(args.first().ok_or_else(unknown)?)?;
                Ok(if v.is_undefined() {
                    args.get(1).cloned().unwrap_or_default()
                } else {
                    v
                })
            }
            _ => Err(unknown()),
        };
    }
    Err(unknown())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pre-tokenizers of real byte-level vocabularies (as their tokenizer.json
    /// spells them) map to the `tokenizer.ggml.pre` names boha rebuilds them from.
    #[test]
    fn gguf_pre_names_of_byte_level_pre_tokenizers() {
        let bl = |re: bool, trim: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim, "use_regex": re});
        let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
        let seq = |a: Value, b: Value| json!({"type": "Sequence", "pretokenizers": [a, b]});
        let digits = json!({"type": "Digits", "individual_digits": true});
        assert_eq!(gguf_pre_name(&bl(true, true)), Some("gpt2"));
        assert_eq!(gguf_pre_name(&seq(digits, bl(true, true))), Some("smollm"));
        let llama3 = seq(split(LLAMA3_REGEX), bl(false, true));
        assert_eq!(gguf_pre_name(&llama3), Some("llama-bpe"));
        let qwen2 = seq(split(QWEN2_REGEX), bl(false, false));
        assert_eq!(gguf_pre_name(&qwen2), Some("qwen2"));
        assert_eq!(gguf_pre_name(&json!({"type": "Whitespace"})), None);
        assert_eq!(gguf_pre_name(&seq(split("x"), bl(false, true))), None);
        let prefix = json!({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true});
        assert_eq!(gguf_pre_name(&prefix), None);
        assert_eq!(gguf_pre_name(&Value::Null), None);
    }
}
