//! Inputs that once crashed (or would have crashed) boha's file readers, found by the
//! fuzz targets in `fuzz/` or while writing them; each must now be a clean error.
//!
//! `tests/data/fuzz/<target>/` holds each fuzz target's minimized corpus, and its
//! `EXPECTED.tsv` the documented outcome of every file; the `saved_*` tests replay each
//! file through the same entry points as the target and hold it to that outcome, to
//! boha's one-line errors and to not panicking. `write_fuzz_seeds` writes the seeds the
//! corpora grew from. fuzz/README.md says how the corpora were made and how to bless
//! the manifests.

mod common;
/// The seeds the corpora grew from (`write_fuzz_seeds`).
#[path = "fuzz/seeds.rs"]
mod seeds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use boha::adapters::files::{load_adapter, save_adapter};
use boha::adapters::{AdapterSpec, Method};
use common::tiny_checkpoint::temp_dir;
use serde_json::{json, Value};

/// A valid 1-layer BoHA adapter on q (8 × 8, b = 2, r_b = 1), its config edited by `f`.
fn adapter_with_config(tag: &str, f: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = temp_dir(tag).join("adapter");
    let spec = AdapterSpec {
        method: Method::Boha,
        blocks: 2,
        block_rank: 1,
        scale: 1.0,
    };
    let (a, b) = (vec![0.1f32; 16], vec![0.2f32; 16]);
    save_adapter(&dir, &spec, "tiny", &[(0, "q", &a, &b, 8, 8)]).unwrap();
    let p = dir.join("adapter_config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
    dir
}

fn err_of<T>(r: boha::Result<T>) -> String {
    match r {
        Ok(_) => panic!("accepted a bad file"),
        Err(e) => e.to_string(),
    }
}

/// blocks × block_rank overflowed (a panic in debug builds) when "r" was checked.
#[test]
fn adapter_sizes_whose_product_overflows() {
    let dir = adapter_with_config("fz-overflow", |c| {
        c["blocks"] = json!(u64::MAX);
        c["block_rank"] = json!(u64::MAX);
        c["r"] = json!(7);
    });
    let e = err_of(load_adapter(&dir));
    assert!(
        e.contains("adapter_config.json") && e.contains("blocks"),
        "{e}"
    );
}

/// A finite f64 scale that is infinite as f32 was accepted (every output became NaN).
#[test]
fn adapter_scale_beyond_f32() {
    let dir = adapter_with_config("fz-scale", |c| c["scale"] = json!(1e300));
    let e = err_of(load_adapter(&dir));
    assert!(e.contains("scale"), "{e}");
    let dir = adapter_with_config("fz-alpha", |c| {
        c["peft_type"] = json!("LORA");
        c["lora_alpha"] = json!(-1e300);
    });
    // (A LoRA config over BoHA tensors fails somewhere; it must not be accepted.)
    let _ = err_of(load_adapter(&dir));
}

/// NaN factors were accepted and turned every output into NaN.
#[test]
fn adapter_nan_factors() {
    let dir = adapter_with_config("fz-nan", |_| {});
    let p = dir.join("adapter_model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    b[8 + n..8 + n + 4].copy_from_slice(&[0xFF; 4]);
    std::fs::write(&p, b).unwrap();
    let e = err_of(load_adapter(&dir));
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("NaN"),
        "{e}"
    );
}

/// Bytes that are not UTF-8 made the whole file unreadable without naming the line.
#[test]
fn jsonl_invalid_utf8_names_the_line() {
    let dir = temp_dir("fz-jsonl");
    let p = dir.join("d.jsonl");
    std::fs::write(
        &p,
        b"{\"prompt\": \"a\", \"completion\": \"b\"}\r\n{\"prompt\": \"\xff\", \"completion\": \"b\"}\n",
    )
    .unwrap();
    let e = err_of(boha::data::jsonl::read_jsonl(&p));
    assert!(e.contains("d.jsonl:2:") && e.contains("UTF-8"), "{e}");
}

// ---------------------------------------------------------------------------------
// Saved corpora, replayed through the fuzz targets' entry points.
//
// `tests/data/fuzz/<target>/` holds the minimized corpus of the fuzz target `<target>`
// (fuzz/README.md says how it was made) and `EXPECTED.tsv`, the outcome of each file:
//
//     <file> TAB ok
//     <file> TAB skip                  (the target loads nothing from it: too short, …)
//     <file> TAB err TAB <text the one-line error must contain>
//
// An error is compared with the input's temporary directory written as `<dir>` and with
// `\`, tab, CR and LF escaped as `\\`, `\t`, `\r`, `\n`. The default run only compares;
// `BOHA_BLESS_FUZZ=1` rewrites each manifest from what the loaders do now, keeping the
// lines that still hold (so a hand-shortened expectation survives a bless).

/// The manifest's name inside each corpus folder.
const MANIFEST: &str = "EXPECTED.tsv";

/// The first line of every manifest.
const MANIFEST_HEADER: &str = "# file\tok | skip | err\ttext the error must contain \
     (see tests/fuzz_regressions.rs; BOHA_BLESS_FUZZ=1 rewrites this file)";

/// What replaying one input gave, or what the manifest expects (then `Err` holds the
/// escaped text the error must contain).
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// The target loads nothing from this input.
    Skip,
    Ok,
    Err(String),
}

