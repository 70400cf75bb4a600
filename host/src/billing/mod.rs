//! Billing: the price list, holds placed before a call, and settlement after.
//!
//! Per call:
//! 1. **Hold.** The estimate (prompt tokens counted with a tokenizer, plus
//!    `max_tokens` or `billing.default_max_tokens`, at the model's price) is
//!    taken from the user's balance and the token's remaining quota in one
//!    conditional update that refuses to overdraw, and recorded in the
//!    `holds` table. If it does not fit, the call is refused with
//!    `insufficient_quota` and nothing changes.
//! 2. **Settle.** When the call ends, the hold is deleted (only the call that
//!    deletes it moves money, so settling twice changes nothing), refunded,
//!    and the actual cost charged — never more than the balance the hold
//!    left plus the hold, so no balance goes below zero — with the log row,
//!    in one transaction. A call that failed before producing output costs
//!    nothing.
//! 3. **Recover.** Each instance renews the lease of the holds it owns. A
//!    hold whose lease ran out belongs to an instance that stopped without
//!    settling; any instance settles it, charging the prompt only.

mod bpe;
pub mod pricing;
pub mod tokens;
mod vocab_table;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::adapters::Usage;
use crate::auth::Caller;
use crate::error::{ErrorKind, GatewayError};
use crate::store::{ConsumeLog, Db, HoldRow, LedgerEntry, LineCharge, NewHold, Settlement, now};
pub use pricing::{PriceSnapshot, Pricing, Ratio};

const PRICING_KEY: &str = "pricing";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Quota units per unit of currency (US dollar).
    pub quota_per_usd: u64,
    /// Output tokens assumed for the hold when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// How long a hold outlives its instance's last sign of life before
    /// another instance settles it.
    pub hold_lease_secs: u64,
    /// Credit lines (0: off). When set, the first call of a key reserves
    /// this many times its estimate in one database hold, and the key's
    /// following calls on this instance draw on it in memory: no database
    /// round trip before the upstream call, and the charges are written in
    /// batches. A line is closed (its rest refunded) after
    /// `credit_line_idle_secs` without calls, on shutdown, or, if its
    /// instance dies, by the recovery sweep — which then forgives the calls
    /// that were in flight instead of billing their prompts.
    pub credit_line_calls: u64,
    /// A credit line unused this long is closed.
    pub credit_line_idle_secs: u64,
    /// Ledger entries this instance keeps in memory unwritten (queued for
    /// the writer, or waiting on the dead-letter list while the database
    /// refuses them) before it answers new calls with 503: usage that
    /// cannot be recorded is not served, and the backlog cannot grow
    /// without bound.
    pub max_unwritten: u64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            quota_per_usd: 500_000,
            default_max_tokens: 1024,
            hold_lease_secs: 60,
            credit_line_calls: 0,
            credit_line_idle_secs: 10,
            max_unwritten: 100_000,
        }
    }
}

/// The billing service of one instance.
pub struct Billing {
    db: Db,
    pricing: ArcSwap<Pricing>,
    pricing_version: std::sync::Mutex<String>,
    pub config: BillingConfig,
    /// This instance's name on the holds it places.
    instance: String,
    /// Entries waiting for the ledger writer, and how many were queued /
    /// written so far (for [`Billing::flush`]).
    ledger: mpsc::UnboundedSender<LedgerEntry>,
    queued: AtomicU64,
    written: watch::Receiver<u64>,
    /// Entries the writer could not write, retried by the maintenance
    /// sweep (oldest first).
    dead_letters: Arc<std::sync::Mutex<Vec<LedgerEntry>>>,
    /// Open credit lines, by token.
    lines: std::sync::Mutex<HashMap<i64, Arc<Line>>>,
    /// Keys whose balance could not cover a line, and until when none is
    /// tried again for them (their calls hold one by one meanwhile).
    no_line_until: std::sync::Mutex<HashMap<i64, Instant>>,
    /// One line opening per key at a time: the calls that find a key's line
    /// dry wait for the one opening its next line instead of each placing
    /// a hold of their own (a herd of line-sized holds, all contending for
    /// the database at once).
    line_gates: std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Set at shutdown: no line is opened any more.
    stopping: std::sync::atomic::AtomicBool,
    /// Cancelled when a shutdown's grace period is over and what is still
    /// in flight is cut: the calls it ends are logged as cut, not as left
    /// by their clients.
    cut: tokio_util::sync::CancellationToken,
    /// Credit lines opened since start.
    lines_opened: AtomicU64,
    /// Line openings under way (shutdown waits for them).
    openings: std::sync::atomic::AtomicUsize,
}

/// A credit line: quota reserved for one key by one database hold, drawn
/// on by the key's calls in memory.
struct Line {
    hold_id: String,
    user_id: i64,
    token_id: i64,
    /// Below this much left, the key's next line is opened (0: never; a
    /// line of a few calls is not worth opening twice).
    refill_below: i64,
    state: std::sync::Mutex<LineState>,
}

struct LineState {
    /// Reserved and not drawn.
    available: i64,
    /// Calls drawn on the line and not yet settled.
    open_calls: u32,
    /// No longer drawn on; released when its last call settles.
    closed: bool,
    released: bool,
    last_used: Instant,
    /// The key's next line is being (or was) opened ahead of this one
    /// running dry.
    refilling: bool,
}

/// How a draw on a credit line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Draw {
    /// The line is closed or lacks the amount.
    Refused,
    Drawn,
    /// Drawn, and the line is now low: the caller opens the next one in the
    /// background, so the key's calls find it ready instead of waiting.
    DrawnLow,
}

