//! `GET /admin/monitor`: the water level — calls in flight against
//! capacity, overall, per channel and per upstream key — with each channel's
//! recent error rate and the limiter backend in use. On Redis, the figures
//! are the live shared ones of every instance.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{AdminResult, Body};
use crate::AppState;
use crate::channels::STATUS_ENABLED;
use crate::error::GatewayError;
use crate::limits::{Backend, RateRules};

pub async fn monitor(State(app): State<AppState>) -> AdminResult {
    let snapshot = app.router.snapshot();
    let keys: Vec<(i64, usize)> = snapshot
        .channels
        .iter()
        .flat_map(|c| (0..c.keys.len()).map(move |k| (c.id, k)))
        .collect();
    let counts = app.limiter.in_flight(&keys).await;
    let ids: Vec<i64> = snapshot.channels.iter().map(|c| c.id).collect();
    let stats = app.limiter.channel_stats(&ids).await;
    let mut at = 0;
    let (mut total_in_flight, mut total_capacity) = (0u64, 0u64);
    let mut channels = Vec::new();
    for c in &snapshot.channels {
        let max = c.max_concurrency.max(0) as u64;
        let mut key_rows = Vec::new();
        let mut in_flight = 0;
        for k in 0..c.keys.len() {
            let n = counts.get(at).copied().unwrap_or(0);
            at += 1;
            in_flight += n;
            key_rows.push(json!({"index": k, "in_flight": n, "max_concurrency": max}));
        }
        let capacity = max * c.keys.len() as u64;
        if c.status == STATUS_ENABLED {
            total_in_flight += in_flight;
            total_capacity += capacity;
        }
        let (calls, failures) = stats.get(&c.id).copied().unwrap_or((0, 0));
        channels.push(json!({
            "id": c.id,
            "name": c.name,
            "type": c.kind,
            "status": if c.status == STATUS_ENABLED { "enabled" } else { "disabled" },
            "priority": c.priority,
            "weight": c.weight,
            "in_flight": in_flight,
            "capacity": capacity,
            "keys": key_rows,
            "calls_5m": calls,
            "failures_5m": failures,
            "error_rate_5m": if calls == 0 { 0.0 } else { failures as f64 / calls as f64 },
        }));
    }
    let backend = match app.limiter.backend() {
        Backend::Redis => "redis",
        Backend::InProcess if app.limiter.redis_configured() => "in-process (Redis unreachable)",
        Backend::InProcess => "in-process",
    };
    Ok(Json(json!({
        "limiter": {
            "backend": backend,
            "redis_configured": app.limiter.redis_configured(),
            "redis_down_since": app.limiter.redis_down_since(),
        },
        "in_flight": total_in_flight,
        "capacity": total_capacity,
        "water_level": if total_capacity == 0 { 0.0 } else { total_in_flight as f64 / total_capacity as f64 },
        "channels": channels,
        "holds_open": app.db.open_holds().await?,
    }))
    .into_response())
}

pub async fn get_limits(State(app): State<AppState>) -> AdminResult {
    Ok(Json(json!(&*app.limiter.rules())).into_response())
}

pub async fn put_limits(State(app): State<AppState>, Body(rules): Body<RateRules>) -> AdminResult {
    rules.validate().map_err(GatewayError::invalid)?;
    app.limiter.set_rules(&app.db, rules).await?;
    let current: Value = json!(&*app.limiter.rules());
    Ok(Json(current).into_response())
}
