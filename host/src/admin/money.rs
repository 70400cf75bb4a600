//! Admin routes for prices, top-ups, redemption codes and usage; and the
//! user route that redeems a code.

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{AdminResult, Body};
use crate::AppState;
use crate::billing::Pricing;
use crate::crypto;
use crate::error::GatewayError;
use crate::store::now;

pub async fn get_pricing(State(app): State<AppState>) -> AdminResult {
    let pricing = app.billing.pricing();
    Ok(Json(json!({
        "quota_per_usd": app.billing.config.quota_per_usd,
        "pricing": &*pricing,
    }))
    .into_response())
}

/// Replace the whole price list. Takes effect on the next request, on every
/// instance.
pub async fn put_pricing(State(app): State<AppState>, Body(pricing): Body<Pricing>) -> AdminResult {
    app.billing.set_pricing(pricing).await?;
    tracing::info!("price list replaced");
    get_pricing(State(app)).await
}

/// A user id given as a number or a numeric string (the seed's clients send
/// strings).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum UserRef {
    Id(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RechargeInput {
    user_id: UserRef,
    /// Amount in currency (dollars); converted at `quota_per_usd`.
    amount: f64,
    #[serde(default)]
    remark: String,
}

pub async fn recharge(
    State(app): State<AppState>,
    Body(input): Body<RechargeInput>,
) -> AdminResult {
    let user_id = match input.user_id {
        UserRef::Id(id) => id,
        UserRef::Text(t) => t.trim().parse::<i64>().map_err(|_| {
            GatewayError::invalid("`user_id` must be a user id.").with_param("user_id")
        })?,
    };
    if !input.amount.is_finite() || input.amount <= 0.0 || input.amount > 1e9 {
        return Err(
            GatewayError::invalid("`amount` must be a positive number.").with_param("amount")
        );
    }
    // Cents are the unit of money that comes in; round there, then convert.
    let cents = (input.amount * 100.0).round() as i64;
    let quota = cents * app.billing.config.quota_per_usd as i64 / 100;
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let topup = app
        .db
        .recharge(user_id, quota, &amount, &input.remark)
        .await?
        .ok_or_else(|| {
            GatewayError::not_found(format!("No user {user_id}.")).with_param("user_id")
        })?;
    tracing::info!(user = user_id, quota, "recharged");
    Ok((StatusCode::CREATED, Json(topup)).into_response())
}

pub async fn user_topups(State(app): State<AppState>, Path(id): Path<i64>) -> AdminResult {
    Ok(Json(json!({ "data": app.db.topups_of_user(id).await? })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionInput {
    #[serde(default)]
    name: String,
    /// Quota units each code is worth.
    quota: i64,
    #[serde(default = "one")]
    count: u32,
    /// Unix seconds; absent = never.
    expires_at: Option<i64>,
}

fn one() -> u32 {
    1
}

pub async fn create_redemptions(
    State(app): State<AppState>,
    Body(input): Body<RedemptionInput>,
) -> AdminResult {
    if input.quota <= 0 {
        return Err(GatewayError::invalid("`quota` must be positive.").with_param("quota"));
    }
    if input.count == 0 || input.count > 1000 {
        return Err(GatewayError::invalid("`count` must be 1 to 1000.").with_param("count"));
    }
    let codes: Vec<String> = (0..input.count)
        .map(|_| crypto::random_string(32))
        .collect();
    let rows = app
        .db
        .create_redemptions(&input.name, input.quota, input.expires_at, &codes)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "data": rows }))).into_response())
}

pub async fn list_redemptions(State(app): State<AppState>) -> AdminResult {
    Ok(Json(json!({ "data": app.db.redemptions().await? })).into_response())
}

pub async fn disable_redemption(State(app): State<AppState>, Path(id): Path<i64>) -> AdminResult {
    if !app.db.disable_redemption(id).await? {
        return Err(GatewayError::not_found(format!(
            "No unused redemption code {id}."
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    /// Days back from now (default 30).
    days: Option<i64>,
}

pub async fn user_usage(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<UsageQuery>,
) -> AdminResult {
    let since = now() - q.days.unwrap_or(30).clamp(1, 3660) * 86400;
    let lines = app.db.usage_summary(Some(id), None, since).await?;
    Ok(Json(json!({ "data": lines })).into_response())
}

pub async fn token_usage(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<UsageQuery>,
) -> AdminResult {
    let since = now() - q.days.unwrap_or(30).clamp(1, 3660) * 86400;
    let lines = app.db.usage_summary(None, Some(id), since).await?;
    Ok(Json(json!({ "data": lines })).into_response())
}

#[derive(Debug, Deserialize)]
struct RedeemInput {
    /// The redemption code (`key`, as other gateways name it, or `code`).
    #[serde(alias = "code")]
    key: String,
}

/// `POST /api/user/topup`: a user redeems a code, authenticated by one of
/// their API keys.
pub async fn redeem(State(app): State<AppState>, request: Request) -> Response {
    let key = crate::auth::api_key(request.headers()).map(str::to_owned);
    let result: Result<Response, GatewayError> = async {
        let digest = crypto::key_digest(key.as_deref().ok_or_else(|| {
            GatewayError::unauthenticated("Send your API key as 'Authorization: Bearer YOUR_KEY'.")
        })?);
        let token = app
            .db
            .token_by_digest(&digest)
            .await?
            .filter(|t| t.token.status == crate::auth::STATUS_ENABLED)
            .ok_or_else(|| GatewayError::unauthenticated("Incorrect API key provided."))?;
        let (_, bytes) = crate::relay::read_body(request, 64 * 1024).await?;
        let input: RedeemInput = serde_json::from_slice(&bytes)
            .map_err(|e| GatewayError::invalid(format!("Invalid JSON body: {e}")))?;
        let quota = app
            .db
            .redeem(input.key.trim(), token.token.user_id)
            .await?
            .ok_or_else(|| {
                GatewayError::invalid("This code does not exist, was already used, or has expired.")
                    .with_code("invalid_redemption_code")
            })?;
        Ok(Json(json!({ "quota": quota })).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