impl Line {
    /// Draw `amount` for a call, if the line is open and has it.
    fn draw(&self, amount: i64) -> Draw {
        let Ok(mut st) = self.state.lock() else {
            return Draw::Refused;
        };
        if st.closed || st.available < amount {
            return Draw::Refused;
        }
        st.available -= amount;
        st.open_calls += 1;
        st.last_used = Instant::now();
        if !st.refilling && st.available < self.refill_below {
            st.refilling = true;
            return Draw::DrawnLow;
        }
        Draw::Drawn
    }

    /// Settle a call that drew `reserved` and cost `log`'s call `cost`:
    /// the line gives back what was not used, or tops up an overrun as far
    /// as it can (the ledger takes the rest from the balance). The charge —
    /// and the line's release, if this was its last call — are queued under
    /// the line's lock, so a release is never written before a charge.
    fn settle(&self, billing: &Billing, reserved: i64, cost: i64, charge: LineCharge) {
        let cost = cost.max(0);
        let Ok(mut st) = self.state.lock() else {
            billing.queue(LedgerEntry::LineCharge(LineCharge {
                from_line: reserved.min(cost),
                ..charge
            }));
            return;
        };
        st.open_calls = st.open_calls.saturating_sub(1);
        st.last_used = Instant::now();
        let from_line = if cost > reserved {
            let extra = (cost - reserved).min(st.available.max(0));
            st.available -= extra;
            reserved + extra
        } else {
            st.available += reserved - cost;
            cost
        };
        billing.queue(LedgerEntry::LineCharge(LineCharge {
            from_line,
            ..charge
        }));
        if self.release_if_done(&mut st) {
            billing.queue(self.release_entry());
        }
    }

    /// Close the line; its release is queued now if no call is left on it
    /// (else by its last call). `true` if it was queued now.
    fn close(&self, billing: &Billing) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        st.closed = true;
        if self.release_if_done(&mut st) {
            billing.queue(self.release_entry());
            return true;
        }
        false
    }

    fn release_if_done(&self, st: &mut LineState) -> bool {
        if st.closed && st.open_calls == 0 && !st.released {
            st.released = true;
            return true;
        }
        false
    }

    fn idle_for(&self) -> Option<Duration> {
        let st = self.state.lock().ok()?;
        (st.open_calls == 0).then(|| st.last_used.elapsed())
    }

    fn release_entry(&self) -> LedgerEntry {
        LedgerEntry::LineRelease {
            line: self.hold_id.clone(),
            user_id: self.user_id,
            token_id: self.token_id,
        }
    }
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("instance", &self.instance)
            .finish()
    }
}

/// What a call is, for its hold.
pub struct HoldRequest<'a> {
    pub caller: &'a Caller,
    pub model: &'a str,
    pub prompt_tokens: u64,
    pub max_output_tokens: Option<u64>,
    pub request_id: &'a str,
    pub client_ip: &'a str,
    pub stream: bool,
    pub started: Instant,
    /// Per-call units the request asks for (`("images", 4)`), priced by
    /// models with a per-call price.
    pub units: &'a [(String, u64)],
}

/// How a call ended.
pub enum Outcome {
    /// The upstream answered; `usage` is what it reported or what was counted.
    Served {
        channel_id: i64,
        usage: Usage,
        first_token: Option<Duration>,
        note: String,
    },
    /// No output was produced: the whole hold goes back.
    Failed {
        channel_id: i64,
        status: u16,
        message: String,
    },
}

/// Quota held for one call. Settle it with [`Hold::settle`]; a hold dropped
/// unsettled (the client went away while the upstream worked) is settled
/// for its prompt if the upstream was reached, refunded otherwise.
pub struct Hold {
    billing: Arc<Billing>,
    pub id: String,
    pub amount: i64,
    pub price: PriceSnapshot,
    pub prompt_tokens: u64,
    user_id: i64,
    token_id: i64,
    model: String,
    request_id: String,
    client_ip: String,
    stream: bool,
    started: Instant,
    upstream_reached: Option<i64>,
    settled: bool,
    /// The credit line this call drew on, if any.
    line: Option<Arc<Line>>,
}