impl Outcome {
    /// Whether `self` (from the manifest) accepts `got` (from a replay).
    fn accepts(&self, got: &Outcome) -> bool {
        match (self, got) {
            (Outcome::Err(want), Outcome::Err(e)) => escape(e).contains(want.as_str()),
            _ => self == got,
        }
    }

    /// The manifest line for file `name`.
    fn line(&self, name: &str) -> String {
        match self {
            Outcome::Skip => format!("{name}\tskip"),
            Outcome::Ok => format!("{name}\tok"),
            Outcome::Err(e) => format!("{name}\terr\t{}", escape(e)),
        }
    }
}

/// Escapes what would break a TSV line (the manifest compares escaped text).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// One input being replayed: its temporary directory, and the errors of the calls the
/// target makes besides the one whose result is the outcome (they must be one line too).
struct Ctx {
    dir: PathBuf,
    others: Vec<String>,
}

impl Ctx {
    /// Writes one input file into the directory.
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// An error message with the temporary directory written as `<dir>`, so that it is
    /// the same on every run.
    fn norm(&self, e: impl std::fmt::Display) -> String {
        e.to_string()
            .replace(&self.dir.display().to_string(), "<dir>")
    }

    /// Records the error of a call that is not the outcome; returns its value.
    fn other<T, E: std::fmt::Display>(&mut self, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.others.push(self.norm(e))).ok()
    }

    /// The outcome of the target's main call.
    fn outcome<T, E: std::fmt::Display>(&self, r: Result<T, E>) -> Outcome {
        match r {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Err(self.norm(e)),
        }
    }
}

/// The folder of a target's corpus.
fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target)
}

/// The corpus files (name, bytes), sorted; a missing or empty folder fails the test, so
/// a lost corpus cannot pass on zero inputs.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the {target} corpus is gone)", dir.display()));
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != MANIFEST))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    assert!(!out.is_empty(), "{}: no inputs", dir.display());
    out.sort();
    out
}

/// Parses a manifest: file → expected outcome; malformed lines are problems.
fn read_manifest(target: &str) -> (BTreeMap<String, Outcome>, Vec<String>) {
    let path = corpus_dir(target).join(MANIFEST);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (mut map, mut problems) = (BTreeMap::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '\t').collect();
        let outcome = match fields[..] {
            [_, "ok"] => Outcome::Ok,
            [_, "skip"] => Outcome::Skip,
            [_, "err", want] if !want.is_empty() => Outcome::Err(want.to_string()),
            _ => {
                problems.push(format!("{MANIFEST}:{}: malformed line {line:?}", i + 1));
                continue;
            }
        };
        if map.insert(fields[0].to_string(), outcome).is_some() {
            problems.push(format!("{MANIFEST}:{}: {} listed twice", i + 1, fields[0]));
        }
    }
    (map, problems)
}

/// Writes a manifest for `got`, keeping each old line that still accepts its file.
fn bless_manifest(target: &str, got: &BTreeMap<String, Outcome>, old: &BTreeMap<String, Outcome>) {
    let mut text = format!("{MANIFEST_HEADER}\n");
    for (name, outcome) in got {
        // A kept manifest line holds its error already escaped: write it as it was.
        text += &match old.get(name).filter(|want| want.accepts(outcome)) {
            Some(Outcome::Err(want)) => format!("{name}\terr\t{want}"),
            Some(kept) => kept.line(name),
            None => outcome.line(name),
        };
        text.push('\n');
    }
    std::fs::write(corpus_dir(target).join(MANIFEST), text).unwrap();
}

