//! Tokenization into training examples, and batches (padded or packed) in a seeded,
//! resumable order.
//!
//! An [`Example`] is `[BOS] prompt response [EOS]` as ids (BOS and EOS for raw text
//! only: a chat template places its own), with a loss mask over the response tokens
//! (and EOS), or over every token with `train_on_prompt`; it is cut to `max_len` ids.
//! Examples with no loss token left after the cut are dropped and counted.
//!
//! ## Batch layout
//!
//! A [`Batch`] is `rows × len` positions, row-major, each position holding:
//!
//! - `tokens`: the input id (`pad_id` on padding);
//! - `targets`: the id to predict at this position, i.e. the next token of the same
//!   example when that token is in the loss mask, else [`IGNORE`] (the last token of
//!   every example, prompt tokens, padding). The targets are already shifted, so the
//!   loss is a plain per-position cross-entropy over non-`IGNORE` positions;
//! - `positions`: the RoPE position, counted from 0 at the start of each example;
//! - `key_start`: the first key index (in the same row) this query may attend to.
//!
//! The attention rule is one interval per query: position `t` attends to keys
//! `key_start[t] ..= t` of its row. For a packed row, `key_start` is where `t`'s example
//! begins, which confines attention to that example (a block-diagonal causal mask) and
//! matches `positions[t] = t - key_start[t]`. Padding is always at the end of a row and
//! attends only to itself (`key_start[t] = t`), so every softmax row is non-empty; its
//! outputs never reach the loss. With padded (unpacked) batches `key_start` is 0 for
//! every real token, i.e. a plain causal mask is exact.
//!
//! ## Order and resume
//!
//! Epoch `e` visits the examples in a permutation drawn from (`seed`, `e`) alone, so a
//! [`DataPosition`] (epoch, index into that permutation) is all a checkpoint needs: after
//! [`Loader::seek`] the loader yields the same batches an uninterrupted run would. A
//! batch never spans two epochs; the last one of an epoch may have fewer examples (its
//! spare rows are all padding, so the shape stays `rows × len`).

use crate::data::jsonl::Sample;
use crate::data::template::{render, TextCodec};
use crate::rng::Rng;
use crate::{Error, Result};

/// Target value of positions outside the loss (as in PyTorch's cross-entropy).
pub const IGNORE: i32 = -100;

/// How records become examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenizeOptions {
    /// Longest example in ids; longer ones are cut at the end.
    pub max_len: usize,
    /// Put the prompt tokens in the loss too (default: the response only).
    pub train_on_prompt: bool,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        TokenizeOptions {
            max_len: 512,
            train_on_prompt: false,
        }
    }
}

/// One tokenized record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub ids: Vec<u32>,
    /// `loss[i]`: predicting `ids[i]` counts in the loss.
    pub loss: Vec<bool>,
    /// Ids before the response (BOS and prompt), before any cut.
    pub prompt_len: usize,
}

impl Example {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Positions whose target is in the loss (the first id is never predicted).
    pub fn loss_tokens(&self) -> usize {
        self.loss.iter().skip(1).filter(|&&m| m).count()
    }
}

/// Tokenizes one record.
pub fn tokenize(codec: &dyn TextCodec, sample: &Sample, opts: &TokenizeOptions) -> Result<Example> {
    if opts.max_len < 2 {
        return Err(Error::Invalid(format!(
            "--max-len {} is too short (at least 2 tokens)",
            opts.max_len
        )));
    }
    let r = render(codec, &sample.record)?;
    let mut ids = Vec::new();
    if r.raw {
        ids.extend(codec.bos_for_raw_text());
    }
    ids.extend(codec.encode(&r.prompt)?);
    let prompt_len = ids.len();
    ids.extend(codec.encode(&r.response)?);
    if r.raw {
        ids.extend(codec.eos());
    }
    let mut loss: Vec<bool> = (0..ids.len())
        .map(|i| opts.train_on_prompt || i >= prompt_len)
        .collect();
    ids.truncate(opts.max_len);
    loss.truncate(opts.max_len);
    Ok(Example {
        ids,
        loss,
        prompt_len,
    })
}