impl Billing {
    /// `cut` is the gateway's shutdown cut (see [`crate::AppState`]).
    pub async fn load(
        db: Db,
        config: BillingConfig,
        cut: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let (ledger, queue) = mpsc::unbounded_channel();
        let (written_tx, written) = watch::channel(0);
        let dead_letters = Arc::new(std::sync::Mutex::new(Vec::new()));
        tokio::spawn(write_ledger(
            db.clone(),
            queue,
            written_tx,
            dead_letters.clone(),
        ));
        let billing = Arc::new(Self {
            db,
            pricing: ArcSwap::from_pointee(Pricing::default()),
            pricing_version: std::sync::Mutex::new(String::new()),
            config,
            instance: uuid::Uuid::new_v4().to_string(),
            ledger,
            queued: AtomicU64::new(0),
            written,
            dead_letters,
            lines: std::sync::Mutex::new(HashMap::new()),
            no_line_until: std::sync::Mutex::new(HashMap::new()),
            line_gates: std::sync::Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            cut,
            lines_opened: AtomicU64::new(0),
            openings: std::sync::atomic::AtomicUsize::new(0),
        });
        billing.refresh_pricing().await?;
        tokio::task::spawn_blocking(tokens::warm_up);
        Ok(billing)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn pricing(&self) -> Arc<Pricing> {
        self.pricing.load_full()
    }

    /// Replace the price list, for every instance.
    pub async fn set_pricing(&self, pricing: Pricing) -> anyhow::Result<()> {
        let json = serde_json::to_string(&pricing)?;
        let version = self.db.set_versioned_option(PRICING_KEY, &json).await?;
        self.pricing.store(Arc::new(pricing));
        if let Ok(mut v) = self.pricing_version.lock() {
            *v = version;
        }
        Ok(())
    }

    /// Load the price list if another instance changed it.
    pub async fn refresh_pricing(&self) -> anyhow::Result<()> {
        let known = self
            .pricing_version
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let Some((version, json)) = self
            .db
            .versioned_option_if_changed(PRICING_KEY, &known)
            .await?
        else {
            return Ok(());
        };
        let pricing: Pricing = serde_json::from_str(&json)
            .map_err(|e| anyhow::anyhow!("the stored price list is invalid: {e}"))?;
        self.pricing.store(Arc::new(pricing));
        if let Ok(mut v) = self.pricing_version.lock() {
            *v = version;
        }
        Ok(())
    }

    /// The price of a call, or an error if the model has none. `variant`:
    /// the request's price variant keys, most specific first.
    pub fn quote(
        &self,
        model: &str,
        group: &str,
        variant: &[String],
    ) -> Result<PriceSnapshot, GatewayError> {
        self.pricing
            .load()
            .quote(model, group, self.config.quota_per_usd, variant)
            .ok_or_else(|| {
                GatewayError::forbidden(format!(
                    "The model `{model}` has no price on this gateway; ask the operator to set one."
                ))
                .with_code("model_not_priced")
            })
    }

    /// Place the hold for a call.
    pub async fn hold(
        self: &Arc<Self>,
        req: HoldRequest<'_>,
        price: PriceSnapshot,
    ) -> Result<Hold, GatewayError> {
        let unwritten = self.unwritten();
        if unwritten >= self.config.max_unwritten {
            return Err(GatewayError::unavailable(format!(
                "This gateway cannot record usage right now ({unwritten} usage records are waiting for its database), so it takes no new calls; try again shortly."
            ))
            .with_code("usage_backlog")
            .with_retry_after(Some(5)));
        }
        let max_out = req
            .max_output_tokens
            .unwrap_or(self.config.default_max_tokens);
        let amount = price.cost(&Usage {
            input_tokens: req.prompt_tokens,
            output_tokens: max_out,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            units: req.units.to_vec(),
        });
        if self.config.credit_line_calls > 0 {
            let (user_id, token_id) = (req.caller.user_id, req.caller.token_id);
            let line = match self.draw_line(user_id, token_id, amount) {
                Some(line) => Some(line),
                None if self.may_open_line(token_id) => {
                    self.draw_or_open_line(user_id, token_id, amount).await?
                }
                None => None,
            };
            if let Some(line) = line {
                return Ok(self.new_hold(&req, price, line.hold_id.clone(), amount, Some(line)));
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let placed = self
            .db
            .place_hold(&NewHold {
                id: id.clone(),
                user_id: req.caller.user_id,
                token_id: req.caller.token_id,
                amount,
                model: req.model.to_owned(),
                prompt_tokens: req.prompt_tokens as i64,
                price: serde_json::to_string(&price).unwrap_or_default(),
                request_id: req.request_id.to_owned(),
                client_ip: req.client_ip.to_owned(),
                is_stream: req.stream,
                instance: self.instance.clone(),
                lease_until: now() + self.config.hold_lease_secs as i64,
            })
            .await?;
        if !placed {
            return Err(GatewayError::new(
                ErrorKind::InsufficientQuota,
                format!(
                    "You exceeded your current quota: this call needs up to {amount} units \
                     ({} prompt + {max_out} output tokens of `{}`).",
                    req.prompt_tokens, req.model
                ),
            )
            .with_code("insufficient_quota"));
        }
        Ok(self.new_hold(&req, price, id, amount, None))
    }

    fn new_hold(
        self: &Arc<Self>,
        req: &HoldRequest<'_>,
        price: PriceSnapshot,
        id: String,
        amount: i64,
        line: Option<Arc<Line>>,
    ) -> Hold {
        Hold {
            billing: self.clone(),
            id,
            amount,
            price,
            prompt_tokens: req.prompt_tokens,
            user_id: req.caller.user_id,
            token_id: req.caller.token_id,
            model: req.model.to_owned(),
            request_id: req.request_id.to_owned(),
            client_ip: req.client_ip.to_owned(),
            stream: req.stream,
            started: req.started,
            upstream_reached: None,
            settled: false,
            line,
        }
    }

    /// Draw on the key's open credit line, if it has room. A draw that
    /// leaves the line low opens the key's next line in the background.
    fn draw_line(self: &Arc<Self>, user_id: i64, token_id: i64, amount: i64) -> Option<Arc<Line>> {
        let line = self.lines.lock().ok()?.get(&token_id)?.clone();
        let draw = line.draw(amount);
        self.after_draw(line, draw, user_id, token_id, amount)
    }

    /// The line if `draw` took from it; a draw that left it low opens the
    /// key's next line in the background.
    fn after_draw(
        self: &Arc<Self>,
        line: Arc<Line>,
        draw: Draw,
        user_id: i64,
        token_id: i64,
        amount: i64,
    ) -> Option<Arc<Line>> {
        match draw {
            Draw::Refused => None,
            Draw::Drawn => Some(line),
            Draw::DrawnLow => {
                let billing = self.clone();
                let low = line.clone();
                tokio::spawn(async move {
                    billing.refill_line(user_id, token_id, amount, low).await;
                });
                Some(line)
            }
        }
    }

    /// No line for the key for a while: its balance could not cover one,
    /// or opening one failed (the calls waiting at its gate then fall back
    /// to holds of their own at once instead of retrying in turn).
    fn back_off_lines(&self, token_id: i64) {
        if let Ok(mut backoff) = self.no_line_until.lock() {
            backoff.insert(token_id, Instant::now() + LINE_BACKOFF);
        }
    }

    /// The gate a key's line openings pass one at a time.
    fn line_gate(&self, token_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        match self.line_gates.lock() {
            Ok(mut gates) => gates.entry(token_id).or_default().clone(),
            // A poisoned map only costs the single flight.
            Err(_) => Arc::default(),
        }
    }

    /// A line with `amount` drawn for the call: the one another call opened
    /// while this one waited at the key's gate, or a new one. `None` if the
    /// balance cannot cover a line (the call then takes a hold of its own).
    async fn draw_or_open_line(
        self: &Arc<Self>,
        user_id: i64,
        token_id: i64,
        amount: i64,
    ) -> Result<Option<Arc<Line>>, GatewayError> {
        let gate = self.line_gate(token_id);
        let _opening = gate.lock().await;
        if let Some(line) = self.draw_line(user_id, token_id, amount) {
            return Ok(Some(line));
        }
        if !self.may_open_line(token_id) {
            return Ok(None);
        }
        // In a task of its own: a call cancelled (its client gone) after
        // the hold is placed but before the line is listed would leave a
        // hold that this instance renews and never releases.
        let billing = self.clone();
        let opened =
            tokio::spawn(async move { billing.open_line(user_id, token_id, amount).await })
                .await
                .unwrap_or_else(|_| {
                    Err(GatewayError::internal(
                        "opening a credit line was interrupted",
                    ))
                });
        let line = match opened {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.back_off_lines(token_id);
                return Err(e);
            }
        };
        let draw = line.draw(amount);
        Ok(self.after_draw(line, draw, user_id, token_id, amount))
    }

    /// Open the key's next line before `low` runs dry, unless another call
    /// replaced it meanwhile. Calls go on drawing on `low` until the new
    /// line is in place; its rest is then refunded.
    async fn refill_line(
        self: Arc<Self>,
        user_id: i64,
        token_id: i64,
        amount: i64,
        low: Arc<Line>,
    ) {
        let gate = self.line_gate(token_id);
        let _opening = gate.lock().await;
        let current = self
            .lines
            .lock()
            .ok()
            .and_then(|lines| lines.get(&token_id).cloned());
        if !current.is_some_and(|c| Arc::ptr_eq(&c, &low)) || !self.may_open_line(token_id) {
            return;
        }
        if let Err(e) = self.open_line(user_id, token_id, amount).await {
            self.back_off_lines(token_id);
            tracing::warn!(error = %e, "opening a key's next credit line failed; its calls hold one by one when the current one runs dry");
        }
    }

    /// Open a credit line for the key (replacing its current one, which is
    /// closed); `None` if the balance cannot cover it.
    async fn open_line(
        &self,
        user_id: i64,
        token_id: i64,
        amount: i64,
    ) -> Result<Option<Arc<Line>>, GatewayError> {
        self.openings.fetch_add(1, Ordering::SeqCst);
        let opened = self.open_line_counted(user_id, token_id, amount).await;
        self.openings.fetch_sub(1, Ordering::SeqCst);
        opened
    }

    async fn open_line_counted(
        &self,
        user_id: i64,
        token_id: i64,
        amount: i64,
    ) -> Result<Option<Arc<Line>>, GatewayError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let calls = i64::try_from(self.config.credit_line_calls).unwrap_or(i64::MAX);
        let size = amount.max(1).saturating_mul(calls);
        let id = uuid::Uuid::new_v4().to_string();
        let placed = self
            .db
            .place_hold(&NewHold {
                id: id.clone(),
                user_id,
                token_id,
                amount: size,
                model: String::new(),
                prompt_tokens: 0,
                price: String::new(),
                request_id: format!("{LINE_PREFIX}{token_id}"),
                client_ip: String::new(),
                is_stream: false,
                instance: self.instance.clone(),
                lease_until: now() + self.config.hold_lease_secs as i64,
            })
            .await?;
        if !placed {
            // Not again for this key until a line has had time to become
            // affordable (a top-up, or its calls settling).
            self.back_off_lines(token_id);
            return Ok(None);
        }
        self.lines_opened.fetch_add(1, Ordering::Relaxed);
        let line = Arc::new(Line {
            hold_id: id,
            user_id,
            token_id,
            refill_below: if calls >= 2 * REFILL_BELOW {
                size / REFILL_BELOW
            } else {
                0
            },
            state: std::sync::Mutex::new(LineState {
                available: size,
                open_calls: 0,
                closed: false,
                released: false,
                last_used: Instant::now(),
                refilling: false,
            }),
        });
        let replaced = match self.lines.lock() {
            Ok(mut lines) => lines.insert(token_id, line.clone()),
            Err(_) => None,
        };
        if let Some(old) = replaced {
            old.close(self);
        }
        // Shutdown began while the hold was placed: it may have closed the
        // lines before this one was listed, so this one closes itself.
        if self.stopping.load(Ordering::SeqCst) {
            if let Ok(mut lines) = self.lines.lock()
                && lines.get(&token_id).is_some_and(|l| Arc::ptr_eq(l, &line))
            {
                lines.remove(&token_id);
            }
            line.close(self);
            return Ok(None);
        }
        Ok(Some(line))
    }

    /// Whether a credit line may be opened for `token_id` now.
    fn may_open_line(&self, token_id: i64) -> bool {
        let Ok(mut backoff) = self.no_line_until.lock() else {
            return true;
        };
        match backoff.get(&token_id) {
            Some(until) if *until > Instant::now() => false,
            Some(_) => {
                backoff.remove(&token_id);
                true
            }
            None => true,
        }
    }

    /// Close the lines whose hold is no longer in the database: another
    /// instance took it back after this one failed to renew its lease in
    /// time. Calls stop drawing on them at once (the charges already
    /// queued are taken from the balance, as for any line that is gone).
    async fn close_lost_lines(&self) -> anyhow::Result<usize> {
        let open: Vec<(i64, Arc<Line>)> = match self.lines.lock() {
            Ok(lines) => lines.iter().map(|(t, l)| (*t, l.clone())).collect(),
            Err(_) => return Ok(0),
        };
        if open.is_empty() {
            return Ok(0);
        }
        let owned: std::collections::HashSet<String> = self
            .db
            .owned_holds(&self.instance)
            .await?
            .into_iter()
            .collect();
        let mut lost = 0;
        for (token_id, line) in open {
            if owned.contains(&line.hold_id) {
                continue;
            }
            tracing::warn!(
                token_id,
                "a credit line's hold was taken back by another instance: closing the line"
            );
            if let Ok(mut lines) = self.lines.lock()
                && lines.get(&token_id).is_some_and(|l| Arc::ptr_eq(l, &line))
            {
                lines.remove(&token_id);
            }
            line.close(self);
            lost += 1;
        }
        Ok(lost)
    }

    /// Try again the ledger entries the writer could not write, in order;
    /// those that still fail stay for the next sweep, and so do the later
    /// entries of the same credit line (a line's release must not overtake
    /// its charges). The pass stops at the first sign that the database is
    /// unreachable. How many entries are left.
    pub async fn retry_dead_letters(&self) -> usize {
        let pending = match self.dead_letters.lock() {
            Ok(mut dead) => std::mem::take(&mut *dead),
            Err(_) => return 0,
        };
        if pending.is_empty() {
            return 0;
        }
        let mut left = Vec::new();
        let mut stuck_lines: Vec<String> = Vec::new();
        let mut pending = pending.into_iter();
        while let Some(entry) = pending.next() {
            let line = line_of(&entry).map(str::to_owned);
            if line.as_ref().is_some_and(|l| stuck_lines.contains(l)) {
                left.push(entry);
                continue;
            }
            match self.db.write_entry(&entry).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a ledger entry still cannot be written; kept for the next sweep");
                    left.push(entry);
                    if unreachable(&e) {
                        left.extend(pending);
                        break;
                    }
                    stuck_lines.extend(line);
                }
            }
        }
        match self.dead_letters.lock() {
            Ok(mut dead) => {
                // Entries that failed meanwhile came after these.
                left.append(&mut dead);
                *dead = left;
                dead.len()
            }
            Err(_) => left.len(),
        }
    }

    /// How many credit lines this instance has opened since it started.
    pub fn lines_opened(&self) -> u64 {
        self.lines_opened.load(Ordering::Relaxed)
    }

    /// At shutdown: open no more lines and close every line (one with
    /// calls still open is released by its last call), after the openings
    /// under way (they close what they open); how many were released now.
    /// A [`Billing::flush`] after it writes the releases.
    pub async fn close_lines(&self) -> usize {
        self.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.openings.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let all: Vec<Arc<Line>> = match self.lines.lock() {
            Ok(mut lines) => lines.drain().map(|(_, line)| line).collect(),
            Err(_) => Vec::new(),
        };
        all.iter().filter(|line| line.close(self)).count()
    }

    /// Close credit lines unused for `idle` (all idle ones with
    /// `Duration::ZERO`), refunding their rest; how many were closed. Also
    /// forgets the gates of keys with no line and no opening under way, and
    /// backoffs that ran out.
    pub fn release_idle_lines(&self, idle: Duration) -> usize {
        let closing: Vec<Arc<Line>> = match self.lines.lock() {
            Ok(mut lines) => {
                let ids: Vec<i64> = lines
                    .iter()
                    .filter(|(_, l)| l.idle_for().is_some_and(|d| d >= idle))
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter().filter_map(|id| lines.remove(id)).collect()
            }
            Err(_) => Vec::new(),
        };
        let closed = closing.iter().filter(|line| line.close(self)).count();
        if let (Ok(lines), Ok(mut gates)) = (self.lines.lock(), self.line_gates.lock()) {
            gates.retain(|token, gate| lines.contains_key(token) || Arc::strong_count(gate) > 1);
        }
        if let Ok(mut backoff) = self.no_line_until.lock() {
            let now = Instant::now();
            backoff.retain(|_, until| *until > now);
        }
        closed
    }

    /// Wait until every settlement queued so far is written, or put on the
    /// dead-letter list because it could not be.
    pub async fn flush(&self) {
        let target = self.queued.load(Ordering::SeqCst);
        let mut written = self.written.clone();
        // An error means the writer stopped (the runtime is shutting down):
        // what it did not write stays in the holds table for recovery.
        let _ = written.wait_for(|n| *n >= target).await;
    }

    /// Ledger entries queued and not yet written, and those on the
    /// dead-letter list.
    fn unwritten(&self) -> u64 {
        let in_queue = self
            .queued
            .load(Ordering::SeqCst)
            .saturating_sub(*self.written.borrow());
        let dead = self.dead_letters.lock().map_or(0, |dead| dead.len());
        in_queue.saturating_add(dead as u64)
    }

    /// Queue an entry for the ledger writer. Never blocks, needs no
    /// runtime (it runs from `Drop`).
    fn queue(&self, entry: LedgerEntry) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.ledger.send(entry).is_err() {
            tracing::error!(
                "the ledger writer has stopped: the hold is left to the recovery sweep"
            );
        }
    }

    /// Renew this instance's leases and settle holds abandoned by others,
    /// every third of the lease; also pick up price list changes.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let billing = Arc::downgrade(self);
        let lease = self.config.hold_lease_secs.max(1);
        let every = Duration::from_millis((lease * 1000 / 3).clamp(200, 20_000));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(billing) = billing.upgrade() else {
                    return;
                };
                billing.maintain().await;
            }
        })
    }

    /// One maintenance pass (the sweep runs it every third of the lease).
    pub async fn maintain(&self) {
        // The leases first: nothing below may delay them.
        let lease_until = now() + self.config.hold_lease_secs as i64;
        if let Err(e) = self.db.renew_holds(&self.instance, lease_until).await {
            tracing::warn!(error = %e, "renewing hold leases failed");
        }
        self.retry_dead_letters().await;
        if self.config.credit_line_calls > 0 {
            self.release_idle_lines(Duration::from_secs(self.config.credit_line_idle_secs));
        }
        if let Err(e) = self.close_lost_lines().await {
            tracing::warn!(error = %e, "checking credit lines failed");
        }
        if let Err(e) = self
            .db
            .prune_ledger_marks(now() - LEDGER_MARK_KEEP_SECS)
            .await
        {
            tracing::warn!(error = %e, "pruning ledger marks failed");
        }
        match self.recover_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(holds = n, "settled holds left by a stopped instance"),
            Err(e) => tracing::warn!(error = %e, "recovering expired holds failed"),
        }
        if let Err(e) = self.refresh_pricing().await {
            tracing::warn!(error = %e, "checking for price changes failed");
        }
    }

    /// Settle every hold whose lease expired, charging its prompt.
    pub async fn recover_expired(&self) -> anyhow::Result<usize> {
        let mut settled = 0;
        loop {
            let batch = self.db.expired_holds(now(), 200).await?;
            if batch.is_empty() {
                return Ok(settled);
            }
            for hold in &batch {
                if self.db.settle_hold(&recovery(hold)).await?.is_some() {
                    settled += 1;
                }
            }
        }
    }
}

