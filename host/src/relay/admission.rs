//! The limits phase: rate limits and concurrency slots for one call.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};

use crate::AppState;
use crate::auth::Caller;
use crate::channels::Channel;
use crate::error::{ErrorKind, GatewayError};
use crate::limits::{Acquired, Bucket, Candidate, Required, SlotGuard};

const MINUTE: Duration = Duration::from_secs(60);

/// The rate-limit buckets a call of `tokens` estimated tokens takes.
fn buckets(app: &AppState, caller: &Caller, model: &str, tokens: u64) -> Vec<(Bucket, String)> {
    let mut out = Vec::new();
    let mut add = |name: String, limit: u64, cost: u64, unit: &'static str, scope: String| {
        if limit > 0 {
            out.push((
                Bucket {
                    name,
                    limit,
                    window: MINUTE,
                    cost,
                    unit,
                },
                scope,
            ));
        }
    };
    let l = caller.limits;
    let (t, u) = (caller.token_id, caller.user_id);
    add(
        format!("token:{t}:rpm"),
        l.token_rpm,
        1,
        "requests",
        "this API key".into(),
    );
    add(
        format!("token:{t}:tpm"),
        l.token_tpm,
        tokens,
        "tokens",
        "this API key".into(),
    );
    add(
        format!("user:{u}:rpm"),
        l.user_rpm,
        1,
        "requests",
        "this account".into(),
    );
    add(
        format!("user:{u}:tpm"),
        l.user_tpm,
        tokens,
        "tokens",
        "this account".into(),
    );
    let rules = app.limiter.rules();
    for rule in rules.matching(model) {
        let base = if rule.per_user {
            format!("rule:{}:user:{u}", rule.name)
        } else {
            format!("rule:{}", rule.name)
        };
        let scope = format!("`{}`", rule.name);
        add(
            format!("{base}:rpm"),
            rule.rpm,
            1,
            "requests",
            scope.clone(),
        );
        add(format!("{base}:tpm"), rule.tpm, tokens, "tokens", scope);
    }
    out
}

fn duration_header(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{}s", d.as_secs_f64().ceil() as u64)
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// OpenAI's rate-limit headers, for request and token budgets.
const REQUEST_HEADERS: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
const TOKEN_HEADERS: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// Check and take the call's rate-limit budget. On success, the
/// `x-ratelimit-*` headers for the response (the tightest request and token
/// budgets, in OpenAI's style).
pub(crate) async fn rate_limit(
    app: &AppState,
    caller: &Caller,
    model: &str,
    tokens: u64,
) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let buckets = buckets(app, caller, model, tokens);
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let plain: Vec<Bucket> = buckets.iter().map(|(b, _)| b.clone()).collect();
    let decision = app.limiter.rate(&plain).await;
    let mut headers = Vec::new();
    for (unit, names) in [("requests", REQUEST_HEADERS), ("tokens", TOKEN_HEADERS)] {
        let tightest = buckets
            .iter()
            .zip(&decision.buckets)
            .filter(|((b, _), _)| b.unit == unit)
            .min_by_key(|(_, (remaining, _))| *remaining);
        if let Some(((bucket, _), (remaining, reset))) = tightest {
            let [limit_name, remaining_name, reset_name] = names;
            headers.push((HeaderName::from_static(limit_name), bucket.limit.into()));
            headers.push((HeaderName::from_static(remaining_name), (*remaining).into()));
            if let Ok(v) = HeaderValue::try_from(duration_header(*reset)) {
                headers.push((HeaderName::from_static(reset_name), v));
            }
        }
    }
    if decision.allowed {
        return Ok(headers);
    }
    let hit = buckets
        .iter()
        .zip(&decision.buckets)
        .find(|(_, (remaining, _))| *remaining == 0)
        .map(|((b, scope), _)| format!("{} per minute for {scope} (limit {})", b.unit, b.limit))
        .unwrap_or_else(|| "the rate limit".to_owned());
    let mut err = GatewayError::new(
        ErrorKind::RateLimited,
        format!(
            "Rate limit reached: {hit}. Try again in {}.",
            duration_header(decision.retry_after)
        ),
    )
    .with_code("rate_limit_exceeded")
    .with_retry_after(Some(
        decision.retry_after.as_secs_f64().ceil().max(1.0) as u64
    ));
    err.headers = headers;
    Err(err)
}

/// Take the caller's own concurrency slots (key and account), held for the
/// whole call.
pub(crate) async fn caller_slots(
    app: &AppState,
    caller: &Caller,
) -> Result<Option<SlotGuard>, GatewayError> {
    let prefix = &app.limiter.config.redis_prefix;
    let mut required = Vec::new();
    let mut scopes = Vec::new();
    if caller.limits.token_concurrency > 0 {
        required.push(Required::token(
            prefix,
            caller.token_id,
            caller.limits.token_concurrency,
        ));
        scopes.push(("this API key", caller.limits.token_concurrency));
    }
    if caller.limits.user_concurrency > 0 {
        required.push(Required::user(
            prefix,
            caller.user_id,
            caller.limits.user_concurrency,
        ));
        scopes.push(("this account", caller.limits.user_concurrency));
    }
    if required.is_empty() {
        return Ok(None);
    }
    match app.limiter.acquire_required(&required).await {
        Acquired::Slot(_, guard) => Ok(Some(guard)),
        full => {
            let i = match full {
                Acquired::RequiredFull(i) => i,
                _ => 0,
            };
            let (scope, limit) = scopes.get(i).copied().unwrap_or(("this API key", 0));
            Err(GatewayError::new(
                ErrorKind::RateLimited,
                format!("Too many concurrent requests for {scope} (limit {limit})."),
            )
            .with_code("concurrency_limit_exceeded")
            .with_retry_after(Some(1)))
        }
    }
}

/// The upstream keys of `channels` as slot candidates, tiered by priority
/// (the list is sorted by priority, highest first).
pub(crate) fn candidates(
    channels: &[Arc<Channel>],
) -> (Vec<Candidate>, Vec<(Arc<Channel>, usize)>) {
    let mut cands = Vec::new();
    let mut owners = Vec::new();
    let mut tier = 0;
    let mut last_priority = None;
    for channel in channels {
        if last_priority.is_some_and(|p| p != channel.priority) {
            tier += 1;
        }
        last_priority = Some(channel.priority);
        for key_index in 0..channel.keys.len() {
            cands.push(Candidate {
                channel_id: channel.id,
                key_index,
                limit: u32::try_from(channel.max_concurrency.max(1)).unwrap_or(u32::MAX),
                weight: u32::try_from(channel.weight.max(0)).unwrap_or(u32::MAX),
                tier,
            });
            owners.push((channel.clone(), key_index));
        }
    }
    (cands, owners)
}

/// Every eligible upstream key is at its concurrency limit.
pub(crate) fn all_busy(model: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::RateLimited,
        format!("Every channel for `{model}` is at its concurrency limit; try again shortly."),
    )
    .with_code("channels_busy")
    .with_retry_after(Some(1))
}
