//! Buffer planning by liveness: each value declares the steps [first, last] during which
//! it must hold its contents; values whose ranges do not overlap share one buffer. Done
//! once, when a graph is built; the buffers are then fixed for every replay.

use crate::error::Result;
use crate::gpu::{Gpu, Tensor};

struct Value {
    len: usize,
    first: usize,
    last: usize,
}

/// Collects values, then assigns them to as few buffers as a first-fit over decreasing
/// sizes finds.
#[derive(Default)]
pub struct Planner {
    values: Vec<Value>,
    /// value → buffer, after [`Planner::assign`]
    slots: Vec<usize>,
    sizes: Vec<usize>,
}

fn overlap(a: &Value, b: &Value) -> bool {
    !(a.last < b.first || b.last < a.first)
}

impl Planner {
    pub fn new() -> Planner {
        Planner::default()
    }

    /// Declares a value of `len` f32 elements live over steps first..=last; returns its id.
    pub fn value(&mut self, _name: &str, len: usize, first: usize, last: usize) -> usize {
        self.values.push(Value {
            len,
            first,
            last: last.max(first),
        });
        self.values.len() - 1
    }

    /// Assigns every value a buffer index; returns the buffers' sizes (elements).
    pub fn assign(&mut self) -> &[usize] {
        let mut order: Vec<usize> = (0..self.values.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.values[i].len));
        let mut members: Vec<Vec<usize>> = Vec::new();
        self.slots = vec![0; self.values.len()];
        self.sizes.clear();
        for i in order {
            let v = &self.values[i];
            let slot = members
                .iter()
                .position(|m| m.iter().all(|&j| !overlap(v, &self.values[j])));
            let slot = match slot {
                Some(s) => s,
                None => {
                    members.push(Vec::new());
                    self.sizes.push(0);
                    members.len() - 1
                }
            };
            members[slot].push(i);
            self.sizes[slot] = self.sizes[slot].max(v.len);
            self.slots[i] = slot;
        }
        &self.sizes
    }

    /// The buffers' sizes in elements (after [`Planner::assign`]).
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The value → buffer map (after [`Planner::assign`]).
    pub fn slots(&self) -> &[usize] {
        &self.slots
    }

    /// Allocates the planned buffers; returns one tensor \[len\] per value, in id order.
    pub fn allocate(&mut self, gpu: &Gpu) -> Result<Vec<Tensor>> {
        self.assign();
        let bufs: Vec<Tensor> = self
            .sizes
            .iter()
            .map(|&n| gpu.zeros(&[n.max(1)]))
            .collect::<Result<_>>()?;
        self.values
            .iter()
            .zip(&self.slots)
            .map(|(v, &s)| bufs[s].view(0, v.len))
            .collect()
    }

    /// Bytes of the planned buffers.
    pub fn planned_bytes(&self) -> u64 {
        self.sizes.iter().map(|&n| n as u64 * 4).sum()
    }

    /// Bytes one buffer per value would take.
    pub fn unplanned_bytes(&self) -> u64 {
        self.values.iter().map(|v| v.len as u64 * 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_values_never_share_and_disjoint_ones_do() {
        let mut p = Planner::new();
        let spans = [
            (10, 0, 3),
            (7, 2, 5),
            (9, 4, 6),
            (3, 6, 8),
            (12, 7, 9),
            (5, 0, 9),
        ];
        for (i, &(n, a, b)) in spans.iter().enumerate() {
            p.value(&format!("v{i}"), n, a, b);
        }
        let sizes = p.assign().to_vec();
        let slots = p.slots().to_vec();
        for i in 0..spans.len() {
            assert!(sizes[slots[i]] >= spans[i].0);
            for j in 0..i {
                let (a, b) = (spans[i], spans[j]);
                let ov = !(a.2 < b.1 || b.2 < a.1);
                if ov {
                    assert_ne!(slots[i], slots[j], "{i} and {j} overlap");
                }
            }
        }
        assert!(p.planned_bytes() < p.unplanned_bytes());
        assert!(sizes.len() < spans.len());
    }
}
