//! Frame-time measurement: the wall-clock interval between the starts of consecutive
//! frames while the UI repaints continuously. Unlike eframe's own `cpu_usage`, which
//! leaves out the time spent acquiring the surface texture and submitting (where a
//! frame waits for GPU work queued before it), this is what the user sees: how long
//! the window takes to show a new frame, training's queue work included.

use std::collections::VecDeque;
use std::time::Instant;

/// What the app was doing while a frame was drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// A run was training (its steps share the device and the CPU with the frames).
    Training,
    /// The chat was generating.
    Chat,
    /// Nothing but the window.
    Idle,
}

/// Recent frame intervals, and every interval seen per activity.
#[derive(Default)]
pub struct FrameClock {
    last: Option<Instant>,
    recent: VecDeque<f32>,
    /// Intervals (ms) of frames drawn while training, chatting, idle.
    training: Vec<f32>,
    chat: Vec<f32>,
    idle: Vec<f32>,
}

/// Mean, median, 95th percentile and maximum of a set of intervals, in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameStats {
    pub n: usize,
    pub mean: f32,
    pub p50: f32,
    pub p95: f32,
    pub max: f32,
}

impl FrameStats {
    fn of(v: &[f32]) -> FrameStats {
        if v.is_empty() {
            return FrameStats::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f32::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        FrameStats {
            n: s.len(),
            mean: s.iter().sum::<f32>() / s.len() as f32,
            p50: at(0.5),
            p95: at(0.95),
            max: s[s.len() - 1],
        }
    }
}

impl FrameClock {
    /// Marks the start of a frame. `continuous` says whether the previous frame asked
    /// for the next one at once (only those intervals measure the frame, not waiting
    /// for input); `what` files the interval.
    pub fn tick(&mut self, continuous: bool, what: Activity) {
        let now = Instant::now();
        if let (Some(last), true) = (self.last, continuous) {
            let ms = now.duration_since(last).as_secs_f32() * 1e3;
            self.recent.push_back(ms);
            if self.recent.len() > 60 {
                self.recent.pop_front();
            }
            match what {
                Activity::Training => self.training.push(ms),
                Activity::Chat => self.chat.push(ms),
                Activity::Idle => self.idle.push(ms),
            }
        }
        self.last = Some(now);
    }

    /// Over the last 60 measured frames.
    pub fn recent(&self) -> FrameStats {
        let v: Vec<f32> = self.recent.iter().copied().collect();
        FrameStats::of(&v)
    }

    /// Over every frame drawn while doing `what`.
    pub fn during(&self, what: Activity) -> FrameStats {
        FrameStats::of(match what {
            Activity::Training => &self.training,
            Activity::Chat => &self.chat,
            Activity::Idle => &self.idle,
        })
    }
}
