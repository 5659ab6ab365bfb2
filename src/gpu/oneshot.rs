//! A callback's result as a future. wgpu reports a mapped buffer or finished queue work
//! through callbacks; in the browser they fire from the event loop, which a blocked
//! caller would never give back, so async callers await this instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// The callback's end: [`Sender::send`] once.
pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);

/// The awaiting end: ready with the value once it is sent.
pub(crate) struct Receiver<T>(Arc<Mutex<Slot<T>>>);

/// A sender and its receiver.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    pub(crate) fn send(self, value: T) {
        let waker = {
            let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
            slot.value = Some(value);
            slot.waker.take()
        };
        // Woken outside the lock: the executor may poll the receiver at once.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
