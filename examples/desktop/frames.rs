//! Frame-time measurement. A frame's time is the wall clock from the start of its update
//! to the start of the next frame, when the next was asked for at once: update,
//! tessellation, waiting for the queue (where training's work may be ahead of the
//! frame), drawing and presenting. While something runs the app draws frames in pairs,
//! one after the frame-rate delay and one at once, so every pair times its first frame
//! (one that started at an arbitrary moment of the training step) without the delay in
//! between counting as frame time. Unlike eframe's own `cpu_usage`, which leaves out
//! the time spent acquiring the surface texture, submitting and presenting, this is
//! what the user waits for after a click.

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
    /// Marks the start of a frame. `at_once` says whether the previous frame asked for
    /// this one with no delay (only then does the interval time the previous frame);
    /// `what` files the interval.
    pub fn tick(&mut self, at_once: bool, what: Activity) {
        let now = Instant::now();
        if let (Some(last), true) = (self.last, at_once) {
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
