//! The frame gate: while the window draws a frame, training and the chat keep their next
//! submit out of the device's queue.
//!
//! On lavapipe one queue runs everything in order, so a frame's draw waits for every
//! command buffer submitted before it. Training submits in parts (`Gpu::set_submit_limit`)
//! and passes this gate before each part (`Gpu::set_submit_gate`); each frame opens a
//! hold of about one frame's length, so the frame waits for at most the one part already
//! running, not for the next ones as well. The hold is a time, not a signal from the
//! presentation, because eframe gives the app no hook after it presents; it is sized
//! from the measured frame times and capped, so training never stalls for long.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a frame may hold the queue back.
pub const MAX_HOLD: Duration = Duration::from_millis(150);

/// Until when submits wait.
#[derive(Default)]
pub struct FrameGate {
    until: Mutex<Option<Instant>>,
}

impl FrameGate {
    /// A frame starts now and expects to take `hold` (capped at [`MAX_HOLD`]).
    pub fn frame_started(&self, hold: Duration) {
        let until = Instant::now() + hold.min(MAX_HOLD);
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    /// Blocks the calling (worker) thread until the current frame's hold has passed.
    pub fn pass(&self) {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                std::thread::sleep(t - now);
            }
        }
    }
}