/// Entries queued together are written together.
const LEDGER_BATCH: usize = 256;

/// How long the ledger writer lets a batch gather before writing it. What
/// is queued lives in memory until written, so this is added to what a
/// crash can lose (see the README's Billing section: holds and lines in
/// the database are recovered either way).
const LEDGER_LINGER: Duration = Duration::from_millis(5);

/// A key's next credit line is opened once its current one has less than
/// this fraction (1/4) of its size left.
const REFILL_BELOW: i64 = 4;

/// How long a key whose balance could not cover a credit line goes without
/// trying to open one.
const LINE_BACKOFF: Duration = Duration::from_secs(5);

/// How long the mark of an applied ledger entry is kept: far longer than any
/// retry of that entry can come (retries live in memory, as long as their
/// process).
const LEDGER_MARK_KEEP_SECS: i64 = 24 * 3600;

/// Request id of a credit line's hold (followed by the token id).
const LINE_PREFIX: &str = "credit-line:";

/// The ledger writer: settles holds and credit-line charges in batches, one
/// transaction per batch (group commit: under load one commit carries many
/// calls; alone, a call is written at once). A batch that fails is retried
/// one entry at a time, so one bad row cannot hold up the rest; an entry
/// that still fails goes on the dead-letter list, which the maintenance
/// sweep retries. Retrying is safe: settlements and releases delete their
/// hold, and a line charge leaves a mark, so none is applied twice.
async fn write_ledger(
    db: Db,
    mut queue: mpsc::UnboundedReceiver<LedgerEntry>,
    written: watch::Sender<u64>,
    dead_letters: Arc<std::sync::Mutex<Vec<LedgerEntry>>>,
) {
    let mut batch = Vec::with_capacity(LEDGER_BATCH);
    let mut count = 0u64;
    while queue.recv_many(&mut batch, LEDGER_BATCH).await > 0 {
        // Let a batch gather for a moment: one commit then carries the
        // entries of a few milliseconds even at low concurrency, where each
        // would otherwise be a transaction of its own.
        if batch.len() < LEDGER_BATCH {
            tokio::time::sleep(LEDGER_LINGER).await;
            while batch.len() < LEDGER_BATCH {
                match queue.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        count += batch.len() as u64;
        wait_behind_dead_letters(&dead_letters, &mut batch);
        if !batch.is_empty()
            && let Err(e) = db.write_ledger(&batch).await
        {
            tracing::warn!(error = %e, entries = batch.len(), "writing a ledger batch failed; retrying one by one");
            for entry in batch.drain(..) {
                let behind = dead_letters
                    .lock()
                    .map(|dead| waits_behind(&dead, &entry))
                    .unwrap_or(false);
                if behind || !write_with_retries(&db, &entry).await {
                    tracing::error!(
                        "a ledger entry could not be written: kept for the maintenance sweep"
                    );
                    if let Ok(mut dead) = dead_letters.lock() {
                        dead.push(entry);
                    }
                }
            }
        }
        written.send_replace(count);
        batch.clear();
    }
}

/// The credit line an entry draws on or closes.
fn line_of(entry: &LedgerEntry) -> Option<&str> {
    match entry {
        LedgerEntry::LineCharge(c) => Some(&c.line),
        LedgerEntry::LineRelease { line, .. } => Some(line),
        LedgerEntry::Settle(_) => None,
    }
}

/// Whether `entry` must wait behind an entry of the same credit line on the
/// dead-letter list (a release written before a charge would refund what
/// the charge draws).
fn waits_behind(dead: &[LedgerEntry], entry: &LedgerEntry) -> bool {
    line_of(entry).is_some_and(|line| dead.iter().any(|d| line_of(d) == Some(line)))
}

/// Move the entries of `batch` that must wait behind a dead letter onto
/// the list, in order.
fn wait_behind_dead_letters(
    dead_letters: &std::sync::Mutex<Vec<LedgerEntry>>,
    batch: &mut Vec<LedgerEntry>,
) {
    let Ok(mut dead) = dead_letters.lock() else {
        return;
    };
    if dead.is_empty() {
        return;
    }
    let mut kept = Vec::with_capacity(batch.len());
    for entry in batch.drain(..) {
        if waits_behind(&dead, &entry) {
            dead.push(entry);
        } else {
            kept.push(entry);
        }
    }
    *batch = kept;
}

/// A failure that says the database cannot be reached at all (rather than
/// that this one entry was refused).
fn unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// Write one entry, trying a few times over a fraction of a second.
async fn write_with_retries(db: &Db, entry: &LedgerEntry) -> bool {
    const ATTEMPTS: u32 = 3;
    let mut delay = Duration::from_millis(20);
    for attempt in 1..=ATTEMPTS {
        match db.write_entry(entry).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(attempt, error = %e, "writing a ledger entry failed");
                if attempt < ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 5;
                }
            }
        }
    }
    false
}