/// Differences between the manifest and the replays (`got`: the folder's files that did
/// not panic): every file listed, every line's file present, every outcome accepted.
fn compare(
    expected: &BTreeMap<String, Outcome>,
    got: &BTreeMap<String, Outcome>,
    in_folder: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, outcome) in got {
        match expected.get(name) {
            None => problems.push(format!("{name}: not in {MANIFEST}")),
            Some(want) if !want.accepts(outcome) => problems.push(format!(
                "{name}: expected {:?}, got {:?}",
                want.line(name),
                outcome.line(name)
            )),
            Some(_) => {}
        }
    }
    for name in expected.keys().filter(|n| !in_folder.contains(n)) {
        problems.push(format!("{name}: in {MANIFEST} but not in the folder"));
    }
    problems
}

/// Checks boha's error contract on one replay: every error one line and non-empty, and,
/// for targets that read files, the outcome's error names the file (or folder) at fault.
fn check_errors(name: &str, outcome: &Outcome, others: &[String], names_file: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let main = match outcome {
        Outcome::Err(e) => Some(e),
        _ => None,
    };
    for e in main.into_iter().chain(others) {
        if e.trim().is_empty() || e.contains(['\n', '\r']) {
            problems.push(format!("{name}: error is not one line: {e:?}"));
        }
    }
    if let Some(e) = main.filter(|e| names_file && !e.contains("<dir>")) {
        problems.push(format!("{name}: error names no input file: {e:?}"));
    }
    problems
}

