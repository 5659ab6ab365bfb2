//! The page's training data: prompt/completion pairs from a JSONL file (or a built-in
//! task), rendered with the model's chat template and cut into fixed-length rows whose
//! loss covers the completion only.

use boha::graph::IGNORE;
use boha::loaders::{ChatMessage, Checkpoint};

/// One training row: `tokens` [seq] and `targets` [seq] (IGNORE off the completion).
pub struct Example {
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
}

/// Lines of {"prompt": ..., "completion": ...} (boha's JSONL format); blank lines skip.
pub fn parse_jsonl(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("line {}: no string \"{k}\"", i + 1))
        };
        out.push((field("prompt")?, field("completion")?));
    }
    if out.is_empty() {
        return Err("no examples".into());
    }
    Ok(out)
}

/// A task small enough to learn in a few dozen steps: answer in one fixed word.
pub fn builtin() -> Vec<(String, String)> {
    [
        ("What colour is the sky?", "Blue, said the owl."),
        ("What is two plus two?", "Four, said the owl."),
        ("Which animal barks?", "The dog, said the owl."),
        ("What is the capital of France?", "Paris, said the owl."),
        ("What do bees make?", "Honey, said the owl."),
        ("How many legs has a cat?", "Four, said the owl."),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect()
}

/// The prompt as the model expects it: its chat template with the assistant turn
/// opened, or the raw text when it has none.
pub fn prompt_text(ck: &Checkpoint, messages: &[ChatMessage]) -> String {
    match ck.render_chat(messages, true) {
        Ok(text) => text,
        Err(_) => messages
            .iter()
            .map(|m| m.content.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Rows of `seq` tokens: prompt then completion and EOS, padded; the targets are the
/// next tokens on the completion (and EOS), IGNORE elsewhere.
pub fn tokenize(
    ck: &Checkpoint,
    pairs: &[(String, String)],
    seq: usize,
) -> boha::Result<Vec<Example>> {
    let eos = boha::generate::generate::eos_ids(ck).first().copied();
    let mut out = Vec::new();
    for (prompt, completion) in pairs {
        let mut ids = ck.encode(&prompt_text(ck, &[ChatMessage::new("user", prompt)]))?;
        let answer_from = ids.len();
        ids.extend(ck.encode(completion)?);
        ids.extend(eos);
        let mut tokens = vec![0u32; seq];
        let mut targets = vec![IGNORE; seq];
        for i in 0..seq.min(ids.len()) {
            tokens[i] = ids[i];
            if i + 1 < ids.len() && i + 1 >= answer_from {
                targets[i] = ids[i + 1];
            }
        }
        out.push(Example { tokens, targets });
    }
    Ok(out)
}
