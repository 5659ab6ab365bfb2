//! JSONL training and evaluation files: one JSON object per line, empty lines skipped.
//!
//! Three record shapes are recognized, by their fields:
//!
//! | shape       | fields                                      | rendered with                 |
//! |-------------|---------------------------------------------|-------------------------------|
//! | Alpaca      | `instruction`, `output`, optional `input`   | the LLM-Adapters template     |
//! | completion  | `prompt`, `completion`                      | as is                         |
//! | chat        | `messages: [{"role", "content"}]`           | the model's chat template     |
//!
//! Every shape may carry `task` (which answer extractor scores it, see
//! [`crate::data::answer`]), `answer` (the gold label or number for evaluation; a
//! string or a number) and `rc` (answer choices ranked by log-likelihood, see
//! [`crate::data::ranked`]). A malformed line is an error naming `file:line` and the
//! problem.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::data::ranked::Ranked;
use crate::loaders::ChatMessage;
use crate::{Error, Result};

/// The text of one record, by shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Alpaca / LLM-Adapters commonsense_170k and math_10k style.
    Alpaca {
        instruction: String,
        input: String,
        output: String,
    },
    /// A raw prompt and the completion the model should learn.
    Completion { prompt: String, completion: String },
    /// A conversation; the last message is the one trained on (an assistant turn).
    Chat { messages: Vec<ChatMessage> },
}

/// One line of a JSONL file.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub record: Record,
    /// The `task` field (answer format name), if any.
    pub task: Option<String>,
    /// The `answer` field (gold label or number as text), if any.
    pub answer: Option<String>,
    /// The `rc` field: choices that `--scoring loglik` ranks, if any.
    pub rc: Option<Ranked>,
    /// 1-based line number in its file (0 when not read from a file).
    pub line: usize,
}

impl Sample {
    /// The gold answer for scoring: the `answer` field, else the target text (whose
    /// answer the task's extractor finds, e.g. "The answer is 12." or "answer3").
    pub fn gold(&self) -> &str {
        self.answer.as_deref().unwrap_or_else(|| self.target_text())
    }

    /// The text the model should produce: `output`, `completion` or the last message.
    pub fn target_text(&self) -> &str {
        match &self.record {
            Record::Alpaca { output, .. } => output,
            Record::Completion { completion, .. } => completion,
            Record::Chat { messages } => messages.last().map(|m| m.content.as_str()).unwrap_or(""),
        }
    }
}

/// Reads every record of `path`. Errors name `path:line` and the problem, e.g.
/// `data.jsonl:17: missing field "output"`.
pub fn read_jsonl(path: &Path) -> Result<Vec<Sample>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    // Split the bytes, not a string, so that bytes that are not UTF-8 are reported
    // with their line.
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            line_error(
                path,
                i + 1,
                format!(
                    "not UTF-8 text (invalid byte at column {})",
                    e.valid_up_to() + 1
                ),
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let mut s = parse_line(line).map_err(|m| line_error(path, i + 1, m))?;
        s.line = i + 1;
        out.push(s);
    }
    if out.is_empty() {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            message: "no records (the file is empty)".into(),
        });
    }
    Ok(out)
}

fn line_error(path: &Path, line: usize, message: String) -> Error {
    // BadFile prints "{path}: {message}"; a path of "file:line" gives the usual
    // compiler-style "file:line: problem".
    Error::BadFile {
        path: PathBuf::from(format!("{}:{line}", path.display())),
        message,
    }
}

/// Parses one non-empty line; the error is the problem alone (no file or line).
pub fn parse_line(line: &str) -> std::result::Result<Sample, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, found {}", kind(&v)))?;
    let record = if obj.contains_key("messages") {
        Record::Chat {
            messages: parse_messages(obj)?,
        }
    } else if obj.contains_key("prompt") || obj.contains_key("completion") {
        Record::Completion {
            prompt: string_field(obj, "prompt")?,
            completion: string_field(obj, "completion")?,
        }
    } else if obj.contains_key("instruction") || obj.contains_key("output") {
        Record::Alpaca {
            instruction: string_field(obj, "instruction")?,
            input: match obj.get("input") {
                None | Some(Value::Null) => String::new(),
                Some(_) => string_field(obj, "input")?,
            },
            output: string_field(obj, "output")?,
        }
    } else {
        return Err(
            "no known fields (expected instruction/input/output, prompt/completion \
             or messages)"
                .into(),
        );
    };
    let task = match obj.get("task") {
        None | Some(Value::Null) => None,
        Some(_) => Some(string_field(obj, "task")?),
    };
    let answer = match obj.get("answer") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => {
            return Err(format!(
                "field \"answer\" must be a string or a number, found {}",
                kind(other)
            ))
        }
    };
    let rc = match obj.get("rc") {
        None | Some(Value::Null) => None,
        Some(v) => Some(Ranked::parse(v)?),
    };
    Ok(Sample {
        record,
        task,
        answer,
        rc,
        line: 0,
    })
}

fn parse_messages(obj: &Map<String, Value>) -> std::result::Result<Vec<ChatMessage>, String> {
    let list = obj["messages"].as_array().ok_or_else(|| {
        format!(
            "field \"messages\" must be an array, found {}",
            kind(&obj["messages"])
        )
    })?;
    if list.is_empty() {
        return Err("field \"messages\" is empty".into());
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let mo = m
            .as_object()
            .ok_or_else(|| format!("messages[{i}] must be an object, found {}", kind(m)))?;
        let role = string_field(mo, "role").map_err(|e| format!("messages[{i}]: {e}"))?;
        let content = string_field(mo, "content").map_err(|e| format!("messages[{i}]: {e}"))?;
        out.push(ChatMessage { role, content });
    }
    let last = &out[out.len() - 1].role;
    if last != "assistant" {
        return Err(format!(
            "the last message must be the assistant's (the one trained on), found role {last:?}"
        ));
    }
    Ok(out)
}

fn string_field(obj: &Map<String, Value>, name: &str) -> std::result::Result<String, String> {
    match obj.get(name) {
        None => Err(format!("missing field \"{name}\"")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "field \"{name}\" must be a string, found {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes `records` as JSONL atomically: a temporary file next to `path`, then a rename,
/// so a failure leaves neither a partial file nor the temporary behind.
pub fn write_jsonl(path: &Path, records: &[Value]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| Error::Invalid(e.to_string()))?;
        text.push_str(&line);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` through a sibling temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
