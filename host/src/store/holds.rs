//! Quota holds and their settlement: the ledger's two transactions.
//!
//! A hold takes an estimated amount from the user's balance (and the
//! token's, when it is limited) in one atomic step that refuses to overdraw,
//! and records itself durably. Settling deletes the hold — which is what
//! makes settling idempotent: only the call that deletes it moves money —
//! refunds it, charges the actual cost (never more than the balance plus the
//! hold) and writes the log row, all in one transaction.

use sqlx::FromRow;

use super::{Backend, ConsumeLog, Db, now};

#[derive(Debug, Clone)]
pub struct NewHold {
    pub id: String,
    pub user_id: i64,
    pub token_id: i64,
    pub amount: i64,
    pub model: String,
    pub prompt_tokens: i64,
    /// The price snapshot, JSON.
    pub price: String,
    pub request_id: String,
    pub client_ip: String,
    pub is_stream: bool,
    pub instance: String,
    pub lease_until: i64,
}

/// A hold found in the database (by the sweeper, after its owner stopped).
#[derive(Debug, Clone, FromRow)]
pub struct HoldRow {
    pub id: String,
    pub user_id: i64,
    pub token_id: i64,
    pub amount: i64,
    pub model: String,
    pub prompt_tokens: i64,
    pub price: String,
    pub request_id: String,
    pub client_ip: String,
    pub channel_id: i64,
    pub is_stream: i64,
    pub created_at: i64,
}

/// How a hold ends. The amount refunded is what the hold holds when it is
/// settled, read under the row's lock (a credit line's shrinks as calls
/// draw on it).
#[derive(Debug, Clone)]
pub struct Settlement {
    pub hold_id: String,
    /// Settle only if the hold's lease ran out before this time (the
    /// recovery sweep's guard: a hold its owner renewed meanwhile is not
    /// taken from it).
    pub lease_expired_by: Option<i64>,
    /// What the call cost; the charge is this, capped so no balance goes
    /// below zero.
    pub cost: i64,
    /// 1 if the call counts as a served request, 0 for a failure.
    pub counts_as_request: i64,
    /// The log row; its `quota` is filled with the amount charged.
    pub log: ConsumeLog,
}

/// Whether the line pays all of a charge (no overrun to take from the
/// balance), so it can be written with the others of its batch.
fn covered_by_line(c: &LineCharge) -> bool {
    let cost = c.cost.max(0);
    c.from_line.clamp(0, cost) == cost
}

/// A call drawn on a credit line, as the ledger writes it.
#[derive(Debug, Clone)]
pub struct LineCharge {
    /// Unique per charge: the ledger applies a charge once, however often
    /// it is retried.
    pub id: String,
    /// The credit line's hold id.
    pub line: String,
    /// The part of the cost the line pays.
    pub from_line: i64,
    /// What the call cost; what the line does not pay comes from the
    /// balance, never below zero.
    pub cost: i64,
    /// 1 if the call counts as a served request, 0 for a failure.
    pub counts_as_request: i64,
    /// The log row; its `quota` is filled with the amount charged.
    pub log: ConsumeLog,
}

/// One write the ledger writer makes.
#[derive(Debug, Clone)]
pub enum LedgerEntry {
    /// A hold of its own, settled.
    Settle(Settlement),
    /// A call drawn on a credit line.
    LineCharge(LineCharge),
    /// A credit line closed: its rest goes back to the balance.
    LineRelease {
        line: String,
        user_id: i64,
        token_id: i64,
    },
}

