//! OCPP-J RPC framing: the JSON arrays that carry every message.
//!
//! | type | number | shape | versions |
//! |---|---|---|---|
//! | CALL | 2 | `[2, id, action, payload]` | all |
//! | CALLRESULT | 3 | `[3, id, payload]` | all |
//! | CALLERROR | 4 | `[4, id, code, description, details]` | all |
//! | CALLRESULTERROR | 5 | `[5, id, code, description, details]` | 2.1 |
//! | SEND | 6 | `[6, id, action, payload]` | 2.1 |
//!
//! (OCPP-J 1.6 §4, OCPP 2.0.1 Part 4 §4, OCPP 2.1 Part 4 §4.) [`Frame::parse`]
//! reads any of them without copying payloads; each version module's
//! `parse_frame` also refuses the message types that version lacks. Payloads
//! stay raw ([`RawValue`]) until typed decoding, so a proxy loses nothing.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The longest message id allowed (OCPP-J: "maximum of 36 characters").
pub const MAX_MESSAGE_ID_LEN: usize = 36;

/// The message type number, the first element of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// 2: a request.
    Call,
    /// 3: a successful response.
    CallResult,
    /// 4: an error response to a CALL.
    CallError,
    /// 5 (2.1): an error found while processing a CALLRESULT.
    CallResultError,
    /// 6 (2.1): an unconfirmed message, no response.
    Send,
}

impl MessageType {
    /// The number on the wire.
    pub fn number(self) -> u8 {
        match self {
            MessageType::Call => 2,
            MessageType::CallResult => 3,
            MessageType::CallError => 4,
            MessageType::CallResultError => 5,
            MessageType::Send => 6,
        }
    }

    /// The type for a wire number.
    pub fn from_number(n: u64) -> Option<Self> {
        Some(match n {
            2 => MessageType::Call,
            3 => MessageType::CallResult,
            4 => MessageType::CallError,
            5 => MessageType::CallResultError,
            6 => MessageType::Send,
            _ => return None,
        })
    }
}

/// A message id: a string of at most 36 characters, unique per sender among
/// outstanding CALLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// Wraps `id` if it is at most 36 characters.
    ///
    /// # Errors
    ///
    /// [`crate::TooLong`] otherwise.
    pub fn new(id: impl Into<String>) -> Result<Self, crate::TooLong> {
        let id = id.into();
        crate::strings::check_len(&id, MAX_MESSAGE_ID_LEN)?;
        Ok(Self(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = crate::TooLong;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// An error frame's fields (CALLERROR and CALLRESULTERROR).
#[derive(Debug, Clone)]
pub struct ErrorParts<'a> {
    /// The error code, as spelled on the wire (see each version's `ErrorCode`).
    pub code: Cow<'a, str>,
    /// The description (may be empty).
    pub description: Cow<'a, str>,
    /// The details object.
    pub details: &'a RawValue,
}

/// One parsed frame, borrowing from the text it was parsed from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// `[2, id, action, payload]`.
    Call {
        /// Message id.
        id: Cow<'a, str>,
        /// Action name.
        action: Cow<'a, str>,
        /// The request payload (a JSON object).
        payload: &'a RawValue,
    },
    /// `[3, id, payload]`.
    CallResult {
        /// Message id of the CALL answered.
        id: Cow<'a, str>,
        /// The response payload (a JSON object).
        payload: &'a RawValue,
    },
    /// `[4, id, code, description, details]`.
    CallError {
        /// Message id of the CALL answered.
        id: Cow<'a, str>,
        /// Code, description and details.
        error: ErrorParts<'a>,
    },
    /// `[5, id, code, description, details]` (2.1).
    CallResultError {
        /// Message id of the CALLRESULT that could not be processed.
        id: Cow<'a, str>,
        /// Code, description and details.
        error: ErrorParts<'a>,
    },
    /// `[6, id, action, payload]` (2.1).
    Send {
        /// Message id.
        id: Cow<'a, str>,
        /// Action name.
        action: Cow<'a, str>,
        /// The payload (a JSON object).
        payload: &'a RawValue,
    },
}

/// What was wrong with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameErrorKind {
    /// Not JSON.
    NotJson,
    /// JSON, but not an array.
    NotArray,
    /// The first element is not a message type number.
    BadMessageType,
    /// A message type number this version does not know.
    UnknownMessageType,
    /// The message id is absent, not a string, or over 36 characters.
    BadMessageId,
    /// The id is readable but an element is missing, extra or of the wrong type.
    BadStructure,
    /// The payload (or CALLERROR details) is not a JSON object.
    PayloadNotObject,
}

