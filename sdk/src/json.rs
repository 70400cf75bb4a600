//! JSON helpers that turn serde failures into [`AdapterError`]s.

use serde_json::{Map, Value};

use crate::AdapterError;
use crate::errors;

/// Parse a client body that must be a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, AdapterError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(errors::invalid_request(
            "request body must be a JSON object",
        )),
        Err(e) => Err(errors::invalid_request(format!("invalid JSON body: {e}"))),
    }
}

/// Parse an upstream body that must be JSON; a failure is the upstream's.
pub fn parse_upstream(body: &[u8]) -> Result<Value, AdapterError> {
    serde_json::from_slice(body).map_err(|e| {
        errors::upstream(
            502,
            true,
            format!("upstream sent a body that is not valid JSON: {e}"),
        )
    })
}

/// Serialize a value the adapter built.
pub fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, AdapterError> {
    serde_json::to_vec(value).map_err(|e| errors::internal(format!("serializing JSON: {e}")))
}
