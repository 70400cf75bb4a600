//! The in-process limiter: the same decisions as the Redis scripts, on this
//! instance's own counters. No lease is needed: the counters die with the
//! process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Bucket, Candidate, RateDecision, Required};

/// (minute since the epoch, calls, failures)
type MinuteStats = (u64, u64, u64);

#[derive(Default)]
pub(super) struct Local {
    slots: Mutex<HashMap<String, u32>>,
    /// Bucket name → theoretical arrival time, in ms since `epoch`.
    tats: Mutex<HashMap<String, f64>>,
    /// Channel → calls and failures per minute, for the last few minutes.
    stats: Mutex<HashMap<i64, Vec<MinuteStats>>>,
    epoch: std::sync::OnceLock<Instant>,
}

impl Local {
    /// Same contract as `lua/acquire.lua`.
    pub(super) fn acquire(
        &self,
        prefix: &str,
        required: &[Required],
        candidates: &[Candidate],
        roll: f64,
    ) -> i64 {
        let Ok(mut slots) = self.slots.lock() else {
            return 0;
        };
        for (i, r) in required.iter().enumerate() {
            if slots.get(&r.name).copied().unwrap_or(0) >= r.limit {
                return -(i as i64) - 1;
            }
        }
        let take = |slots: &mut HashMap<String, u32>, name: &str| {
            *slots.entry(name.to_owned()).or_insert(0) += 1;
        };
        if candidates.is_empty() {
            for r in required {
                take(&mut slots, &r.name);
            }
            return 1;
        }
        let mut weights: Vec<(usize, f64)> = Vec::new();
        let mut tier = None;
        for (i, c) in candidates.iter().enumerate() {
            if tier.is_some_and(|t| t != c.tier) && !weights.is_empty() {
                break;
            }
            tier = Some(c.tier);
            let used = slots.get(&c.slot_key(prefix)).copied().unwrap_or(0);
            if used < c.limit {
                let free = f64::from(c.limit - used);
                weights.push((
                    i,
                    f64::from(c.weight).max(0.001) * free / f64::from(c.limit),
                ));
            }
        }
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return 0;
        }
        let mut target = roll * total;
        let mut chosen = weights[weights.len() - 1].0;
        for (i, w) in &weights {
            target -= w;
            if target < 0.0 {
                chosen = *i;
                break;
            }
        }
        for r in required {
            take(&mut slots, &r.name);
        }
        take(&mut slots, &candidates[chosen].slot_key(prefix));
        chosen as i64 + 1
    }

    pub(super) fn release(&self, keys: &[String]) {
        if let Ok(mut slots) = self.slots.lock() {
            for k in keys {
                if let Some(n) = slots.get_mut(k) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        slots.remove(k);
                    }
                }
            }
        }
    }

    pub(super) fn count(&self, keys: &[String]) -> Vec<u64> {
        let slots = self.slots.lock().ok();
        keys.iter()
            .map(|k| {
                slots
                    .as_ref()
                    .and_then(|s| s.get(k))
                    .copied()
                    .map_or(0, u64::from)
            })
            .collect()
    }

    fn now_ms(&self) -> f64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
    }

    /// Same contract as `lua/rate.lua`.
    pub(super) fn rate(&self, buckets: &[Bucket]) -> RateDecision {
        let now = self.now_ms();
        let Ok(mut tats) = self.tats.lock() else {
            return RateDecision {
                allowed: true,
                retry_after: Duration::ZERO,
                buckets: Vec::new(),
            };
        };
        let mut retry: f64 = 0.0;
        let mut cells = Vec::with_capacity(buckets.len());
        for b in buckets {
            let window = b.window.as_secs_f64() * 1000.0;
            let interval = window / b.limit.max(1) as f64;
            let cost = b.cost.min(b.limit) as f64;
            let tat = tats.get(&b.name).copied().unwrap_or(now).max(now);
            let new_tat = tat + interval * cost;
            let allow_at = new_tat - window;
            // A microsecond of slack: `now + w - w` need not equal `now` in
            // floating point.
            if allow_at - now > 0.001 {
                retry = retry.max(allow_at - now);
            }
            cells.push((tat, new_tat, interval, window));
        }
        let allowed = retry <= 0.0;
        let mut out = Vec::with_capacity(buckets.len());
        for (b, (tat, new_tat, interval, window)) in buckets.iter().zip(cells) {
            let effective = if allowed {
                tats.insert(b.name.clone(), new_tat);
                new_tat
            } else {
                tat
            };
            let remaining = ((window - (effective - now)) / interval).floor().max(0.0) as u64;
            let reset = Duration::from_secs_f64(((effective - now).max(0.0)) / 1000.0);
            out.push((remaining, reset));
        }
        if tats.len() > 100_000 {
            // Old cells are harmless but unbounded: drop the ones in the past.
            tats.retain(|_, t| *t > now);
        }
        RateDecision {
            allowed,
            retry_after: Duration::from_secs_f64(retry.max(0.0) / 1000.0),
            buckets: out,
        }
    }

    pub(super) fn record(&self, channel: i64, failed: bool) {
        let minute = crate::store::now().max(0) as u64 / 60;
        if let Ok(mut stats) = self.stats.lock() {
            let entry = stats.entry(channel).or_default();
            entry.retain(|(m, _, _)| *m + 5 > minute);
            match entry.iter_mut().find(|(m, _, _)| *m == minute) {
                Some((_, calls, fails)) => {
                    *calls += 1;
                    *fails += u64::from(failed);
                }
                None => entry.push((minute, 1, u64::from(failed))),
            }
        }
    }

    pub(super) fn stats(&self, channels: &[i64]) -> HashMap<i64, (u64, u64)> {
        let minute = crate::store::now().max(0) as u64 / 60;
        let stats = self.stats.lock().ok();
        channels
            .iter()
            .map(|c| {
                let (calls, fails) = stats
                    .as_ref()
                    .and_then(|s| s.get(c))
                    .map(|v| {
                        v.iter()
                            .filter(|(m, _, _)| *m + 5 > minute)
                            .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y))
                    })
                    .unwrap_or((0, 0));
                (*c, (calls, fails))
            })
            .collect()
    }
}
