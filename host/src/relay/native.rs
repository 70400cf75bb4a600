//! The native inbound endpoints: Anthropic's Messages API and Gemini's
//! `generateContent` family, served by any channel (see [`crate::inbound`]).

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Object, Probe, Prober, handle_as, max_tokens};
use crate::AppState;
use crate::auth;
use crate::error::GatewayError;
use crate::inbound::{self, Shape};

fn object(body: &[u8], fields: &str) -> Result<Object, GatewayError> {
    match super::parse_object(body, fields)? {
        Value::Object(o) => Ok(o),
        _ => Err(GatewayError::invalid(
            "The request body must be a JSON object.",
        )),
    }
}

fn probe_messages(body: &[u8]) -> Result<Probe, GatewayError> {
    let obj = object(body, "`model`, `max_tokens` and `messages`")?;
    let model = super::required_model(&obj)?;
    let max = match obj.get("max_tokens") {
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            GatewayError::invalid("max_tokens: must be a positive integer").with_param("max_tokens")
        })?,
        None => {
            return Err(
                GatewayError::invalid("max_tokens: Field required").with_param("max_tokens")
            );
        }
    };
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let (prompt_tokens, exact) = inbound::anthropic::estimate_tokens(body)?;
    let mut probe = Probe::input_only("chat.completions", model, prompt_tokens);
    probe.recount = (!exact).then_some(recount_messages as super::Recount);
    probe.max_tokens = Some(max);
    probe.stream = stream;
    probe.shape = Shape::Anthropic;
    Ok(probe)
}

fn recount_messages(_model: &str, body: &[u8]) -> Option<u64> {
    inbound::anthropic::count_tokens(body).ok()
}

fn recount_generate(model: &str, body: &[u8]) -> Option<u64> {
    inbound::gemini::count_tokens(body, model).ok()
}

/// The client's body is translated again: whether it streams does not
/// change what its prompt counts.
fn recount_responses(model: &str, body: &[u8]) -> Option<u64> {
    let canonical = inbound::responses::request_to_chat(body, model, false).ok()?;
    let chat = serde_json::from_slice(&canonical).ok()?;
    Some(crate::billing::tokens::count_chat(model, &chat))
}

fn probe_responses(body: &[u8]) -> Result<Probe, GatewayError> {
    let obj = object(body, "`model` and `input`")?;
    let model = super::required_model(&obj)?;
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    // Translated once, here: it checks the request, counts its prompt, and
    // is what every attempt sends.
    let canonical = inbound::responses::request_to_chat(body, &model, stream)?;
    let chat: Value = serde_json::from_slice(&canonical)
        .map_err(|e| GatewayError::internal(format!("translating the request failed: {e}")))?;
    let (prompt_tokens, exact) = crate::billing::tokens::estimate_chat(&model, &chat);
    let mut probe = Probe::input_only("chat.completions", model, prompt_tokens);
    probe.recount = (!exact).then_some(recount_responses as super::Recount);
    probe.max_tokens = obj.get("max_output_tokens").and_then(Value::as_u64);
    probe.stream = stream;
    probe.shape = Shape::Responses;
    probe.canonical = Some(canonical);
    Ok(probe)
}

/// `POST /v1/responses`: OpenAI's Responses API over any chat channel.
pub async fn responses(State(app): State<AppState>, request: Request) -> Response {
    handle_as(
        app,
        request,
        Prober::Json(probe_responses),
        Shape::Responses,
    )
    .await
}

/// `POST /v1/messages`
pub async fn messages(State(app): State<AppState>, request: Request) -> Response {
    handle_as(app, request, Prober::Json(probe_messages), Shape::Anthropic).await
}

/// `POST /v1/messages/count_tokens`: counted here with the tokenizer, no
/// upstream call.
pub async fn count_tokens(State(app): State<AppState>, request: Request) -> Response {
    let r = async {
        let (_, _, body) = super::authenticated_body(&app, request).await?;
        let n = inbound::anthropic::count_tokens(&body)?;
        Ok::<_, GatewayError>(json!({"input_tokens": n}))
    };
    match r.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => {
            let body = Shape::Anthropic.error_body(&e);
            e.into_response_with(body)
        }
    }
}

fn gemini_max_tokens(obj: &Object) -> Option<u64> {
    let config = obj
        .get("generationConfig")
        .or_else(|| obj.get("generation_config"))?;
    config
        .get("maxOutputTokens")
        .or_else(|| config.get("max_output_tokens"))
        .and_then(Value::as_u64)
}