/// A frame that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    kind: FrameErrorKind,
    id: Option<String>,
    message_type: Option<u64>,
    message: String,
}

impl FrameError {
    /// A frame that is not JSON (e.g. not UTF-8).
    pub fn not_json(message: impl Into<String>) -> Self {
        Self {
            kind: FrameErrorKind::NotJson,
            id: None,
            message_type: None,
            message: message.into(),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> FrameErrorKind {
        self.kind
    }

    /// The message id, if it could be read: a CALLERROR can then answer it.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The message type number, if it could be read.
    pub fn message_type(&self) -> Option<u64> {
        self.message_type
    }

    /// A short reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FrameError {}

/// Partial progress while parsing, so an error can still report the id.
#[derive(Default)]
struct Progress {
    id: Option<String>,
    message_type: Option<u64>,
    kind: Option<FrameErrorKind>,
}

struct FrameVisitor<'p> {
    progress: &'p mut Progress,
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

impl<'de> Visitor<'de> for FrameVisitor<'_> {
    type Value = Frame<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OCPP-J frame array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Frame<'de>, A::Error> {
        let p = self.progress;
        let fail = |p: &mut Progress, kind, msg: &str| -> A::Error {
            p.kind = Some(kind);
            de::Error::custom(msg)
        };
        let ty: u64 = match seq.next_element::<&RawValue>()? {
            Some(raw) => match raw.get().parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    return Err(fail(
                        p,
                        FrameErrorKind::BadMessageType,
                        "message type is not a number",
                    ))
                }
            },
            None => return Err(fail(p, FrameErrorKind::BadMessageType, "empty frame")),
        };
        p.message_type = Some(ty);
        let Some(mtype) = MessageType::from_number(ty) else {
            // Still read the id so the error can be answered.
            if let Ok(Some(id)) = seq.next_element::<Cow<'de, str>>() {
                if id.chars().count() <= MAX_MESSAGE_ID_LEN {
                    p.id = Some(id.into_owned());
                }
            }
            return Err(fail(
                p,
                FrameErrorKind::UnknownMessageType,
                &format!("unknown message type {ty}"),
            ));
        };
        let id: Cow<'de, str> = match seq.next_element::<Cow<'de, str>>() {
            Ok(Some(id)) if id.chars().count() <= MAX_MESSAGE_ID_LEN => id,
            Ok(Some(_)) => {
                return Err(fail(
                    p,
                    FrameErrorKind::BadMessageId,
                    "message id longer than 36 characters",
                ))
            }
            _ => {
                return Err(fail(
                    p,
                    FrameErrorKind::BadMessageId,
                    "message id is not a string",
                ))
            }
        };
        p.id = Some(id.clone().into_owned());
        let bad = |p: &mut Progress, what: &str| fail(p, FrameErrorKind::BadStructure, what);
        let frame = match mtype {
            MessageType::Call | MessageType::Send => {
                let action = match seq.next_element::<Cow<'de, str>>() {
                    Ok(Some(a)) => a,
                    _ => return Err(bad(p, "action is not a string")),
                };
                let payload = match seq.next_element::<&'de RawValue>() {
                    Ok(Some(v)) => v,
                    _ => return Err(bad(p, "payload missing")),
                };
                if !is_object(payload) {
                    return Err(fail(
                        p,
                        FrameErrorKind::PayloadNotObject,
                        "payload is not a JSON object",
                    ));
                }
                if mtype == MessageType::Call {
                    Frame::Call {
                        id,
                        action,
                        payload,
                    }
                } else {
                    Frame::Send {
                        id,
                        action,
                        payload,
                    }
                }
            }
            MessageType::CallResult => {
                let payload = match seq.next_element::<&'de RawValue>() {
                    Ok(Some(v)) => v,
                    _ => return Err(bad(p, "payload missing")),
                };
                if !is_object(payload) {
                    return Err(fail(
                        p,
                        FrameErrorKind::PayloadNotObject,
                        "payload is not a JSON object",
                    ));
                }
                Frame::CallResult { id, payload }
            }
            MessageType::CallError | MessageType::CallResultError => {
                let code = match seq.next_element::<Cow<'de, str>>() {
                    Ok(Some(c)) => c,
                    _ => return Err(bad(p, "error code is not a string")),
                };
                let description = match seq.next_element::<Cow<'de, str>>() {
                    Ok(Some(c)) => c,
                    _ => return Err(bad(p, "error description is not a string")),
                };
                let details = match seq.next_element::<&'de RawValue>() {
                    Ok(Some(v)) => v,
                    _ => return Err(bad(p, "error details missing")),
                };
                if !is_object(details) {
                    return Err(fail(
                        p,
                        FrameErrorKind::PayloadNotObject,
                        "error details is not a JSON object",
                    ));
                }
                let error = ErrorParts {
                    code,
                    description,
                    details,
                };
                if mtype == MessageType::CallError {
                    Frame::CallError { id, error }
                } else {
                    Frame::CallResultError { id, error }
                }
            }
        };
        match seq.next_element::<&'de RawValue>() {
            Ok(None) => Ok(frame),
            _ => Err(bad(p, "too many elements in frame")),
        }
    }
}

