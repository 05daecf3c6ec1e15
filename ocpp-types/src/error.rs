//! Decode errors: what failed, and where (a JSON pointer).
//!
//! A [`DecodeError`] says *what* rule of the schema was broken
//! ([`DecodeErrorKind`]); each version's `ErrorCode::for_decode_error` turns
//! that into the CALLERROR code that version prescribes.

use std::fmt;

use serde::de::DeserializeOwned;

/// The rule a payload broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The text is not JSON (or has trailing characters).
    Syntax,
    /// A value has the wrong JSON type (`"somestring": 12`), including `null`
    /// for an optional property.
    TypeMismatch,
    /// A required property is absent.
    MissingField,
    /// A property the schema does not define (`additionalProperties: false`).
    UnknownField,
    /// The same property appears twice in one object.
    DuplicateField,
    /// A string is longer than its `maxLength`.
    TooLong,
    /// A string is not one of its enumeration's values.
    UnknownEnumValue,
    /// A number is outside `minimum`/`maximum` or not a `multipleOf`.
    OutOfRange,
    /// A number does not fit OCPP's 32-bit integer, or its magnitude is
    /// beyond the range of a 96-bit decimal (±79228162514264337593543950335).
    /// Digits a decimal cannot hold (more than 28 decimal places) are not an
    /// error: the number is rounded to the nearest decimal.
    OutOfTypeRange,
    /// An array has fewer than `minItems` or more than `maxItems` items.
    ItemCount,
    /// A string does not match its `format` (`date-time`).
    Format,
    /// The action name is not one this version defines.
    UnknownAction,
}

/// A payload that failed to decode.
///
/// The [`Display`](fmt::Display) text is for people, not for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    pointer: String,
    message: String,
}