fn recovery(hold: &HoldRow) -> Settlement {
    // A line is told apart by what no client can set: a call's hold always
    // carries its price snapshot (the request id alone is the client's).
    if hold.price.is_empty() && hold.request_id.starts_with(LINE_PREFIX) {
        // A credit line of a stopped instance: its rest goes back; the calls
        // it had in flight are not known, so they cost nothing.
        return Settlement {
            hold_id: hold.id.clone(),
            lease_expired_by: Some(now()),
            cost: 0,
            counts_as_request: 0,
            log: ConsumeLog {
                kind: "",
                user_id: hold.user_id,
                token_id: hold.token_id,
                ..ConsumeLog::default()
            },
        };
    }
    let usage = Usage {
        input_tokens: hold.prompt_tokens.max(0) as u64,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        units: Vec::new(),
    };
    let cost = serde_json::from_str::<PriceSnapshot>(&hold.price)
        .map(|p| p.cost(&usage))
        .unwrap_or(hold.amount);
    Settlement {
        hold_id: hold.id.clone(),
        lease_expired_by: Some(now()),
        cost,
        counts_as_request: 1,
        log: ConsumeLog {
            kind: "consume",
            user_id: hold.user_id,
            token_id: hold.token_id,
            channel_id: hold.channel_id,
            model: hold.model.clone(),
            prompt_tokens: hold.prompt_tokens,
            price: Some(hold.price.clone()),
            latency_ms: (now() - hold.created_at).max(0) * 1000,
            is_stream: hold.is_stream == 1,
            status_code: 0,
            request_id: hold.request_id.clone(),
            client_ip: hold.client_ip.clone(),
            content: "recovered after the serving instance stopped: prompt billed".to_owned(),
            ..ConsumeLog::default()
        },
    }
}