impl<'a> Frame<'a> {
    /// Parses a frame of any message type (2 to 6).
    ///
    /// # Errors
    ///
    /// A [`FrameError`] saying what was wrong and, when it could be read, the
    /// message id.
    pub fn parse(text: &'a str) -> Result<Frame<'a>, FrameError> {
        let mut progress = Progress::default();
        let mut de = serde_json::Deserializer::from_str(text);
        let first = text.trim_start().as_bytes().first().copied();
        let result = (&mut de)
            .deserialize_seq(FrameVisitor {
                progress: &mut progress,
            })
            .and_then(|f| de.end().map(|()| f));
        match result {
            Ok(frame) => Ok(frame),
            Err(e) => {
                // A syntax error anywhere wins over what the visitor saw.
                let is_json = serde_json::from_str::<de::IgnoredAny>(text).is_ok();
                let kind = match progress.kind {
                    _ if !is_json => FrameErrorKind::NotJson,
                    Some(k) => k,
                    None if first != Some(b'[') => FrameErrorKind::NotArray,
                    None => FrameErrorKind::BadStructure,
                };
                let message = match kind {
                    FrameErrorKind::NotJson => format!("not JSON: {e}"),
                    FrameErrorKind::NotArray => "frame is not a JSON array".to_owned(),
                    _ => {
                        let s = e.to_string();
                        match s.rfind(" at line ") {
                            Some(i) => s[..i].to_owned(),
                            None => s,
                        }
                    }
                };
                Err(FrameError {
                    kind,
                    id: progress.id,
                    message_type: progress.message_type,
                    message,
                })
            }
        }
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Frame::Call { .. } => MessageType::Call,
            Frame::CallResult { .. } => MessageType::CallResult,
            Frame::CallError { .. } => MessageType::CallError,
            Frame::CallResultError { .. } => MessageType::CallResultError,
            Frame::Send { .. } => MessageType::Send,
        }
    }

    /// The message id.
    pub fn id(&self) -> &str {
        match self {
            Frame::Call { id, .. }
            | Frame::CallResult { id, .. }
            | Frame::CallError { id, .. }
            | Frame::CallResultError { id, .. }
            | Frame::Send { id, .. } => id,
        }
    }
}

/// Parses a frame, refusing message types outside `allowed` as
/// [`FrameErrorKind::UnknownMessageType`].
pub(crate) fn parse_for<'a>(
    text: &'a str,
    allowed: &[MessageType],
) -> Result<Frame<'a>, FrameError> {
    let frame = Frame::parse(text)?;
    let mtype = frame.message_type();
    if allowed.contains(&mtype) {
        Ok(frame)
    } else {
        Err(FrameError {
            kind: FrameErrorKind::UnknownMessageType,
            id: Some(frame.id().to_owned()),
            message_type: Some(u64::from(mtype.number())),
            message: format!(
                "message type {} is not supported by this version",
                mtype.number()
            ),
        })
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // Serializing a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Writes `[2, id, action, payload]`.
pub fn call_to_string(id: &str, action: &str, payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() + action.len() + id.len() + 16);
    out.push_str("[2,");
    push_json_str(&mut out, id);
    out.push(',');
    push_json_str(&mut out, action);
    out.push(',');
    out.push_str(payload);
    out.push(']');
    out
}

