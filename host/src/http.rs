//! The HTTP surface, assembled in one place.
//!
//! Every request goes through one middleware of Transit's own, [`edge`]:
//! 1. it gets an `x-request-id` (a client's is kept), echoed in the
//!    response;
//! 2. it runs in a span tagged with that id (free unless the log level
//!    takes `info` spans), and its end is logged at `debug` (at `warn` for
//!    a 5xx), with its status and latency;
//! 3. a panic becomes an OpenAI-shaped 500, never a dropped connection
//!    (none is expected; this is the last line of defence);
//! 4. what still runs when a shutdown's grace period is over is cut.
//!
//! One function instead of a layer for each step: every layer wraps the
//! request's future (and some the response body) once more. Replacing four
//! tower-http layers and a function of ours with this one saved about 9 µs
//! of CPU per request at 32 connections (`bench/README.md`).
//!
//! Bodies are read by the handlers under `body_limit_bytes` (413 in OpenAI's
//! shape), so axum's own limit is disabled.

use std::panic::AssertUnwindSafe;
use std::task::Poll;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{FutureExt, StreamExt};
use tracing::Instrument;

use crate::AppState;
use crate::error::GatewayError;
use crate::relay::{native, surface};
use crate::tasks::api as tasks;
use crate::{admin, relay};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/chat/completions", post(relay::chat_completions))
        .route("/completions", post(relay::completions))
        .route("/embeddings", post(relay::embeddings))
        .route("/models", get(relay::list_models))
        .route("/models/{id}", get(relay::get_model).post(native::gemini))
        .route("/messages", post(native::messages))
        .route("/responses", post(native::responses))
        .route("/messages/count_tokens", post(native::count_tokens))
        .route("/images/generations", post(surface::image_generations))
        .route("/images/generations/{id}", get(tasks::get_image_task))
        .route("/images/edits", post(surface::image_edits))
        .route("/images/variations", post(surface::image_variations))
        .route("/audio/transcriptions", post(surface::transcriptions))
        .route("/audio/translations", post(surface::translations))
        .route("/audio/speech", post(surface::speech))
        .route("/moderations", post(surface::moderations))
        .route("/rerank", post(surface::rerank))
        .route("/videos", post(tasks::create_video).get(tasks::list_videos))
        .route("/videos/{id}", get(tasks::get_video))
        .route("/videos/{id}/content", get(tasks::video_content))
        .route("/video/generations", post(tasks::create_generation))
        .route("/video/generations/{id}", get(tasks::get_generation));
    Router::new()
        .nest("/v1", v1)
        .route("/v1beta/models/{id}", post(native::gemini))
        .nest("/admin", admin::routes(state.clone()))
        .route("/api/user/topup", post(admin::redeem))
        .route("/health", get(health))
        .route("/", get(index))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// What every request goes through (see the module's documentation).
///
/// Once a shutdown's grace period is over ([`crate::Inner::shutdown`]), a
/// request still being handled is answered 503, and a response body still
/// being sent (a stream) is broken off: the client sees an incomplete
/// transfer, not a clean end it could take for the whole answer. Either way
/// the call's usage is settled as for a client that went away.
async fn edge(
    State(app): State<AppState>,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = match request.headers().get(&REQUEST_ID) {
        Some(id) => Some(id.clone()),
        None => {
            let mut text = uuid::Uuid::encode_buffer();
            let made = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
            let id = HeaderValue::from_str(made).ok();
            if let Some(id) = &id {
                request.headers_mut().insert(REQUEST_ID, id.clone());
            }
            id
        }
    };
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
    );
    // The connection's token when served by [`crate::server::serve`]; the
    // gateway's own otherwise (a router driven directly).
    let cut = match request
        .extensions_mut()
        .remove::<crate::server::ConnectionCut>()
    {
        Some(connection) => connection.0,
        None => app.shutdown.clone(),
    };
    let handled = AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .instrument(span.clone());
    let mut response = tokio::select! {
        biased;
        handled = handled => handled.unwrap_or_else(|_| {
            GatewayError::internal("The gateway hit an unexpected error.").into_response()
        }),
        () = cut.cancelled() => {
            GatewayError::unavailable("The gateway is shutting down: send the request again.")
                .with_code("shutting_down")
                .into_response()
        }
    };
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_millis() as u64;
    if response.status().is_server_error() {
        tracing::warn!(parent: &span, status, latency_ms, "request failed");
    } else {
        tracing::debug!(parent: &span, status, latency_ms, "request finished");
    }
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    if response.body().size_hint().exact().is_some() {
        // Whole already (not a stream): nothing to cut.
        return response;
    }
    response.map(|body| {
        let mut data = body.into_data_stream();
        let mut cut = Box::pin(cut.cancelled_owned());
        let mut over = false;
        Body::from_stream(futures_util::stream::poll_fn(move |cx| {
            if over {
                return Poll::Ready(None);
            }
            if cut.as_mut().poll(cx).is_ready() {
                over = true;
                return Poll::Ready(Some(Err(axum::Error::new(
                    "the gateway shut down before the answer was complete",
                ))));
            }
            data.poll_next_unpin(cx)
        }))
    })
}

async fn health() -> &'static str {
    "ok"
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../../web/index.html"))
}

async fn not_found(req: axum::extract::Request) -> Response {
    GatewayError::not_found(format!(
        "Unknown route: {} {}",
        req.method(),
        req.uri().path()
    ))
    .with_code("unknown_route")
    .with_status(StatusCode::NOT_FOUND)
    .into_response()
}