impl DecodeError {
    /// Builds an error.
    pub fn new(
        kind: DecodeErrorKind,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    /// An action name this version does not define.
    pub fn unknown_action(action: &str) -> Self {
        Self::new(
            DecodeErrorKind::UnknownAction,
            "",
            format!("unknown action `{action}`"),
        )
    }

    /// The rule broken.
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// Where, as an RFC 6901 JSON pointer (`""` is the whole payload). For a
    /// missing property it points at the property that should be there.
    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    /// A short human-readable reason.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For [`DecodeErrorKind::TooLong`], the `maxLength` broken.
    pub fn max_len(&self) -> Option<usize> {
        (self.kind == DecodeErrorKind::TooLong)
            .then(|| {
                self.message
                    .rsplit("at most ")
                    .next()?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .flatten()
    }

    /// For [`DecodeErrorKind::UnknownEnumValue`], the allowed values.
    pub fn expected_values(&self) -> Vec<&str> {
        if self.kind != DecodeErrorKind::UnknownEnumValue {
            return Vec::new();
        }
        match self.message.split_once("expected one of ") {
            Some((_, list)) => list.split(", ").map(|v| v.trim_matches('`')).collect(),
            None => Vec::new(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} at {}", self.message, self.pointer)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Sorts a serde_json error into a [`DecodeErrorKind`]: the one place that
/// reads error text, matching serde's fixed wording and our codecs' (see
/// `codec.rs`, `strings.rs`).
fn classify(e: &serde_json::Error) -> (DecodeErrorKind, String) {
    use serde_json::error::Category;
    let full = e.to_string();
    // serde_json appends " at line L column C"; keep the reason only.
    let msg = match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    };
    let kind = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => DecodeErrorKind::Syntax,
        Category::Data => {
            let starts = |p: &str| msg.starts_with(p);
            if starts("missing field") {
                DecodeErrorKind::MissingField
            } else if starts("unknown field") {
                DecodeErrorKind::UnknownField
            } else if starts("duplicate") {
                DecodeErrorKind::DuplicateField
            } else if starts("unknown variant") {
                DecodeErrorKind::UnknownEnumValue
            } else if starts("too long") {
                DecodeErrorKind::TooLong
            } else if starts("out of type range") {
                DecodeErrorKind::OutOfTypeRange
            } else if starts("out of range") {
                DecodeErrorKind::OutOfRange
            } else if starts("too many items") || starts("too few items") {
                DecodeErrorKind::ItemCount
            } else if starts("invalid date-time") || starts("invalid uri") {
                DecodeErrorKind::Format
            } else {
                // "invalid type: ...", "invalid value: ...", "invalid length ..."
                DecodeErrorKind::TypeMismatch
            }
        }
    };
    (kind, msg)
}

fn escape_token(t: &str, out: &mut String) {
    for c in t.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            Segment::Map { key } => {
                out.push('/');
                escape_token(key, &mut out);
            }
            Segment::Enum { variant } => {
                out.push('/');
                escape_token(variant, &mut out);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// The slow path: re-decode with path tracking to find the failing pointer.
#[cold]
#[inline(never)]
fn locate<T: DeserializeOwned>(json: &str, first: &serde_json::Error) -> DecodeError {
    // Text that is not JSON at all is a syntax error, whatever the typed
    // decoder tripped over first (`[` is "a sequence" to it).
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(json) {
        let (_, msg) = classify(&e);
        return DecodeError::new(DecodeErrorKind::Syntax, "", msg);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let (kind, msg, mut pointer) = match result {
        Err(e) => {
            let (kind, msg) = classify(e.inner());
            (kind, msg, pointer_of(e.path()))
        }
        // The payload decoded the second time: only trailing text was wrong.
        Ok(_) => {
            let (kind, msg) = classify(first);
            (kind, msg, String::new())
        }
    };
    match kind {
        // serde_path_to_error stops at the object; point at the property.
        DecodeErrorKind::MissingField => {
            if let Some(name) = msg.split('`').nth(1) {
                pointer.push('/');
                escape_token(name, &mut pointer);
            }
        }
        DecodeErrorKind::UnknownField | DecodeErrorKind::DuplicateField => {
            if let Some(name) = msg.split('`').nth(1) {
                let mut tail = String::from("/");
                escape_token(name, &mut tail);
                if !pointer.ends_with(&tail) {
                    pointer.push_str(&tail);
                }
            }
        }
        _ => {}
    }
    let msg = match msg.find(", expected one of") {
        // keep "unknown field `x`" short; the allowed list can be long
        Some(i) if kind == DecodeErrorKind::UnknownField => msg[..i].to_owned(),
        _ => msg,
    };
    DecodeError::new(kind, pointer, msg)
}

/// Decodes and validates `json` as `T`.
///
/// Valid input takes the fast path (plain serde_json); only a failure is
/// decoded a second time to find the JSON pointer of the fault.
///
/// # Errors
///
/// A [`DecodeError`] naming the first rule broken and where.
#[inline]
pub fn from_str<T: DeserializeOwned>(json: &str) -> Result<T, DecodeError> {
    match serde_json::from_str(json) {
        Ok(v) => Ok(v),
        Err(e) => Err(locate::<T>(json, &e)),
    }
}

/// Like [`from_str`], for bytes that should be UTF-8.
///
/// # Errors
///
/// A [`DecodeError`]; invalid UTF-8 is a [`DecodeErrorKind::Syntax`] error.
pub fn from_slice<T: DeserializeOwned>(json: &[u8]) -> Result<T, DecodeError> {
    match std::str::from_utf8(json) {
        Ok(s) => from_str(s),
        Err(e) => Err(DecodeError::new(
            DecodeErrorKind::Syntax,
            "",
            format!("invalid UTF-8: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_len_and_expected_values_are_recovered() {
        let e = DecodeError::new(
            DecodeErrorKind::TooLong,
            "/a",
            "too long: 30 characters, at most 20 allowed",
        );
        assert_eq!(e.max_len(), Some(20));
        let e = DecodeError::new(
            DecodeErrorKind::UnknownEnumValue,
            "/a",
            "unknown variant `x`, expected one of `A`, `B`",
        );
        assert_eq!(e.expected_values(), vec!["A", "B"]);
    }
}