impl Db {
    /// Place a hold. `Ok(false)`: the user's balance or the token's
    /// remaining quota cannot cover it, and nothing changed.
    pub async fn place_hold(&self, hold: &NewHold) -> sqlx::Result<bool> {
        let mut tx = self.pool().begin().await?;
        if !self.place_hold_in(&mut tx, hold).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// [`Db::place_hold`] inside the caller's transaction; `Ok(false)` leaves
    /// the transaction for the caller to roll back.
    pub(super) async fn place_hold_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        hold: &NewHold,
    ) -> sqlx::Result<bool> {
        // The write comes first, so SQLite takes its write lock up front
        // instead of upgrading a read lock (which can fail under load).
        let user = self
            .q("UPDATE users SET quota = quota - ? WHERE id = ? AND status = 1 AND quota >= ?")
            .bind(hold.amount)
            .bind(hold.user_id)
            .bind(hold.amount)
            .execute(&mut **tx)
            .await?;
        if user.rows_affected() == 0 {
            return Ok(false);
        }
        let token = self
            .q("UPDATE tokens SET remain_quota = CASE WHEN unlimited_quota = 1 THEN remain_quota ELSE remain_quota - ? END \
                WHERE id = ? AND status = 1 AND (unlimited_quota = 1 OR remain_quota >= ?)")
            .bind(hold.amount)
            .bind(hold.token_id)
            .bind(hold.amount)
            .execute(&mut **tx)
            .await?;
        if token.rows_affected() == 0 {
            return Ok(false);
        }
        self.q("INSERT INTO holds (id, user_id, token_id, amount, model, prompt_tokens, price, request_id, client_ip, channel_id, is_stream, instance, created_at, lease_until) \
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)")
            .bind(hold.id.clone())
            .bind(hold.user_id)
            .bind(hold.token_id)
            .bind(hold.amount)
            .bind(hold.model.clone())
            .bind(hold.prompt_tokens)
            .bind(hold.price.clone())
            .bind(hold.request_id.clone())
            .bind(hold.client_ip.clone())
            .bind(i64::from(hold.is_stream))
            .bind(hold.instance.clone())
            .bind(now())
            .bind(hold.lease_until)
            .execute(&mut **tx)
            .await?;
        Ok(true)
    }

    /// Settle a hold: `Some(charged)` if this call settled it, `None` if it
    /// was already settled (by another path or instance).
    pub async fn settle_hold(&self, s: &Settlement) -> sqlx::Result<Option<i64>> {
        let mut tx = self.pool().begin().await?;
        match self.settle_hold_in(&mut tx, s).await? {
            Some(charged) => {
                tx.commit().await?;
                Ok(Some(charged))
            }
            None => {
                tx.rollback().await?;
                Ok(None)
            }
        }
    }

    /// Write several ledger entries in one transaction (holds already
    /// settled are skipped); all or nothing. The entries are written in
    /// their order (so log rows get ids in the order the calls settled, and
    /// a line's release comes after every charge of it), each run of
    /// credit-line charges together ([`Db::charge_lines_in`]).
    pub async fn write_ledger(&self, batch: &[LedgerEntry]) -> sqlx::Result<()> {
        let mut tx = self.ledger.begin().await?;
        let mut charges: Vec<&LineCharge> = Vec::new();
        for entry in batch {
            match entry {
                LedgerEntry::LineCharge(c) => charges.push(c),
                other => {
                    self.charge_lines_in(&mut tx, &charges).await?;
                    charges.clear();
                    self.write_entry_in(&mut tx, other).await?;
                }
            }
        }
        self.charge_lines_in(&mut tx, &charges).await?;
        tx.commit().await
    }