impl Hold {
    /// Whether the call is being ended by the shutdown cut (rather than by
    /// its client going away).
    pub fn cut_by_shutdown(&self) -> bool {
        self.billing.cut.is_cancelled()
    }

    /// The call is about to reach `channel_id`'s upstream: from here on an
    /// abandoned call costs at least its prompt.
    pub fn reaching(&mut self, channel_id: i64) {
        self.upstream_reached = Some(channel_id);
    }

    /// The cost of `usage` at this call's price.
    pub fn cost(&self, usage: &Usage) -> i64 {
        self.price.cost(usage)
    }

    /// End the hold: charge what the call cost, refund the rest. Written in
    /// the background; [`Billing::flush`] waits for it.
    pub fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.finish(outcome);
    }

    fn finish(&self, outcome: Outcome) {
        let settlement = self.settlement(outcome);
        let Some(line) = &self.line else {
            // If the writer is gone (process shutdown) the hold stays in
            // the table and the recovery sweep settles it.
            self.billing.queue(LedgerEntry::Settle(settlement));
            return;
        };
        line.settle(
            &self.billing,
            self.amount,
            settlement.cost,
            LineCharge {
                // Time-ordered: the marks' index grows at its end instead of
                // dirtying a random page per charge.
                id: uuid::Uuid::now_v7().to_string(),
                line: line.hold_id.clone(),
                from_line: 0,
                cost: settlement.cost.max(0),
                counts_as_request: settlement.counts_as_request,
                log: settlement.log,
            },
        );
    }

    fn settlement(&self, outcome: Outcome) -> Settlement {
        let price = serde_json::to_string(&self.price).ok();
        let base = ConsumeLog {
            user_id: self.user_id,
            token_id: self.token_id,
            model: self.model.clone(),
            price,
            latency_ms: self.started.elapsed().as_millis() as i64,
            is_stream: self.stream,
            request_id: self.request_id.clone(),
            client_ip: self.client_ip.clone(),
            ..ConsumeLog::default()
        };
        match outcome {
            Outcome::Served {
                channel_id,
                usage,
                first_token,
                note,
            } => Settlement {
                hold_id: self.id.clone(),
                lease_expired_by: None,
                cost: self.price.cost(&usage),
                counts_as_request: 1,
                log: ConsumeLog {
                    kind: "consume",
                    channel_id,
                    prompt_tokens: usage.input_tokens as i64,
                    completion_tokens: usage.output_tokens as i64,
                    cached_tokens: usage.cache_read_tokens as i64,
                    cache_write_tokens: usage.cache_write_tokens as i64,
                    reasoning_tokens: usage.reasoning_tokens as i64,
                    first_token_ms: first_token.map_or(0, |d| d.as_millis() as i64),
                    status_code: 200,
                    content: note,
                    ..base
                },
            },
            Outcome::Failed {
                channel_id,
                status,
                message,
            } => Settlement {
                hold_id: self.id.clone(),
                lease_expired_by: None,
                cost: 0,
                counts_as_request: 0,
                log: ConsumeLog {
                    kind: "error",
                    channel_id,
                    status_code: i64::from(status),
                    content: message,
                    ..base
                },
            },
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // 499: the client closed the request; 503: the gateway did.
        let (ended, status) = if self.cut_by_shutdown() {
            ("the gateway shut down", 503)
        } else {
            ("client disconnected", 499)
        };
        let outcome = match self.upstream_reached {
            Some(channel_id) => Outcome::Served {
                channel_id,
                usage: Usage {
                    input_tokens: self.prompt_tokens,
                    output_tokens: 0,
                    cache_read_tokens: 0,
                    cache_write_tokens: 0,
                    reasoning_tokens: 0,
                    units: Vec::new(),
                },
                first_token: None,
                note: format!("{ended} before the answer: prompt billed"),
            },
            None => Outcome::Failed {
                channel_id: 0,
                status,
                message: format!("{ended} before the upstream was reached"),
            },
        };
        self.finish(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::pricing::ModelPrice;
    use axum::http::StatusCode;

    #[test]
    fn config_defaults() {
        let c = BillingConfig::default();
        assert_eq!(c.quota_per_usd, 500_000);
        assert!(c.hold_lease_secs >= 10);
    }

    /// Past `max_unwritten` entries waiting in memory, new calls are
    /// refused (503) until the backlog is written; then they are admitted
    /// again (here to be refused for the empty balance they meet).
    fn caller(token_id: i64, user_id: i64, unlimited: bool) -> Caller {
        Caller {
            token_id,
            user_id,
            group: "default".into(),
            models: None,
            unlimited,
            limits: Default::default(),
        }
    }

    fn price() -> PriceSnapshot {
        PriceSnapshot {
            model: ModelPrice::tokens(1, 1, 1, 1),
            group_ratio: Ratio::ONE,
            quota_per_usd: 500_000,
        }
    }

    /// A 10-token prompt asking for at most 10 tokens, for `caller`.
    fn hold_request(caller: &Caller) -> HoldRequest<'_> {
        HoldRequest {
            caller,
            model: "m",
            prompt_tokens: 10,
            max_output_tokens: Some(10),
            request_id: "r",
            client_ip: "127.0.0.1",
            stream: false,
            started: Instant::now(),
            units: &[],
        }
    }

    #[tokio::test]
    async fn a_call_the_shutdown_cuts_is_logged_as_cut_not_as_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        let user = db
            .create_user(&crate::store::NewUser {
                username: "u".into(),
                display_name: "u".into(),
                password_hash: None,
                role: "user".into(),
                group_name: "default".into(),
                quota: 1_000_000,
            })
            .await
            .unwrap();
        let token = db
            .create_token(&crate::store::NewToken {
                user_id: user.id,
                name: "t".into(),
                key_digest: "digest".into(),
                key_hint: "hint".into(),
                remain_quota: 0,
                unlimited_quota: true,
                models: String::new(),
                allowed_ips: String::new(),
                group_name: String::new(),
                expires_at: None,
                max_concurrency: 0,
                rpm: 0,
                tpm: 0,
            })
            .await
            .unwrap();
        let cut = tokio_util::sync::CancellationToken::new();
        let billing = Billing::load(db.clone(), BillingConfig::default(), cut.clone())
            .await
            .unwrap();
        let caller = caller(token.id, user.id, true);
        let price = price();
        let request = || hold_request(&caller);
        // One call dropped by its client, one cut by the shutdown, both
        // before the upstream was reached.
        drop(billing.hold(request(), price.clone()).await.unwrap());
        let held = billing.hold(request(), price).await.unwrap();
        assert!(!held.cut_by_shutdown());
        cut.cancel();
        assert!(held.cut_by_shutdown());
        drop(held);
        billing.flush().await;
        let mut logs: Vec<(i64, String)> = db
            .recent_logs(10)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.status_code, l.content))
            .collect();
        logs.sort();
        assert_eq!(
            logs,
            [
                (
                    499,
                    "client disconnected before the upstream was reached".to_owned()
                ),
                (
                    503,
                    "the gateway shut down before the upstream was reached".to_owned()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_full_ledger_backlog_refuses_new_calls_until_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        let config = BillingConfig {
            max_unwritten: 2,
            ..BillingConfig::default()
        };
        let billing = Billing::load(db, config, Default::default()).await.unwrap();
        let caller = caller(1, 1, false);
        let price = price();
        let request = || hold_request(&caller);
        let release = |line: &str| LedgerEntry::LineRelease {
            line: line.into(),
            user_id: 1,
            token_id: 1,
        };
        billing
            .dead_letters
            .lock()
            .unwrap()
            .extend([release("a"), release("b")]);

        let Err(refused) = billing.hold(request(), price.clone()).await else {
            panic!("admitted past the backlog");
        };
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.code.as_deref(), Some("usage_backlog"));
        assert_eq!(refused.retry_after, Some(5));
        assert!(
            refused.message.contains("2 usage records"),
            "{}",
            refused.message
        );

        // The sweep writes them (releases of lines long gone are no-ops).
        assert_eq!(billing.retry_dead_letters().await, 0);
        let Err(admitted) = billing.hold(request(), price).await else {
            panic!("a hold on an empty balance");
        };
        assert_eq!(admitted.code.as_deref(), Some("insufficient_quota"));
    }
}
