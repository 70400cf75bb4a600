//! Turning usage into quota, and recording it.
//!
//! Quota is an integer number of units. Until per-model pricing lands, a
//! call costs one unit per prompt or completion token (cached prompt tokens
//! included); every charge flows through [`quota_for`], so pricing changes in
//! one place.

use tokio_util::task::TaskTracker;

use crate::adapters::Usage;
use crate::store::{ConsumeLog, Db};

/// The quota a call with `usage` costs.
pub fn quota_for(_model: &str, usage: &Usage) -> i64 {
    let units: u64 = usage.units.iter().map(|(_, n)| *n).sum();
    let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
    i64::try_from(tokens.saturating_add(units)).unwrap_or(i64::MAX)
}

/// A token count for text the upstream did not count for us: about four
/// bytes of UTF-8 per token, the usual figure for English, rounded up.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Writes log rows and quota movements off the request path. Writes in
/// flight are tracked so a graceful shutdown waits for them.
#[derive(Clone)]
pub struct Recorder {
    db: Db,
    tracker: TaskTracker,
}

impl Recorder {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            tracker: TaskTracker::new(),
        }
    }

    pub fn record(&self, log: ConsumeLog) {
        let db = self.db.clone();
        self.tracker.spawn(async move {
            if let Err(e) = db.record_consumption(&log).await {
                tracing::error!(error = %e, request_id = %log.request_id, quota = log.quota, user = log.user_id, "recording usage failed");
            }
        });
    }

    /// Wait for every write started so far.
    pub async fn flush(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_tokens_and_units() {
        let mut u = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 2,
            units: vec![],
        };
        assert_eq!(quota_for("m", &u), 15);
        u.units.push(("images".into(), 2));
        assert_eq!(quota_for("m", &u), 17);
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(9), 3);
    }
}
