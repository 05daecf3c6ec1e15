//! Commands a CPO receives (`mod_commands`), typed in OCPI 2.2.1 terms
//! whatever the caller's version.
//!
//! A CPO's application answers `START_SESSION`, `STOP_SESSION`,
//! `RESERVE_NOW`, `CANCEL_RESERVATION` and `UNLOCK_CONNECTOR` with a
//! `CommandResponse` and sends the `CommandResult` to the command's
//! `response_url` later. [`Command::decode`] turns a command body of any
//! version into the generated 2.2.1 type, so the application handles one
//! shape:
//! - 2.1.1 tokens gain the `country_code`/`party_id` of the calling party
//!   and their `auth_id` becomes `contract_id` ([`crate::convert`]); a
//!   2.1.1 `reservation_id` (a number) becomes its decimal text;
//! - 2.3.0 tokens are converted down (fields 2.2.1 does not define are
//!   dropped);
//! - 2.1.1 has no `CANCEL_RESERVATION`.
//!
//! [`encode_response`] writes a 2.2.1 `CommandResponse` in the caller's
//! version (2.1.1 has `result` only).
//!
//! ```
//! use evproto_ocpi::commands::{Command, respond};
//! use evproto_ocpi::convert::Context;
//! use evproto_ocpi::v221::CommandResponseType;
//! use evproto_ocpi::Version;
//! use serde_json::json;
//!
//! // a 2.1.1 eMSP starts a session: its token has no country or party
//! let body = json!({"response_url": "https://emsp.example/commands/1",
//!     "token": {"uid": "04A1", "type": "RFID", "auth_id": "NL-EMS-C1", "issuer": "EMS",
//!               "valid": true, "whitelist": "ALLOWED", "last_updated": "2024-01-01T00:00:00Z"},
//!     "location_id": "CS1", "evse_uid": "CS1-1"});
//! let ctx = Context { country_code: "NL".into(), party_id: "EMS".into(), ..Context::default() };
//! let Command::StartSession(start) = Command::decode(Version::V211, "START_SESSION", &body, &ctx)? else {
//!     unreachable!()
//! };
//! assert_eq!(start.token.country_code.as_str(), "NL");
//! assert_eq!(start.token.contract_id.as_str(), "NL-EMS-C1");
//! assert_eq!(start.location_id.as_str(), "CS1");
//!
//! let answer = respond(CommandResponseType::Accepted, 30, "");
//! assert_eq!(answer.timeout, 30);
//! # Ok::<(), evproto_ocpi::commands::CommandError>(())
//! ```

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::convert::{convert, Context};
use crate::types::Str;
use crate::v221;
use crate::Version;

/// A command to a CPO, in 2.2.1 terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `START_SESSION`.
    StartSession(v221::StartSession),
    /// `STOP_SESSION`.
    StopSession(v221::StopSession),
    /// `RESERVE_NOW`.
    ReserveNow(v221::ReserveNow),
    /// `CANCEL_RESERVATION` (2.2.1 and later).
    CancelReservation(v221::CancelReservation),
    /// `UNLOCK_CONNECTOR`.
    UnlockConnector(v221::UnlockConnector),
}

