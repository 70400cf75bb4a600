//! The HTTP surface, assembled in one place.
//!
//! Middleware, outermost first:
//! 1. `SetRequestId`: every request gets an `x-request-id` (a client's is kept).
//! 2. `TraceLayer`: one span per request, tagged with the request id.
//! 3. `CatchPanic`: a panic becomes an OpenAI-shaped 500, never a dropped
//!    connection (none is expected; this is the last line of defence).
//! 4. `PropagateRequestId`: the id is echoed in the response.
//! 5. [`cut_at_shutdown`]: what still runs when a shutdown's grace period is
//!    over is cut.
//!
//! Bodies are read by the handlers under `body_limit_bytes` (413 in OpenAI's
//! shape), so axum's own limit is disabled.

use std::task::Poll;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cut_at_shutdown,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CatchPanicLayer::custom(|_| {
            GatewayError::internal("The gateway hit an unexpected error.").into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Once a shutdown's grace period is over ([`crate::Inner::shutdown`]), a
/// request still being handled is answered 503, and a response body still
/// being sent (a stream) is broken off: the client sees an incomplete
/// transfer, not a clean end it could take for the whole answer. Either way
/// the call's usage is settled as for a client that went away.
async fn cut_at_shutdown(
    State(app): State<AppState>,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    // The connection's token when served by [`crate::server::serve`]; the
    // gateway's own otherwise (a router driven directly).
    let cut = match request
        .extensions_mut()
        .remove::<crate::server::ConnectionCut>()
    {
        Some(connection) => connection.0,
        None => app.shutdown.clone(),
    };
    let response = tokio::select! {
        biased;
        response = next.run(request) => response,
        () = cut.cancelled() => {
            return GatewayError::unavailable("The gateway is shutting down: send the request again.")
                .with_code("shutting_down")
                .into_response();
        }
    };
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