    /// Several credit-line charges with a handful of statements instead of
    /// six each: their marks in one insert, one draw per line, one update
    /// per user and per key, their log rows in one insert. A charge its
    /// line cannot cover alone (an overrun, or a line that is gone) is
    /// applied on its own, as [`Db::charge_line_in`] would.
    ///
    /// A mark that already exists means the batch was written before (a
    /// commit whose outcome was never seen): the batch fails, and the
    /// writer's one-by-one retry skips what was applied.
    async fn charge_lines_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        charges: &[&LineCharge],
    ) -> sqlx::Result<()> {
        if charges.len() < 2 {
            for c in charges {
                self.charge_line_in(tx, c).await?;
            }
            return Ok(());
        }
        let ts = now();
        for chunk in super::runs(charges) {
            let rows = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = match self.backend {
                Backend::Sqlite | Backend::Postgres => format!(
                    "INSERT INTO ledger_marks (id, created_at) VALUES {rows} ON CONFLICT (id) DO NOTHING"
                ),
                Backend::MySql => {
                    format!("INSERT IGNORE INTO ledger_marks (id, created_at) VALUES {rows}")
                }
            };
            let mut query = self.multi_row(sql);
            for c in chunk {
                query = query.bind(c.id.clone()).bind(ts);
            }
            let marked = query.execute(&mut **tx).await?;
            if marked.rows_affected() != chunk.len() as u64 {
                return Err(sqlx::Error::Protocol(
                    "a ledger batch holds charges applied before; writing it one by one".into(),
                ));
            }
        }
        // Draw each line's share at once; a line that is gone, and charges
        // that need the balance too, are applied one by one.
        let mut lines: Vec<(&str, i64)> = Vec::new();
        for c in charges.iter().filter(|c| covered_by_line(c)) {
            match lines.iter_mut().find(|(l, _)| *l == c.line) {
                Some((_, sum)) => *sum += c.cost.max(0),
                None => lines.push((&c.line, c.cost.max(0))),
            }
        }
        // Rows are locked in id order, so two instances writing batches for
        // the same users cannot deadlock each other.
        lines.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut gone: Vec<&str> = Vec::new();
        for (line, sum) in &lines {
            let drawn = self
                .q("UPDATE holds SET amount = amount - ? WHERE id = ?")
                .bind(*sum)
                .bind((*line).to_owned())
                .execute(&mut **tx)
                .await?;
            if drawn.rows_affected() == 0 {
                gone.push(line);
            }
        }
        let (together, alone): (Vec<&LineCharge>, Vec<&LineCharge>) = charges
            .iter()
            .partition(|c| covered_by_line(c) && !gone.contains(&c.line.as_str()));
        let mut users: Vec<(i64, i64, i64)> = Vec::new();
        let mut tokens: Vec<(i64, i64)> = Vec::new();
        for c in &together {
            let cost = c.cost.max(0);
            match users.iter_mut().find(|(u, _, _)| *u == c.log.user_id) {
                Some((_, sum, requests)) => {
                    *sum += cost;
                    *requests += c.counts_as_request;
                }
                None => users.push((c.log.user_id, cost, c.counts_as_request)),
            }
            match tokens.iter_mut().find(|(t, _)| *t == c.log.token_id) {
                Some((_, sum)) => *sum += cost,
                None => tokens.push((c.log.token_id, cost)),
            }
        }
        users.sort_unstable_by_key(|u| u.0);
        tokens.sort_unstable_by_key(|t| t.0);
        for (user, sum, requests) in users {
            self.q("UPDATE users SET used_quota = used_quota + ?, request_count = request_count + ?, updated_at = ? WHERE id = ?")
                .bind(sum)
                .bind(requests)
                .bind(ts)
                .bind(user)
                .execute(&mut **tx)
                .await?;
        }
        for (token, sum) in tokens {
            self.q("UPDATE tokens SET used_quota = used_quota + ?, accessed_at = ? WHERE id = ?")
                .bind(sum)
                .bind(ts)
                .bind(token)
                .execute(&mut **tx)
                .await?;
        }
        let logs: Vec<ConsumeLog> = together
            .iter()
            .map(|c| ConsumeLog {
                quota: c.cost.max(0),
                ..c.log.clone()
            })
            .collect();
        self.insert_logs(&logs, tx).await?;
        for c in alone {
            self.apply_line_charge_in(tx, c).await?;
        }
        Ok(())
    }

    /// One ledger entry in its own transaction.
    pub async fn write_entry(&self, entry: &LedgerEntry) -> sqlx::Result<()> {
        let mut tx = self.pool().begin().await?;
        self.write_entry_in(&mut tx, entry).await?;
        tx.commit().await
    }

    async fn write_entry_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        entry: &LedgerEntry,
    ) -> sqlx::Result<()> {
        match entry {
            LedgerEntry::Settle(s) => self.settle_hold_in(tx, s).await.map(drop),
            LedgerEntry::LineCharge(c) => self.charge_line_in(tx, c).await,
            LedgerEntry::LineRelease {
                line,
                user_id,
                token_id,
            } => self.release_line_in(tx, line, *user_id, *token_id).await,
        }
    }

    /// A call drawn on a credit line: its share leaves the line's hold (the
    /// balance paid for it when the line opened); the rest of its cost — an
    /// overrun the line could not cover, or all of it if the line is gone
    /// (recovered after this instance lost its lease) — comes from the
    /// balance and the key's quota, never below zero.
    async fn charge_line_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        c: &LineCharge,
    ) -> sqlx::Result<()> {
        let ts = now();
        // The mark comes first (for SQLite, a write takes the write lock up
        // front): a charge already applied leaves nothing to do.
        let mark = match self.backend {
            Backend::Sqlite | Backend::Postgres => {
                "INSERT INTO ledger_marks (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
            }
            Backend::MySql => "INSERT IGNORE INTO ledger_marks (id, created_at) VALUES (?, ?)",
        };
        let marked = self
            .q(mark)
            .bind(c.id.clone())
            .bind(ts)
            .execute(&mut **tx)
            .await?;
        if marked.rows_affected() == 0 {
            return Ok(());
        }
        self.apply_line_charge_in(tx, c).await
    }

    /// A line charge whose mark is in place: draw the line's share, take
    /// the rest from the balance, count it, log it.
    async fn apply_line_charge_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        c: &LineCharge,
    ) -> sqlx::Result<()> {
        let ts = now();
        let cost = c.cost.max(0);
        let from_line = c.from_line.clamp(0, cost);
        let drawn = self
            .q("UPDATE holds SET amount = amount - ? WHERE id = ?")
            .bind(from_line)
            .bind(c.line.clone())
            .execute(&mut **tx)
            .await?;
        let mut charged = if drawn.rows_affected() > 0 {
            from_line
        } else {
            0
        };
        let rest = cost - charged;
        if rest > 0 {
            let (user_sql, token_sql) = match self.backend {
                Backend::Sqlite => (
                    "SELECT quota FROM users WHERE id = ?",
                    "SELECT remain_quota, unlimited_quota FROM tokens WHERE id = ?",
                ),
                Backend::Postgres | Backend::MySql => (
                    "SELECT quota FROM users WHERE id = ? FOR UPDATE",
                    "SELECT remain_quota, unlimited_quota FROM tokens WHERE id = ? FOR UPDATE",
                ),
            };
            let balance: Option<(i64,)> = self
                .qa(user_sql)
                .bind(c.log.user_id)
                .fetch_optional(&mut **tx)
                .await?;
            let token: Option<(i64, i64)> = self
                .qa(token_sql)
                .bind(c.log.token_id)
                .fetch_optional(&mut **tx)
                .await?;
            let mut take = rest.min(balance.map_or(0, |(q,)| q.max(0)));
            if let Some((remain, 0)) = token {
                take = take.min(remain.max(0));
            }
            if take > 0 {
                self.q("UPDATE users SET quota = quota - ? WHERE id = ?")
                    .bind(take)
                    .bind(c.log.user_id)
                    .execute(&mut **tx)
                    .await?;
                self.q("UPDATE tokens SET remain_quota = CASE WHEN unlimited_quota = 1 THEN remain_quota ELSE remain_quota - ? END WHERE id = ?")
                    .bind(take)
                    .bind(c.log.token_id)
                    .execute(&mut **tx)
                    .await?;
            }
            charged += take;
        }
        self.q("UPDATE users SET used_quota = used_quota + ?, request_count = request_count + ?, updated_at = ? WHERE id = ?")
            .bind(charged)
            .bind(c.counts_as_request)
            .bind(ts)
            .bind(c.log.user_id)
            .execute(&mut **tx)
            .await?;
        self.q("UPDATE tokens SET used_quota = used_quota + ?, accessed_at = ? WHERE id = ?")
            .bind(charged)
            .bind(ts)
            .bind(c.log.token_id)
            .execute(&mut **tx)
            .await?;
        let mut log = c.log.clone();
        log.quota = charged;
        if charged < cost {
            let note = format!("balance exhausted: charged {charged} of {cost}");
            log.content = if log.content.is_empty() {
                note
            } else {
                format!("{}; {note}", log.content)
            };
        }
        self.insert_log(&log, tx).await
    }

    /// Close a credit line: what is left of its hold goes back to the
    /// balance (and the key's quota). Closing twice changes nothing.
    async fn release_line_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        line: &str,
        user_id: i64,
        token_id: i64,
    ) -> sqlx::Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => {
                // A write first, so SQLite takes its write lock now instead
                // of upgrading a read lock later (which can fail under load).
                self.q("UPDATE holds SET amount = amount WHERE id = ?")
                    .bind(line.to_owned())
                    .execute(&mut **tx)
                    .await?;
                "SELECT amount FROM holds WHERE id = ?"
            }
            Backend::Postgres | Backend::MySql => {
                "SELECT amount FROM holds WHERE id = ? FOR UPDATE"
            }
        };
        let left: Option<(i64,)> = self
            .qa(sql)
            .bind(line.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
        let Some((left,)) = left else {
            return Ok(());
        };
        self.q("DELETE FROM holds WHERE id = ?")
            .bind(line.to_owned())
            .execute(&mut **tx)
            .await?;
        self.q("UPDATE users SET quota = quota + ? WHERE id = ?")
            .bind(left)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
        self.q("UPDATE tokens SET remain_quota = CASE WHEN unlimited_quota = 1 THEN remain_quota ELSE remain_quota + ? END WHERE id = ?")
            .bind(left)
            .bind(token_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// [`Db::settle_hold`] inside the caller's transaction; `None` leaves
    /// the transaction for the caller to roll back.
    pub(super) async fn settle_hold_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        s: &Settlement,
    ) -> sqlx::Result<Option<i64>> {
        let Some(hold_amount) = self.take_hold_in(tx, s).await? else {
            return Ok(None);
        };
        let (user_sql, token_sql) = match self.backend {
            Backend::Sqlite => (
                "SELECT quota FROM users WHERE id = ?",
                "SELECT remain_quota, unlimited_quota FROM tokens WHERE id = ?",
            ),
            Backend::Postgres | Backend::MySql => (
                "SELECT quota FROM users WHERE id = ? FOR UPDATE",
                "SELECT remain_quota, unlimited_quota FROM tokens WHERE id = ? FOR UPDATE",
            ),
        };
        let balance: Option<(i64,)> = self
            .qa(user_sql)
            .bind(s.log.user_id)
            .fetch_optional(&mut **tx)
            .await?;
        let token: Option<(i64, i64)> = self
            .qa(token_sql)
            .bind(s.log.token_id)
            .fetch_optional(&mut **tx)
            .await?;
        let mut charged = s.cost.max(0);
        if let Some((quota,)) = balance {
            charged = charged.min((quota + hold_amount).max(0));
        }
        if let Some((remain, 0)) = token {
            charged = charged.min((remain + hold_amount).max(0));
        }
        let ts = now();
        self.q("UPDATE users SET quota = quota + ? - ?, used_quota = used_quota + ?, request_count = request_count + ?, updated_at = ? WHERE id = ?")
            .bind(hold_amount)
            .bind(charged)
            .bind(charged)
            .bind(s.counts_as_request)
            .bind(ts)
            .bind(s.log.user_id)
            .execute(&mut **tx)
            .await?;
        self.q("UPDATE tokens SET remain_quota = CASE WHEN unlimited_quota = 1 THEN remain_quota ELSE remain_quota + ? - ? END, used_quota = used_quota + ?, accessed_at = ? WHERE id = ?")
            .bind(hold_amount)
            .bind(charged)
            .bind(charged)
            .bind(ts)
            .bind(s.log.token_id)
            .execute(&mut **tx)
            .await?;
        let mut log = s.log.clone();
        log.quota = charged;
        if charged < s.cost {
            let note = format!("balance exhausted: charged {charged} of {}", s.cost);
            log.content = if log.content.is_empty() {
                note
            } else {
                format!("{}; {note}", log.content)
            };
        }
        // A credit line returned by the sweep has no call to log.
        if !log.kind.is_empty() {
            self.insert_log(&log, tx).await?;
        }
        Ok(Some(charged))
    }

    /// Delete the hold `s` settles and return what it held, or `None` if it
    /// is gone (or, for the sweep, was renewed). The amount is read in the
    /// same statement, or under the row's lock.
    async fn take_hold_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        s: &Settlement,
    ) -> sqlx::Result<Option<i64>> {
        let guarded = s.lease_expired_by.is_some();
        let sql = match (self.backend, guarded) {
            (Backend::Sqlite | Backend::Postgres, false) => {
                "DELETE FROM holds WHERE id = ? RETURNING amount"
            }
            (Backend::Sqlite | Backend::Postgres, true) => {
                "DELETE FROM holds WHERE id = ? AND lease_until < ? RETURNING amount"
            }
            (Backend::MySql, false) => "SELECT amount FROM holds WHERE id = ? FOR UPDATE",
            (Backend::MySql, true) => {
                "SELECT amount FROM holds WHERE id = ? AND lease_until < ? FOR UPDATE"
            }
        };
        let mut query = self.qa::<(i64,)>(sql).bind(s.hold_id.clone());
        if let Some(t) = s.lease_expired_by {
            query = query.bind(t);
        }
        let Some((amount,)) = query.fetch_optional(&mut **tx).await? else {
            return Ok(None);
        };
        if self.backend == Backend::MySql {
            self.q("DELETE FROM holds WHERE id = ?")
                .bind(s.hold_id.clone())
                .execute(&mut **tx)
                .await?;
        }
        Ok(Some(amount))
    }

    /// Ids of the holds `instance` owns.
    pub async fn owned_holds(&self, instance: &str) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = self
            .qa("SELECT id FROM holds WHERE instance = ?")
            .bind(instance.to_owned())
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Forget marks of ledger entries applied before `before`.
    pub async fn prune_ledger_marks(&self, before: i64) -> sqlx::Result<u64> {
        let r = self
            .q("DELETE FROM ledger_marks WHERE created_at < ?")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// Extend the lease of every hold owned by `instance`.
    pub async fn renew_holds(&self, instance: &str, lease_until: i64) -> sqlx::Result<u64> {
        let r = self
            .q("UPDATE holds SET lease_until = ? WHERE instance = ?")
            .bind(lease_until)
            .bind(instance.to_owned())
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// Holds whose lease ran out: their instance stopped without settling.
    pub async fn expired_holds(&self, before: i64, limit: i64) -> sqlx::Result<Vec<HoldRow>> {
        self.qa::<HoldRow>(
            "SELECT id, user_id, token_id, amount, model, prompt_tokens, price, request_id, client_ip, channel_id, is_stream, created_at \
             FROM holds WHERE lease_until < ? ORDER BY lease_until LIMIT ?",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await
    }

    /// The price snapshot (JSON) a hold was placed at, while it is open.
    pub async fn hold_price(&self, id: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> = self
            .qa("SELECT price FROM holds WHERE id = ?")
            .bind(id.to_owned())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|(p,)| p))
    }

    pub async fn open_holds(&self) -> sqlx::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM holds")
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }
}