/// Writes `[6, id, action, payload]` (2.1 SEND).
pub fn send_to_string(id: &str, action: &str, payload: &str) -> String {
    let mut out = call_to_string(id, action, payload);
    out.replace_range(1..2, "6");
    out
}

/// Writes `[3, id, payload]`.
pub fn call_result_to_string(id: &str, payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() + id.len() + 8);
    out.push_str("[3,");
    push_json_str(&mut out, id);
    out.push(',');
    out.push_str(payload);
    out.push(']');
    out
}

/// Writes `[4, id, code, description, details]`, or with `result_error`
/// `[5, ...]` (2.1 CALLRESULTERROR). `details` must be a JSON object text.
pub fn call_error_to_string(
    id: &str,
    code: &str,
    description: &str,
    details: &str,
    result_error: bool,
) -> String {
    let mut out =
        String::with_capacity(id.len() + code.len() + description.len() + details.len() + 16);
    out.push_str(if result_error { "[5," } else { "[4," });
    push_json_str(&mut out, id);
    out.push(',');
    push_json_str(&mut out, code);
    out.push(',');
    push_json_str(&mut out, description);
    out.push(',');
    out.push_str(details);
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_message_type() {
        let f = Frame::parse(r#"[2,"1","Heartbeat",{}]"#).unwrap();
        assert!(matches!(f, Frame::Call { ref action, .. } if action == "Heartbeat"));
        let f = Frame::parse(r#"[3, "1", {"currentTime":"x"}]"#).unwrap();
        assert_eq!(f.message_type(), MessageType::CallResult);
        let f = Frame::parse(r#"[4,"1","NotImplemented","",{}]"#).unwrap();
        assert_eq!(f.id(), "1");
        let f = Frame::parse(r#"[5,"1","InternalError","x",{}]"#).unwrap();
        assert_eq!(f.message_type(), MessageType::CallResultError);
        let f = Frame::parse(r#"[6,"9","NotifyPeriodicEventStream",{}]"#).unwrap();
        assert_eq!(f.message_type(), MessageType::Send);
    }

    #[test]
    fn classifies_malformed_frames() {
        let k = |t: &str| Frame::parse(t).unwrap_err().kind();
        assert_eq!(k("not json"), FrameErrorKind::NotJson);
        assert_eq!(k("[2,\"1\""), FrameErrorKind::NotJson);
        assert_eq!(k("{}"), FrameErrorKind::NotArray);
        assert_eq!(k("[]"), FrameErrorKind::BadMessageType);
        assert_eq!(k("[\"2\",\"1\",\"A\",{}]"), FrameErrorKind::BadMessageType);
        assert_eq!(k("[7,\"1\",\"A\",{}]"), FrameErrorKind::UnknownMessageType);
        assert_eq!(k("[2,1,\"A\",{}]"), FrameErrorKind::BadMessageId);
        let long = format!("[2,\"{}\",\"A\",{{}}]", "x".repeat(37));
        assert_eq!(k(&long), FrameErrorKind::BadMessageId);
        assert_eq!(k("[2,\"1\",\"A\"]"), FrameErrorKind::BadStructure);
        assert_eq!(k("[2,\"1\",\"A\",{},1]"), FrameErrorKind::BadStructure);
        assert_eq!(k("[2,\"1\",\"A\",[]]"), FrameErrorKind::PayloadNotObject);
        // the id survives errors after it
        assert_eq!(
            Frame::parse("[2,\"abc\",5,{}]").unwrap_err().id(),
            Some("abc")
        );
        assert_eq!(
            Frame::parse("[9,\"abc\",5,{}]").unwrap_err().id(),
            Some("abc")
        );
    }

    #[test]
    fn writes_frames() {
        assert_eq!(
            call_to_string("1", "Heartbeat", "{}"),
            r#"[2,"1","Heartbeat",{}]"#
        );
        assert_eq!(send_to_string("1", "X", "{}"), r#"[6,"1","X",{}]"#);
        assert_eq!(call_result_to_string("a\"b", "{}"), r#"[3,"a\"b",{}]"#);
        assert_eq!(
            call_error_to_string("1", "NotImplemented", "no", "{}", false),
            r#"[4,"1","NotImplemented","no",{}]"#
        );
        for text in [
            call_to_string("x", "A", "{\"a\":1}"),
            call_error_to_string("1", "C", "d", "{}", true),
        ] {
            assert!(Frame::parse(&text).is_ok(), "{text}");
        }
    }
}
