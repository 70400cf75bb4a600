//! The crash-loop guard: an adapter that keeps failing (traps, deadlines,
//! memory) is taken out of rotation for a while instead of being retried
//! forever; the channels it serves are skipped and the monitor shows it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Failures within `WINDOW` that trip the guard.
const TRIP_AFTER: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// How long a tripped adapter stays out of rotation (then it is tried again).
const COOL_DOWN_SECS: i64 = 30;

#[derive(Default)]
pub struct Health {
    failures: Mutex<VecDeque<Instant>>,
    /// Unix seconds until which the adapter is out of rotation (0: healthy).
    unhealthy_until: AtomicI64,
}

impl Health {
    /// Record a failure; `true` if this one tripped the guard.
    pub fn record_failure(&self) -> bool {
        let now = Instant::now();
        let Ok(mut f) = self.failures.lock() else {
            return false;
        };
        f.push_back(now);
        while f.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
            f.pop_front();
        }
        if f.len() >= TRIP_AFTER && self.is_healthy() {
            f.clear();
            self.unhealthy_until
                .store(crate::store::now() + COOL_DOWN_SECS, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn is_healthy(&self) -> bool {
        self.unhealthy_until.load(Ordering::Relaxed) <= crate::store::now()
    }

    /// Unix seconds until which the adapter is out of rotation, if it is.
    pub fn unhealthy_until(&self) -> Option<i64> {
        let t = self.unhealthy_until.load(Ordering::Relaxed);
        (t > crate::store::now()).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_repeated_failures() {
        let h = Health::default();
        for _ in 0..TRIP_AFTER - 1 {
            assert!(!h.record_failure());
        }
        assert!(h.is_healthy());
        assert!(h.record_failure());
        assert!(!h.is_healthy());
        assert!(h.unhealthy_until().is_some());
    }
}