/// Examples of a whole file, and how many records were dropped.
#[derive(Clone, Debug)]
pub struct Tokenized {
    pub examples: Vec<Example>,
    /// Records whose response was cut away entirely by `max_len`.
    pub dropped: usize,
}

/// Tokenizes every sample; errors name the record's line.
pub fn tokenize_all(
    codec: &dyn TextCodec,
    samples: &[Sample],
    opts: &TokenizeOptions,
) -> Result<Tokenized> {
    let mut examples = Vec::with_capacity(samples.len());
    let mut dropped = 0;
    for s in samples {
        let e = tokenize(codec, s, opts).map_err(|e| match s.line {
            0 => e,
            line => Error::Invalid(format!("record on line {line}: {e}")),
        })?;
        if e.loss_tokens() == 0 {
            dropped += 1;
        } else {
            examples.push(e);
        }
    }
    Ok(Tokenized { examples, dropped })
}

/// A training batch; see the module docs for the layout and attention rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub len: usize,
    pub tokens: Vec<u32>,
    pub targets: Vec<i32>,
    pub positions: Vec<u32>,
    pub key_start: Vec<u32>,
    /// Examples in the batch.
    pub examples: usize,
}

impl Batch {
    fn empty(rows: usize, len: usize, pad_id: u32) -> Batch {
        Batch {
            rows,
            len,
            tokens: vec![pad_id; rows * len],
            targets: vec![IGNORE; rows * len],
            positions: vec![0; rows * len],
            key_start: (0..rows * len).map(|i| (i % len) as u32).collect(),
            examples: 0,
        }
    }

    /// Writes `e` into `row` from column `at`.
    fn put(&mut self, row: usize, at: usize, e: &Example) {
        let base = row * self.len;
        let n = e.ids.len();
        for k in 0..n {
            let t = base + at + k;
            self.tokens[t] = e.ids[k];
            self.targets[t] = if k + 1 < n && e.loss[k + 1] {
                e.ids[k + 1] as i32
            } else {
                IGNORE
            };
            self.positions[t] = k as u32;
            self.key_start[t] = at as u32;
        }
        self.examples += 1;
    }

    /// One example per row, right-padded to `len` (default: the longest example).
    pub fn padded(
        examples: &[&Example],
        rows: usize,
        len: Option<usize>,
        pad_id: u32,
    ) -> Result<Batch> {
        if examples.len() > rows {
            return Err(Error::Invalid(format!(
                "{} examples do not fit in {rows} rows",
                examples.len()
            )));
        }
        let longest = examples.iter().map(|e| e.len()).max().unwrap_or(1);
        let len = len.unwrap_or(longest);
        if longest > len {
            return Err(Error::Invalid(format!(
                "an example of {longest} tokens does not fit a row of {len}"
            )));
        }
        let mut b = Batch::empty(rows, len.max(1), pad_id);
        for (r, e) in examples.iter().enumerate() {
            b.put(r, 0, e);
        }
        Ok(b)
    }

    /// Rows of several examples each, laid end to end, padded to `row_len`.
    pub fn packed(
        rows: &[Vec<&Example>],
        n_rows: usize,
        row_len: usize,
        pad_id: u32,
    ) -> Result<Batch> {
        if rows.len() > n_rows {
            return Err(Error::Invalid(format!(
                "{} rows given for a batch of {n_rows}",
                rows.len()
            )));
        }
        let mut b = Batch::empty(n_rows, row_len, pad_id);
        for (r, list) in rows.iter().enumerate() {
            let used: usize = list.iter().map(|e| e.len()).sum();
            if used > row_len {
                return Err(Error::Invalid(format!(
                    "row {r}: {used} tokens do not fit a row of {row_len}"
                )));
            }
            let mut at = 0;
            for e in list {
                b.put(r, at, e);
                at += e.len();
            }
        }
        Ok(b)
    }

