//! Progress and cancellation shared by a running kernel and the thread waiting for it.
//!
//! The binding layer (`bindings::run_controlled`) runs a long kernel on the pool while
//! the calling thread wakes every few tens of milliseconds to run Python's signal
//! handlers (Ctrl-C) and the progress callback. The kernel counts its steps here
//! (Lloyd iterations, K-Center picks) and checks [`Control::check`] between them and
//! between row blocks, so a cancel stops it within one block. A check is one relaxed
//! atomic load: the results and the speed do not change.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::errors::{KernelError, KernelResult};

/// A kernel's step counter and cancel flag.
#[derive(Debug, Default)]
pub struct Control {
    cancelled: AtomicBool,
    done: AtomicUsize,
    finished: AtomicBool,
}

/// The control of calls that nobody watches: never cancelled.
pub static NEVER: Control = Control::new();

impl Control {
    pub const fn new() -> Self {
        Control {
            cancelled: AtomicBool::new(false),
            done: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
        }
    }

    /// Ask the kernel to stop at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once cancelled: the kernel returns it instead of a result.
    pub fn check(&self) -> KernelResult<()> {
        if self.is_cancelled() {
            Err(KernelError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// One more step done (a Lloyd iteration, a pick).
    pub fn step(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Steps done so far.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// The kernel has returned (or panicked): set by the binding layer.
    pub fn set_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cancels() {
        let c = Control::new();
        assert!(c.check().is_ok());
        c.step();
        c.step();
        assert_eq!(c.done(), 2);
        c.cancel();
        assert_eq!(c.check(), Err(KernelError::Interrupted));
        assert!(NEVER.check().is_ok());
    }
}