/// Runs `run` on one input in a fresh directory; a panic comes back as `Err(message)`.
fn replay_one(
    target: &str,
    run: fn(&mut Ctx, &[u8]) -> Outcome,
    data: &[u8],
) -> Result<(Outcome, Vec<String>), String> {
    let mut cx = Ctx {
        dir: temp_dir(&format!("fz-{target}")),
        others: Vec::new(),
    };
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut cx, data)));
    let _ = std::fs::remove_dir_all(&cx.dir);
    out.map(|o| (o, cx.others)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Replays a target's corpus and checks it against its manifest (or rewrites the
/// manifest with `BOHA_BLESS_FUZZ=1`); fails naming every file that misbehaves.
fn replay_corpus(target: &str, run: fn(&mut Ctx, &[u8]) -> Outcome, names_file: bool) {
    boha::panic_guard::install_quiet_hook();
    let mut problems = Vec::new();
    let mut got = BTreeMap::new();
    let files = corpus(target);
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    for (name, data) in files {
        match replay_one(target, run, &data) {
            Err(panic) => problems.push(format!("{name}: panicked: {panic}")),
            Ok((outcome, others)) => {
                problems.extend(check_errors(&name, &outcome, &others, names_file));
                got.insert(name, outcome);
            }
        }
    }
    let (expected, manifest_problems) = read_manifest(target);
    if std::env::var_os("BOHA_BLESS_FUZZ").is_some() {
        bless_manifest(target, &got, &expected);
    } else {
        problems.extend(manifest_problems);
        problems.extend(compare(&expected, &got, &names));
    }
    assert!(
        problems.is_empty(),
        "tests/data/fuzz/{target}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The fuzz targets' split: a u16 LE length, then two files.
fn split2(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if data.len() < 2 {
        return None;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    Some(data[2..].split_at(n))
}

/// `fuzz_targets/gguf.rs`: the GGUF reader (open, a few tensors), then the whole
/// checkpoint loader and a read of every tensor's values (loading reads headers only),
/// whose result is the outcome.
fn run_gguf(cx: &mut Ctx, data: &[u8]) -> Outcome {
    let path = cx.write("input.gguf", data);
    if let Some(f) = cx.other(boha::loaders::gguf::GgufFile::open(&path)) {
        for t in f.tensors.iter().take(4) {
            cx.other(f.read_f32(t));
        }
    }
    cx.outcome(boha::loaders::load_checkpoint(&path).and_then(|ck| ck.check_values()))
}

/// `fuzz_targets/hf_dir.rs`: safetensors and config.json alone, then the directory
/// loader (the outcome; never Ok, as the directory has no tokenizer.json).
fn run_hf_dir(cx: &mut Ctx, data: &[u8]) -> Outcome {
    let Some((config, weights)) = split2(data) else {
        return Outcome::Skip;
    };
    let config = cx.write("config.json", config);
    let weights = cx.write("model.safetensors", weights);
    cx.other(
        boha::loaders::safetensors::read_file(&weights)
            .and_then(|ts| ts.iter().try_for_each(|(_, t)| t.to_f32().map(drop))),
    );
    cx.other(boha::loaders::hf::config_from_json_file(&config));
    cx.outcome(boha::loaders::load_checkpoint(&cx.dir.clone()))
}

/// `fuzz_targets/adapter.rs`: `load_adapter` (the outcome), then the spec's checks on
/// every loaded tensor.
fn run_adapter(cx: &mut Ctx, data: &[u8]) -> Outcome {
    let Some((config, weights)) = split2(data) else {
        return Outcome::Skip;
    };
    cx.write("adapter_config.json", config);
    cx.write("adapter_model.safetensors", weights);
    let loaded = load_adapter(&cx.dir.clone());
    if let Ok(a) = &loaded {
        for t in &a.tensors {
            cx.other(a.spec.check_shape(&t.target, t.d_out, t.d_in));
            let _ = a.spec.param_count(t.d_out, t.d_in);
        }
    }
    cx.outcome(loaded)
}

/// `fuzz_targets/jsonl.rs`: `parse_line` on each line, then `read_jsonl` on the file
/// (the outcome).
fn run_jsonl(cx: &mut Ctx, data: &[u8]) -> Outcome {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(s) = cx.other(boha::data::jsonl::parse_line(line)) {
                let _ = s.gold();
            }
        }
    }
    let path = cx.write("input.jsonl", data);
    cx.outcome(boha::data::jsonl::read_jsonl(&path))
}

/// `fuzz_targets/tokenizer.rs`: an even first byte loads a tokenizer.json and round-trips
/// a text; an odd one renders a chat template (bit 1: add the generation prompt).
fn run_tokenizer(cx: &mut Ctx, data: &[u8]) -> Outcome {
    use boha::loaders::tokenizer::render_chat_template;
    let Some((&mode, rest)) = data.split_first() else {
        return Outcome::Skip;
    };
    if mode % 2 == 0 {
        let r = tokenizer_round_trip(cx, rest);
        return cx.outcome(r);
    }
    let Ok(template) = std::str::from_utf8(rest) else {
        return Outcome::Skip;
    };
    let r = render_chat_template(
        template,
        &fuzz_messages(),
        mode & 2 != 0,
        Some("<s>"),
        Some("</s>"),
    );
    cx.outcome(r)
}

/// Loads a tokenizer.json, encodes and decodes the fuzz target's text (the first error
/// is the outcome) and decodes ids out of range (another call).
fn tokenizer_round_trip(cx: &mut Ctx, json: &[u8]) -> Result<String, String> {
    use boha::loaders::tokenizer::{decode, encode, from_bytes, post_processor_adds};
    let tok = from_bytes(json)?;
    let _ = post_processor_adds(&tok, Some(0));
    let text = "What is the capital of France? <|im_end|> é\u{0}";
    let round = encode(&tok, text).and_then(|ids| decode(&tok, &ids));
    cx.other(decode(&tok, &[0, 1, 2, 3, u32::MAX]));
    round.map_err(|e| e.to_string())
}

/// The conversation the tokenizer target renders.
fn fuzz_messages() -> Vec<boha::loaders::ChatMessage> {
    use boha::loaders::ChatMessage;
    vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", " What is 2+2? "),
        ChatMessage::new("assistant", "4"),
    ]
}

#[test]
fn saved_gguf_inputs() {
    replay_corpus("gguf", run_gguf, true);
}

#[test]
fn saved_hf_dir_inputs() {
    replay_corpus("hf_dir", run_hf_dir, true);
}

#[test]
fn saved_adapter_inputs() {
    replay_corpus("adapter", run_adapter, true);
}

#[test]
fn saved_jsonl_inputs() {
    replay_corpus("jsonl", run_jsonl, true);
}

#[test]
fn saved_tokenizer_inputs() {
    replay_corpus("tokenizer", run_tokenizer, false);
}
