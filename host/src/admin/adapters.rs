//! Adapters through the admin API: list, upload (multipart `.wasm`),
//! delete. An upload is validated, compiled and smoke-tested before it is
//! stored; the other instances load it from the database within
//! `relay.channel_refresh_ms`.

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AdminResult;
use crate::AppState;
use crate::adapters::{LoadedAdapter, Source};
use crate::error::{ErrorKind, GatewayError};

fn adapter_json(a: &LoadedAdapter) -> Value {
    json!({
        "name": a.info.name,
        "version": a.info.version,
        "wit_version": a.wit_version,
        "endpoints": a.info.endpoints,
        "description": a.info.description,
        "hash": a.hash,
        "source": a.source,
        "builtin": a.source == Source::Builtin,
        "loaded_at": a.loaded_at,
        "in_flight": a.in_flight(),
        "idle": a.idle(),
        "hosting": a.hosting(),
        "healthy": a.health.is_healthy(),
        "unhealthy_until": a.health.unhealthy_until(),
    })
}

pub async fn list_adapters(State(app): State<AppState>) -> AdminResult {
    let data: Vec<Value> = app
        .runtime
        .adapters()
        .iter()
        .map(|a| adapter_json(a))
        .collect();
    Ok(Json(json!({ "data": data, "errors": app.runtime.load_errors() })).into_response())
}

pub async fn upload_adapter(State(app): State<AppState>, mut multipart: Multipart) -> AdminResult {
    let mut wasm = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| GatewayError::invalid(format!("Invalid multipart body: {e}")))?
    {
        if field.file_name().is_some() || field.name() == Some("file") {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| GatewayError::invalid(format!("Reading the upload failed: {e}")))?;
            wasm = Some(bytes);
            break;
        }
    }
    let wasm = wasm.filter(|w| !w.is_empty()).ok_or_else(|| {
        GatewayError::invalid("Send the component as a multipart file field named `file`.")
            .with_param("file")
    })?;
    let adapter = app
        .runtime
        .compile(&wasm, Source::Uploaded)
        .await
        .map_err(|e| {
            GatewayError::invalid(format!("The adapter was refused: {e:#}"))
                .with_code("invalid_adapter")
        })?;
    app.db
        .put_adapter(&adapter.info.name, &adapter.hash, &wasm)
        .await?;
    let adapter = app.runtime.install(adapter);
    Ok((StatusCode::CREATED, Json(adapter_json(&adapter))).into_response())
}

pub async fn delete_adapter(State(app): State<AppState>, Path(name): Path<String>) -> AdminResult {
    if app.runtime.uploaded(&name).is_none() && !app.db.delete_adapter(&name).await? {
        let status = if app.runtime.get(&name).is_some() {
            StatusCode::CONFLICT
        } else {
            StatusCode::NOT_FOUND
        };
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("No uploaded adapter `{name}` (built-in adapters and files in the adapters directory are not deleted here)."),
        )
        .with_status(status));
    }
    app.db.delete_adapter(&name).await?;
    app.runtime.remove(&name, Source::Uploaded);
    Ok(StatusCode::NO_CONTENT.into_response())
}
