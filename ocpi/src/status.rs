//! The response envelope and status codes (OCPI 2.2.1 / 2.3.0
//! `transport_and_format.asciidoc` "Response format", `status_codes.asciidoc`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An OCPI status code: an open code space (partners send others), with the
/// specification's codes as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 1000: generic success.
    pub const SUCCESS: StatusCode = StatusCode(1000);
    /// 2000: generic client error.
    pub const CLIENT_ERROR: StatusCode = StatusCode(2000);
    /// 2001: invalid or missing parameters (e.g. PATCH without `last_updated`).
    pub const INVALID_PARAMETERS: StatusCode = StatusCode(2001);
    /// 2002: not enough information (e.g. an authorization without a Location).
    pub const NOT_ENOUGH_INFORMATION: StatusCode = StatusCode(2002);
    /// 2003: unknown Location.
    pub const UNKNOWN_LOCATION: StatusCode = StatusCode(2003);
    /// 2004: unknown Token.
    pub const UNKNOWN_TOKEN: StatusCode = StatusCode(2004);
    /// 3000: generic server error.
    pub const SERVER_ERROR: StatusCode = StatusCode(3000);
    /// 3001: unable to use the client's API (during registration).
    pub const UNABLE_TO_USE_CLIENT_API: StatusCode = StatusCode(3001);
    /// 3002: unsupported version.
    pub const UNSUPPORTED_VERSION: StatusCode = StatusCode(3002);
    /// 3003: no matching endpoints or expected endpoints missing.
    pub const NO_MATCHING_ENDPOINTS: StatusCode = StatusCode(3003);
    /// 4000: generic hub error (2.2+).
    pub const HUB_ERROR: StatusCode = StatusCode(4000);
    /// 4001: unknown receiver (hub routing).
    pub const UNKNOWN_RECEIVER: StatusCode = StatusCode(4001);
    /// 4002: the forwarded request timed out.
    pub const HUB_TIMEOUT: StatusCode = StatusCode(4002);
    /// 4003: the receiving party is not connected.
    pub const RECEIVER_NOT_CONNECTED: StatusCode = StatusCode(4003);

    /// 1xxx.
    pub fn is_success(self) -> bool {
        (1000..2000).contains(&self.0)
    }
    /// 2xxx: the client's fault.
    pub fn is_client_error(self) -> bool {
        (2000..3000).contains(&self.0)
    }
    /// 3xxx: the server's fault.
    pub fn is_server_error(self) -> bool {
        (3000..4000).contains(&self.0)
    }
    /// 4xxx: a hub's fault.
    pub fn is_hub_error(self) -> bool {
        (4000..5000).contains(&self.0)
    }
}

/// The body of every OCPI response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    /// The payload (absent on errors and on answers without content).
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// The OCPI status code.
    pub status_code: StatusCode,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// When the response was generated.
    pub timestamp: DateTime<Utc>,
}

impl<T> Response<T> {
    /// 1000 with `data`, stamped now.
    pub fn success(data: T) -> Self {
        Self {
            data: Some(data),
            status_code: StatusCode::SUCCESS,
            status_message: None,
            timestamp: Utc::now(),
        }
    }

    /// An error without data, stamped now.
    pub fn error(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            data: None,
            status_code: code,
            status_message: Some(message.into()),
            timestamp: Utc::now(),
        }
    }
}

/// The HTTP status for a request outcome (transport_and_format "HTTP
/// status codes"): a request that reached the OCPI layer gets 200 with an
/// OCPI code in the body, except a PUT that created an object (201).
/// Unparseable JSON is 400 and missing/unknown tokens are 401 before the
/// OCPI layer; an unknown resource on GET is 404.
pub fn http_status(code: StatusCode, created: bool) -> u16 {
    if code.is_success() && created {
        201
    } else {
        200
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let r = Response::success(serde_json::json!({"id": "LOC1"}));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status_code"], 1000);
        assert_eq!(v["data"]["id"], "LOC1");
        assert!(v.get("status_message").is_none());
        // Partners' envelopes without data, and with codes we do not know, parse.
        let r: Response<serde_json::Value> =
            serde_json::from_str(r#"{"status_code":2999,"timestamp":"2024-01-01T00:00:00Z"}"#)
                .unwrap();
        assert!(r.status_code.is_client_error() && r.data.is_none());
    }

    #[test]
    fn categories() {
        assert!(StatusCode::SUCCESS.is_success());
        assert!(StatusCode::UNKNOWN_TOKEN.is_client_error());
        assert!(StatusCode::NO_MATCHING_ENDPOINTS.is_server_error());
        assert!(StatusCode::RECEIVER_NOT_CONNECTED.is_hub_error());
        assert_eq!(http_status(StatusCode::SUCCESS, true), 201);
        assert_eq!(http_status(StatusCode::UNKNOWN_LOCATION, false), 200);
    }
}