fn probe_generate(body: &[u8], model: &str, stream: bool) -> Result<Probe, GatewayError> {
    let obj = object(body, "`contents`")?;
    // Translated here, before anything is held: it checks the request, and
    // is what attempts on channels that do not speak Gemini send.
    let canonical = inbound::gemini::request_to_chat(body, model, stream)?;
    let (prompt_tokens, exact) = inbound::gemini::estimate_tokens(body, model)?;
    let mut probe = Probe::input_only("chat.completions", model.to_owned(), prompt_tokens);
    probe.recount = (!exact).then_some(recount_generate as super::Recount);
    probe.max_tokens = gemini_max_tokens(&obj).or(max_tokens(&obj));
    probe.stream = stream;
    probe.shape = Shape::Gemini;
    probe.canonical = Some(canonical);
    Ok(probe)
}

fn probe_generate_once(body: &[u8], model: &str) -> Result<Probe, GatewayError> {
    probe_generate(body, model, false)
}

fn probe_generate_stream(body: &[u8], model: &str) -> Result<Probe, GatewayError> {
    probe_generate(body, model, true)
}

fn probe_embed(body: &[u8], model: &str) -> Result<Probe, GatewayError> {
    let canonical = inbound::gemini::embed_request_to_openai(body, model)?;
    let value: Value = serde_json::from_slice(&canonical)
        .map_err(|e| GatewayError::internal(format!("translating the request failed: {e}")))?;
    let tokens = super::input_tokens(model, &value["input"]).unwrap_or(0);
    let mut probe = Probe::input_only("embeddings", model.to_owned(), tokens);
    probe.shape = Shape::Gemini;
    probe.canonical = Some(canonical);
    Ok(probe)
}

/// `POST /v1beta/models/{model}:{action}` (and the same under `/v1`):
/// `generateContent`, `streamGenerateContent` (`?alt=sse`), `countTokens`,
/// `embedContent`. The key may come as `x-goog-api-key` or `?key=`.
pub async fn gemini(
    State(app): State<AppState>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    mut request: Request,
) -> Response {
    if auth::api_key(request.headers()).is_none()
        && let Some(key) = query.get("key")
        && let Ok(v) = HeaderValue::from_str(key)
    {
        request.headers_mut().insert("x-goog-api-key", v);
    }
    let target = target.strip_prefix("models/").unwrap_or(&target).to_owned();
    let Some((model, action)) = target.split_once(':') else {
        let e = GatewayError::not_found(format!(
            "`{target}` names no method: use models/MODEL:generateContent and the like."
        ));
        let body = Shape::Gemini.error_body(&e);
        return e.into_response_with(body);
    };
    let model = model.to_owned();
    match action {
        "generateContent" => {
            handle_as(
                app,
                request,
                Prober::Path(probe_generate_once, model),
                Shape::Gemini,
            )
            .await
        }
        "streamGenerateContent" => {
            handle_as(
                app,
                request,
                Prober::Path(probe_generate_stream, model),
                Shape::Gemini,
            )
            .await
        }
        "embedContent" => {
            handle_as(
                app,
                request,
                Prober::Path(probe_embed, model),
                Shape::Gemini,
            )
            .await
        }
        "countTokens" => {
            let r = async {
                let (_, _, body) = super::authenticated_body(&app, request).await?;
                let n = inbound::gemini::count_tokens(&body, &model)?;
                Ok::<_, GatewayError>(json!({"totalTokens": n}))
            };
            match r.await {
                Ok(v) => axum::Json(v).into_response(),
                Err(e) => {
                    let body = Shape::Gemini.error_body(&e);
                    e.into_response_with(body)
                }
            }
        }
        other => {
            let e = GatewayError::not_found(format!("The method `{other}` is not served."))
                .with_code("unknown_method");
            let body = Shape::Gemini.error_body(&e);
            e.into_response_with(body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each native shape holds on an estimate past what is counted ahead,
    /// and its recount is the whole count of the same prompt.
    #[test]
    fn long_native_prompts_are_estimated_and_recounted_whole() {
        let text = "Hello there, gateway. ".repeat(4_000);
        let responses = json!({"model": "gpt-4o", "input": text}).to_string();
        let messages = json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
            "messages": [{"role": "user", "content": text}]})
        .to_string();
        let generate = json!({"contents": [{"parts": [{"text": text}]}]}).to_string();
        let probes = [
            (probe_responses(responses.as_bytes()).unwrap(), &responses),
            (probe_messages(messages.as_bytes()).unwrap(), &messages),
            (
                probe_generate(generate.as_bytes(), "gemini-2.5-flash", false).unwrap(),
                &generate,
            ),
        ];
        for (probe, body) in probes {
            let recount = probe.recount.expect("an estimate");
            let whole = recount(&probe.model, body.as_bytes()).unwrap();
            assert!(whole > 20_000, "{whole}");
            assert!(
                probe.prompt_tokens.abs_diff(whole) * 100 <= whole,
                "{} against {whole}",
                probe.prompt_tokens
            );
        }
        let short = json!({"model": "gpt-4o", "input": "Hi"}).to_string();
        assert!(probe_responses(short.as_bytes()).unwrap().recount.is_none());
    }
}