    /// Whether query `i` may attend to key `j` in `row` (the rule of the module docs).
    pub fn attends(&self, row: usize, i: usize, j: usize) -> bool {
        let s = self.key_start[row * self.len + i] as usize;
        s <= j && j <= i
    }

    /// Positions counted by the loss.
    pub fn loss_tokens(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// Where the loader stands: an epoch and an index into that epoch's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub index: usize,
}

/// How batches are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One example per row; rows padded to `len` (or to the batch's longest example).
    Padded { rows: usize, len: Option<usize> },
    /// Consecutive examples packed into `rows` rows of `row_len` positions.
    Packed { rows: usize, row_len: usize },
}

/// The visiting order of epoch `epoch`: a Fisher–Yates permutation seeded by
/// (`seed`, `epoch`).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ epoch.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

/// Yields batches in a seeded order, resumable from a [`DataPosition`].
pub struct Loader {
    examples: Vec<Example>,
    seed: u64,
    pad_id: u32,
    order: Vec<usize>,
    pos: DataPosition,
}

impl Loader {
    /// A loader at the start of epoch 0.
    pub fn new(examples: Vec<Example>, seed: u64, pad_id: u32) -> Result<Loader> {
        if examples.is_empty() {
            return Err(Error::Invalid("no training examples".into()));
        }
        let order = epoch_order(examples.len(), seed, 0);
        Ok(Loader {
            examples,
            seed,
            pad_id,
            order,
            pos: DataPosition::default(),
        })
    }

    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// The position of the next batch.
    pub fn position(&self) -> DataPosition {
        self.pos
    }

    /// Continues from `pos` (as saved by [`Loader::position`]).
    pub fn seek(&mut self, pos: DataPosition) -> Result<()> {
        if pos.index > self.examples.len() {
            return Err(Error::Invalid(format!(
                "data position {} is past the {} examples (a different data file?)",
                pos.index,
                self.examples.len()
            )));
        }
        if pos.epoch != self.pos.epoch {
            self.order = epoch_order(self.examples.len(), self.seed, pos.epoch);
        }
        self.pos = pos;
        Ok(())
    }

    fn roll_epoch(&mut self) {
        if self.pos.index >= self.examples.len() {
            self.pos = DataPosition {
                epoch: self.pos.epoch + 1,
                index: 0,
            };
            self.order = epoch_order(self.examples.len(), self.seed, self.pos.epoch);
        }
    }

    /// The next batch; moves the position past its examples.
    pub fn next_batch(&mut self, layout: Layout) -> Result<Batch> {
        self.roll_epoch();
        let start = self.pos.index;
        let batch = match layout {
            Layout::Padded { rows, len } => {
                if rows == 0 {
                    return Err(Error::Invalid("a batch needs at least one row".into()));
                }
                let end = (start + rows).min(self.order.len());
                let chosen: Vec<&Example> = self.order[start..end]
                    .iter()
                    .map(|&i| &self.examples[i])
                    .collect();
                let b = Batch::padded(&chosen, rows, len, self.pad_id)?;
                self.pos.index = end;
                b
            }
            Layout::Packed { rows, row_len } => {
                if rows == 0 || row_len == 0 {
                    return Err(Error::Invalid(
                        "a packed batch needs rows and a row length".into(),
                    ));
                }
                let mut lists: Vec<Vec<&Example>> = vec![Vec::new()];
                let mut used = 0;
                let mut k = start;
                while k < self.order.len() {
                    let e = &self.examples[self.order[k]];
                    if e.len() > row_len {
                        return Err(Error::Invalid(format!(
                            "an example of {} tokens does not fit a packed row of {row_len} \
                             (set --max-len at most the row length)",
                            e.len()
                        )));
                    }
                    if used + e.len() > row_len {
                        if lists.len() == rows {
                            break;
                        }
                        lists.push(Vec::new());
                        used = 0;
                    }
                    lists.last_mut().expect("one row at least").push(e);
                    used += e.len();
                    k += 1;
                }
                let b = Batch::packed(&lists, rows, row_len, self.pad_id)?;
                self.pos.index = k;
                b
            }
        };
        Ok(batch)
    }
}
