//! The epoch clock that bounds guest calls.
//!
//! Guest code runs under wasmtime's epoch interruption: each call gets a
//! deadline some ticks ahead, and a thread advances the engine's epoch every
//! [`TICK`]. A thread waking 200 times a second costs CPU and wake-ups on a
//! gateway with nothing to do, so the clock parks once no guest code has run
//! for [`IDLE_TICKS`] ticks, and the next guest call wakes it. A call that
//! starts while the clock is parked counts its deadline from then: nothing
//! is lost, because no guest code runs while the epoch stands still.
//!
//! Under load the clock never parks, and starting a call costs two atomic
//! operations; only a call that finds the clock parked makes a system call,
//! to wake it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use wasmtime::Engine;

use super::Counted;

/// How often the epoch advances while guest code may run.
pub(super) const TICK: Duration = Duration::from_millis(5);

/// Ticks without a guest call after which the clock parks (one second).
const IDLE_TICKS: u32 = 200;

pub(super) struct Clock {
    /// Guest calls running now.
    running: AtomicUsize,
    /// A guest call started since the clock last looked.
    started: AtomicBool,
    /// The clock's thread is parked, or about to park.
    parked: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Clock {
    /// Start the clock's thread for `engine`.
    pub(super) fn start(engine: Engine) -> anyhow::Result<Arc<Self>> {
        let clock = Arc::new(Self {
            running: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let handle = std::thread::Builder::new()
            .name("transit-epoch".into())
            .spawn({
                let clock = clock.clone();
                move || clock.run(&engine)
            })
            .context("starting the epoch ticker")?;
        // Set before any instance exists, so before any call can look.
        let _ = clock.thread.set(handle.thread().clone());
        Ok(clock)
    }

    fn run(&self, engine: &Engine) {
        let mut idle = 0;
        while !self.stop.load(Ordering::Relaxed) {
            if idle >= IDLE_TICKS {
                // Announce the park, then look once more: a call starting
                // now either is seen here or sees `parked` and wakes us
                // (an unpark before the park makes it return at once).
                self.parked.store(true, Ordering::SeqCst);
                if self.running.load(Ordering::SeqCst) == 0
                    && !self.started.swap(false, Ordering::SeqCst)
                {
                    std::thread::park();
                }
                self.parked.store(false, Ordering::SeqCst);
                idle = 0;
                continue;
            }
            std::thread::sleep(TICK);
            engine.increment_epoch();
            let active = self.running.load(Ordering::Relaxed) > 0
                || self.started.swap(false, Ordering::Relaxed);
            idle = if active { 0 } else { idle + 1 };
        }
    }

    /// Mark a guest call running until the guard is dropped.
    pub(super) fn call(&self) -> Counted<'_> {
        let running = Counted::new(&self.running);
        // A plain load first: most calls find the flag already set.
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Relaxed);
        }
        if running.before == 0 && self.parked.load(Ordering::SeqCst) {
            self.wake();
        }
        running
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Stop the clock's thread (it exits within a tick).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
    }

    #[cfg(test)]
    fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// With nothing running the clock parks and the epoch stands still; a
    /// call wakes it and the epoch moves again while the call runs, however
    /// long.
    #[test]
    fn parks_when_idle_and_ticks_while_a_call_runs() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let clock = Clock::start(engine).unwrap();
        wait_until("the idle clock parks", || clock.is_parked());
        std::thread::sleep(TICK * 4);
        assert!(clock.is_parked(), "stays parked");

        let running = clock.call();
        wait_until("a call wakes the clock", || !clock.is_parked());
        // Longer than the idle spell that parks the clock: a long call
        // keeps it ticking.
        std::thread::sleep(TICK * (IDLE_TICKS + 40));
        assert!(!clock.is_parked(), "parked while a call ran");
        drop(running);
        wait_until("parks again once the call ended", || clock.is_parked());
        clock.stop();
    }
}
