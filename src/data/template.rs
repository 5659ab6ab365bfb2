//! Prompt rendering: each record becomes a (prompt, response) pair of texts; training
//! puts the loss on the response (by default) and evaluation generates after the prompt.
//!
//! Alpaca records use the LLM-Adapters prompt template (finetune.py `generate_prompt`),
//! reproduced byte for byte, including its 16-space indentation, the indented blank
//! lines and the trailing spaces after the first sentence (one with an input, two
//! without). The prompt is the template with an empty output, so the response is
//! exactly `output`, as LLM-Adapters' `train_on_inputs=False` splits it.
//!
//! Evaluation generates after the same prompt text the model was trained on.
//!
//! Chat records render the model's chat template: the prompt is every message but the
//! last, with the generation prompt (the assistant turn's opening); the response is
//! the rest of the full rendering (the assistant's text and its end-of-turn marker).

use crate::data::jsonl::Record;
use crate::loaders::{ChatMessage, Checkpoint};
use crate::{Error, Result};

/// What prompt rendering and tokenization need from a model: its tokenizer, special
/// ids and chat template. [`Checkpoint`] implements it; tests may use a toy one.
pub trait TextCodec {
    /// Token ids of `text` (special tokens written in the text recognized, nothing added).
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// The BOS id, when raw-text prompts should start with it.
    fn bos_for_raw_text(&self) -> Option<u32>;
    /// The id appended after a response (end of sequence), if the model has one.
    fn eos(&self) -> Option<u32>;
    /// The chat template rendered over `messages`.
    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String>;
}

impl TextCodec for Checkpoint {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Checkpoint::encode(self, text)
    }

    fn bos_for_raw_text(&self) -> Option<u32> {
        if self.add_bos {
            self.bos_token.as_ref().map(|(_, id)| *id)
        } else {
            None
        }
    }

    fn eos(&self) -> Option<u32> {
        self.eos_tokens.first().copied()
    }

    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        Checkpoint::render_chat(self, messages, add_generation_prompt)
    }
}

/// A record rendered as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// What the model reads (and, at evaluation, continues).
    pub prompt: String,
    /// What the model should write after the prompt.
    pub response: String,
    /// The text is raw (not chat-templated): it gets BOS in front (when the model wants
    /// it) and EOS after the response; a chat template already places both.
    pub raw: bool,
}

/// The LLM-Adapters prompt (finetune.py `generate_prompt`) with `output` appended;
/// pass an empty `output` for the prompt alone.
pub fn alpaca_prompt(instruction: &str, input: &str, output: &str) -> String {
    const IND: &str = "                ";
    if !input.is_empty() {
        format!(
            "Below is an instruction that describes a task, paired with an input that provides \
             further context. Write a response that appropriately completes the request. \n\n\
             {IND}### Instruction:\n{IND}{instruction}\n{IND}\n{IND}### Input:\n{IND}{input}\n\
             {IND}\n{IND}### Response:\n{IND}{output}"
        )
    } else {
        format!(
            "Below is an instruction that describes a task. Write a response that appropriately \
             completes the request.  \n\n{IND}### Instruction:\n{IND}{instruction}\n{IND}\n\
             {IND}### Response:\n{IND}{output}"
        )
    }
}

/// Renders `record` into prompt and response text.
pub fn render(codec: &dyn TextCodec, record: &Record) -> Result<Rendered> {
    match record {
        Record::Alpaca {
            instruction,
            input,
            output,
        } => Ok(Rendered {
            prompt: alpaca_prompt(instruction, input, ""),
            response: output.clone(),
            raw: true,
        }),
        Record::Completion { prompt, completion } => Ok(Rendered {
            prompt: prompt.clone(),
            response: completion.clone(),
            raw: true,
        }),
        Record::Chat { messages } => {
            let (last, head) = messages
                .split_last()
                .ok_or_else(|| Error::Invalid("a chat record has no messages".into()))?;
            if last.role != "assistant" {
                return Err(Error::Invalid(format!(
                    "the last chat message must be the assistant's, found role \"{}\"",
                    last.role
                )));
            }
            let prompt = codec.render_chat(head, true)?;
            let full = codec.render_chat(messages, false)?;
            let response = full.strip_prefix(prompt.as_str()).ok_or_else(|| {
                Error::Invalid(
                    "the chat template's rendering of the conversation does not start with its \
                     rendering of the prompt (cannot split off the assistant's reply)"
                        .into(),
                )
            })?;
            Ok(Rendered {
                prompt,
                response: response.to_string(),
                raw: false,
            })
        }
    }
}
