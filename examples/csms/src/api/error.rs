//! The API's one error type: a status and a JSON reason (`{"error": ...}`),
//! with the conversions from the errors handlers meet.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An API error: status and reason.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub Value);

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError(status, json!({"error": reason.into()}))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if matches!(e, crate::store::StoreError::BadCursor) {
            return ApiError::new(StatusCode::BAD_REQUEST, format!("cursor: {e}"));
        }
        tracing::error!("store: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
    }
}

impl From<crate::gateway::StationCallError> for ApiError {
    /// 404 not connected, 504 no answer in time or the connection lost
    /// with the call on the wire, 502 a CALLERROR (with its
    /// code, description and details) or a broken answer, 422 a request the
    /// station's version cannot carry.
    fn from(e: crate::gateway::StationCallError) -> Self {
        use crate::gateway::StationCallError as E;
        match e {
            E::NotConnected { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            E::Timeout { .. } | E::ConnectionLost { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string())
            }
            E::CallError {
                code,
                description,
                details,
                ..
            } => ApiError(
                StatusCode::BAD_GATEWAY,
                json!({"error": "the station answered with a CALLERROR", "code": code, "description": description,
                    "details": serde_json::from_str::<Value>(&details).unwrap_or(Value::Null)}),
            ),
            E::BadAnswer { .. } => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
            E::Rejected { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            E::OwnerUnreachable { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

/// What a handler answers: a response, or an [`ApiError`].
pub type ApiResult = Result<Response, ApiError>;

impl From<crate::payments::PaymentError> for ApiError {
    fn from(e: crate::payments::PaymentError) -> Self {
        match e {
            crate::payments::PaymentError::Store(e) => e.into(),
            e => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}