/// Why a command body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The command is not one OCPI defines in that version.
    #[error("unknown command {0}")]
    Unknown(String),
    /// The body is not the command's object (or cannot be put in 2.2.1
    /// terms): the reason.
    #[error("{command}: {reason}")]
    Invalid {
        /// The command.
        command: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Command {
    /// The command name as OCPI writes it in the URL (`START_SESSION`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::StartSession(_) => "START_SESSION",
            Command::StopSession(_) => "STOP_SESSION",
            Command::ReserveNow(_) => "RESERVE_NOW",
            Command::CancelReservation(_) => "CANCEL_RESERVATION",
            Command::UnlockConnector(_) => "UNLOCK_CONNECTOR",
        }
    }

    /// Where the `CommandResult` goes.
    pub fn response_url(&self) -> &str {
        match self {
            Command::StartSession(c) => c.response_url.as_str(),
            Command::StopSession(c) => c.response_url.as_str(),
            Command::ReserveNow(c) => c.response_url.as_str(),
            Command::CancelReservation(c) => c.response_url.as_str(),
            Command::UnlockConnector(c) => c.response_url.as_str(),
        }
    }

    /// Reads the body of command `name` (upper case, as in the URL) sent in
    /// `version`; `ctx` names the calling party (the owner a 2.1.1 token is
    /// given).
    ///
    /// # Errors
    ///
    /// [`CommandError::Unknown`] for a command the version does not
    /// define, [`CommandError::Invalid`] for a body that is not its object.
    pub fn decode(
        version: Version,
        name: &str,
        body: &Value,
        ctx: &Context,
    ) -> Result<Command, CommandError> {
        let command: &'static str = match name {
            "START_SESSION" => "START_SESSION",
            "STOP_SESSION" => "STOP_SESSION",
            "RESERVE_NOW" => "RESERVE_NOW",
            "CANCEL_RESERVATION" if version != Version::V211 => "CANCEL_RESERVATION",
            "UNLOCK_CONNECTOR" => "UNLOCK_CONNECTOR",
            other => return Err(CommandError::Unknown(other.to_owned())),
        };
        let invalid = |reason: String| CommandError::Invalid { command, reason };
        let mut body = body.clone();
        if version != Version::V221 {
            if let Some(token) = body.get_mut("token") {
                let up = convert(version, Version::V221, "tokens", token, ctx)
                    .map_err(|e| invalid(format!("token: {e}")))?;
                *token = up.object;
            }
            if let Some(id) = body.get_mut("reservation_id") {
                if let Some(n) = id.as_i64() {
                    *id = Value::String(n.to_string());
                }
            }
        }
        fn read<T: DeserializeOwned>(body: Value) -> Result<T, String> {
            serde_json::from_value(body).map_err(|e| e.to_string())
        }
        Ok(match command {
            "START_SESSION" => Command::StartSession(read(body).map_err(invalid)?),
            "STOP_SESSION" => Command::StopSession(read(body).map_err(invalid)?),
            "RESERVE_NOW" => Command::ReserveNow(read(body).map_err(invalid)?),
            "CANCEL_RESERVATION" => Command::CancelReservation(read(body).map_err(invalid)?),
            _ => Command::UnlockConnector(read(body).map_err(invalid)?),
        })
    }
}

/// A `CommandResponse`: `timeout` in seconds (0 when decided at once) and,
/// unless empty, a reason in English (cut to OCPI's 512 characters).
pub fn respond(
    result: v221::CommandResponseType,
    timeout: i64,
    why: &str,
) -> v221::CommandResponse {
    let message = (!why.is_empty())
        .then(|| {
            let text: String = why.chars().take(512).collect();
            Some(v221::DisplayText {
                language: Str::new("en").ok()?,
                text: Str::new(text).ok()?,
                extra: Default::default(),
            })
        })
        .flatten();
    v221::CommandResponse {
        result,
        timeout,
        message: message.into_iter().collect(),
        extra: Default::default(),
    }
}

