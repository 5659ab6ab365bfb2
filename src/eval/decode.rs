//! One record's greedy decoding as a state machine fed one logits row at a time, so
//! that records decoded together in a [`crate::model::decode_batch::DecodeBatch`] stop
//! exactly where a lone decode would (see the stopping rules in the module docs of
//! [`crate::eval`]).

use super::EvalStop;
use crate::data::answer::{extract, AnswerFormat};
use crate::generate::greedy;
use crate::loaders::Checkpoint;
use crate::Result;

/// What a record's decoding needs to know of the record.
pub struct Limits<'a> {
    pub format: AnswerFormat,
    pub stops: &'a [String],
    pub eos: &'a [u32],
    pub max_new_tokens: usize,
    /// The cache length `generate` would have had for this prompt.
    pub capacity: usize,
}

/// A record being decoded.
pub struct Decoding {
    pub tokens: Vec<u32>,
    pub text: String,
    /// Positions its cache holds (the prompt, then one per token fed back).
    pub cache_len: usize,
}

impl Decoding {
    /// A decoding whose prompt of `prompt_len` tokens is cached.
    pub fn new(prompt_len: usize) -> Decoding {
        Decoding {
            tokens: Vec::new(),
            text: String::new(),
            cache_len: prompt_len,
        }
    }

    /// Takes the logits after the last cached position: either the decoding stops
    /// (`Ok(Err(stop))`) or the returned token is to be fed at the next position
    /// (`Ok(Ok(token))`, after which the cache holds one more).
    pub fn advance(
        &mut self,
        ck: &Checkpoint,
        lim: &Limits<'_>,
        logits: &[f32],
    ) -> Result<std::result::Result<u32, EvalStop>> {
        if self.tokens.len() >= lim.max_new_tokens {
            return Ok(Err(EvalStop::MaxTokens));
        }
        let next = greedy(logits);
        if lim.eos.contains(&next) {
            return Ok(Err(EvalStop::Eos));
        }
        self.tokens.push(next);
        self.text = ck.decode(&self.tokens)?;
        if let Some(at) = lim
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        {
            self.text.truncate(at);
            return Ok(Err(EvalStop::StopString));
        }
        if lim.format != AnswerFormat::Number && extract(lim.format, &self.text).is_some() {
            return Ok(Err(EvalStop::Answer));
        }
        if self.tokens.len() >= lim.max_new_tokens {
            return Ok(Err(EvalStop::MaxTokens));
        }
        if self.cache_len >= lim.capacity {
            return Ok(Err(EvalStop::CacheFull));
        }
        self.cache_len += 1;
        Ok(Ok(next))
    }
}
