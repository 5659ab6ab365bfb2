//! A record's ranked-classification choices (OLMo's "rc" formulation, the `rc` field of
//! a JSONL record): for each answer choice a context and a continuation, the gold
//! choice's index, and how a choice's log-likelihood is normalised. `boha eval
//! --scoring loglik` picks the choice c maximising
//!
//!   score(c) = Σ_j log p(y_j | context_c, y_<j) / n(c),
//!
//! with y the continuation's tokens and n(c) = 1 ([`Norm::None`], OLMo's `acc_raw`) or
//! the continuation's length in characters ([`Norm::Chars`], OLMo's `acc_per_char`).
//! Contexts are raw text (no chat or instruction template): what a pretrained model
//! ranks without having seen the answer format, so the measure resolves even a small
//! model's knowledge. Most tasks share one context among the choices; WinoGrande's
//! choices differ in the context (each fills the blank) and share the continuation.
//!
//! ```json
//! "rc": {"choices": [{"context": "Question: …\nAnswer:", "continuation": " food"}, …],
//!        "gold": 0, "norm": "chars"}
//! ```

use serde_json::{json, Map, Value};

/// How a choice's summed log-likelihood is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// The sum itself (OLMo's `acc_raw`).
    None,
    /// Divided by the continuation's length in characters (OLMo's `acc_per_char`).
    Chars,
}

impl Norm {
    pub fn name(self) -> &'static str {
        match self {
            Norm::None => "none",
            Norm::Chars => "chars",
        }
    }

    fn parse(s: &str) -> Option<Norm> {
        match s {
            "none" => Some(Norm::None),
            "chars" => Some(Norm::Chars),
            _ => None,
        }
    }
}

/// One answer choice: the text before it and the text scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub context: String,
    pub continuation: String,
}

/// A record's choices (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranked {
    pub choices: Vec<Choice>,
    /// Index of the right choice.
    pub gold: usize,
    pub norm: Norm,
}

impl Ranked {
    /// The `rc` field's value.
    pub fn to_json(&self) -> Value {
        json!({
            "choices": self.choices.iter().map(|c| json!({
                "context": c.context,
                "continuation": c.continuation,
            })).collect::<Vec<_>>(),
            "gold": self.gold,
            "norm": self.norm.name(),
        })
    }

    /// A summed log-likelihood of choice `i`, normalised.
    pub fn normalise(&self, i: usize, sum: f64) -> f64 {
        match self.norm {
            Norm::None => sum,
            Norm::Chars => sum / self.choices[i].continuation.chars().count().max(1) as f64,
        }
    }

    /// Parses the `rc` field; the error is the problem alone.
    pub fn parse(v: &Value) -> std::result::Result<Ranked, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "field \"rc\" must be an object".to_string())?;
        let list = obj
            .get("choices")
            .and_then(Value::as_array)
            .ok_or_else(|| "rc: missing field \"choices\" (a list)".to_string())?;
        if list.len() < 2 {
            return Err(format!("rc: {} choices (at least 2)", list.len()));
        }
        let choices = list
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = c
                    .as_object()
                    .ok_or_else(|| format!("rc: choices[{i}] must be an object"))?;
                let text = |m: &Map<String, Value>, name: &str| match m.get(name) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    _ => Err(format!("rc: choices[{i}] needs a string \"{name}\"")),
                };
                let choice = Choice {
                    context: text(c, "context")?,
                    continuation: text(c, "continuation")?,
                };
                if choice.continuation.is_empty() {
                    return Err(format!("rc: choices[{i}] has an empty continuation"));
                }
                Ok(choice)
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let gold = obj
            .get("gold")
            .and_then(Value::as_u64)
            .ok_or_else(|| "rc: missing or non-integer field \"gold\"".to_string())?
            as usize;
        if gold >= choices.len() {
            return Err(format!(
                "rc: gold {gold} is not below the {} choices",
                choices.len()
            ));
        }
        let norm = match obj.get("norm") {
            None => Norm::None,
            Some(Value::String(s)) => Norm::parse(s)
                .ok_or_else(|| format!("rc: unknown norm {s:?} (expected none or chars)"))?,
            Some(_) => return Err("rc: field \"norm\" must be a string".into()),
        };
        Ok(Ranked {
            choices,
            gold,
            norm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_fields() {
        let r = Ranked {
            choices: vec![
                Choice {
                    context: "Q: sky?\nAnswer:".into(),
                    continuation: " blue".into(),
                },
                Choice {
                    context: "Q: sky?\nAnswer:".into(),
                    continuation: " green grass".into(),
                },
            ],
            gold: 0,
            norm: Norm::Chars,
        };
        assert_eq!(Ranked::parse(&r.to_json()).unwrap(), r);
        assert_eq!(r.normalise(1, -6.0), -0.5);
        let mut v = r.to_json();
        v["gold"] = json!(2);
        assert_eq!(
            Ranked::parse(&v).unwrap_err(),
            "rc: gold 2 is not below the 2 choices"
        );
        v["gold"] = json!(0);
        v["norm"] = json!("tokens");
        assert!(Ranked::parse(&v).unwrap_err().contains("unknown norm"));
        v["choices"][1]["continuation"] = json!("");
        v["norm"] = json!("none");
        assert_eq!(
            Ranked::parse(&v).unwrap_err(),
            "rc: choices[1] has an empty continuation"
        );
    }
}