/// A 2.2.1 `CommandResponse` as a caller of `version` reads it (2.1.1 has
/// `result` only).
pub fn encode_response(version: Version, response: &v221::CommandResponse) -> Value {
    let mut v = serde_json::to_value(response).unwrap_or(Value::Null);
    if version == Version::V211 {
        if let Value::Object(map) = &mut v {
            map.retain(|k, _| k == "result");
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context {
            country_code: "DE".into(),
            party_id: "EMS".into(),
            ..Context::default()
        }
    }

    fn token_221() -> Value {
        json!({"country_code": "DE", "party_id": "EMS", "uid": "U1", "type": "RFID",
            "contract_id": "DE-EMS-C1", "issuer": "EMS", "valid": true, "whitelist": "ALLOWED",
            "last_updated": "2024-01-01T00:00:00Z"})
    }

    #[test]
    fn every_command_of_221_reads_as_itself() {
        let url = "https://emsp.example/r/1";
        let cases = [
            (
                "START_SESSION",
                json!({"response_url": url, "token": token_221(), "location_id": "L1", "evse_uid": "L1-1"}),
            ),
            (
                "STOP_SESSION",
                json!({"response_url": url, "session_id": "S1"}),
            ),
            (
                "RESERVE_NOW",
                json!({"response_url": url, "token": token_221(), "expiry_date": "2024-01-01T10:00:00Z",
                "reservation_id": "R1", "location_id": "L1"}),
            ),
            (
                "CANCEL_RESERVATION",
                json!({"response_url": url, "reservation_id": "R1"}),
            ),
            (
                "UNLOCK_CONNECTOR",
                json!({"response_url": url, "location_id": "L1", "evse_uid": "L1-1", "connector_id": "1"}),
            ),
        ];
        for (name, body) in cases {
            let c = Command::decode(Version::V221, name, &body, &ctx()).unwrap();
            assert_eq!(c.name(), name);
            assert_eq!(c.response_url(), url);
        }
    }

    #[test]
    fn a_211_reservation_gets_the_callers_identity_and_a_text_id() {
        let body = json!({"response_url": "https://e.example/r", "expiry_date": "2024-01-01T10:00:00Z",
            "reservation_id": 42, "location_id": "L1",
            "token": {"uid": "U1", "type": "RFID", "auth_id": "DE-EMS-C1", "issuer": "EMS", "valid": true,
                      "whitelist": "ALWAYS", "last_updated": "2024-01-01T00:00:00Z"}});
        let Command::ReserveNow(r) =
            Command::decode(Version::V211, "RESERVE_NOW", &body, &ctx()).unwrap()
        else {
            panic!("not a reservation")
        };
        assert_eq!(r.reservation_id.as_str(), "42");
        assert_eq!(
            (r.token.country_code.as_str(), r.token.party_id.as_str()),
            ("DE", "EMS")
        );
        assert_eq!(r.token.whitelist, v221::WhitelistType::Always);
    }

    #[test]
    fn unknown_and_malformed_commands_are_typed_errors() {
        let ctx = ctx();
        assert!(matches!(
            Command::decode(Version::V211, "CANCEL_RESERVATION", &json!({}), &ctx),
            Err(CommandError::Unknown(_))
        ));
        assert!(matches!(
            Command::decode(Version::V221, "SELF_DESTRUCT", &json!({}), &ctx),
            Err(CommandError::Unknown(_))
        ));
        let too_long = "S".repeat(37);
        for body in [
            json!({}),
            json!({"response_url": 5}),
            json!([1]),
            json!({"response_url": "https://e/r", "session_id": too_long}),
        ] {
            let r = Command::decode(Version::V221, "STOP_SESSION", &body, &ctx);
            assert!(
                matches!(
                    r,
                    Err(CommandError::Invalid {
                        command: "STOP_SESSION",
                        ..
                    })
                ),
                "{body}: {r:?}"
            );
        }
        let bad_token =
            json!({"response_url": "https://e/r", "location_id": "L1", "token": {"uid": 1}});
        assert!(matches!(
            Command::decode(Version::V230, "START_SESSION", &bad_token, &ctx),
            Err(CommandError::Invalid { .. })
        ));
    }

    #[test]
    fn a_response_keeps_to_what_the_callers_version_defines() {
        let r = respond(
            v221::CommandResponseType::Rejected,
            0,
            "station not connected",
        );
        assert_eq!(r.message[0].text.as_str(), "station not connected");
        assert_eq!(
            encode_response(Version::V211, &r),
            json!({"result": "REJECTED"})
        );
        let v = encode_response(Version::V230, &r);
        assert_eq!(v["timeout"], 0);
        assert_eq!(v["message"][0]["language"], "en");
        assert!(respond(v221::CommandResponseType::Accepted, 5, "")
            .message
            .is_empty());
        let long = "x".repeat(600);
        assert_eq!(
            respond(v221::CommandResponseType::Rejected, 0, &long).message[0]
                .text
                .as_str()
                .len(),
            512
        );
    }
}
