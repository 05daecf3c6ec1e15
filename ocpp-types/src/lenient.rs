//! The lenient policy: accept known real-charger quirks with a warning.
//!
//! Strict decoding ([`crate::from_str`]) is the default and the only mode a
//! conformance check should use. Deployed chargers, though, send a few
//! well-known deviations; a CSMS that refuses them strands drivers. With
//! [`Policy::lenient`], [`from_str_with`] repairs exactly these, records a
//! [`Warning`] for each repair, and still rejects everything else:
//!
//! | quirk | seen as | repair |
//! |---|---|---|
//! | enumeration value in the wrong case | `"accepted"` | the schema's spelling (`"Accepted"`) |
//! | unknown enumeration value, optional property | `"unit": "kilowatt"` | the property is dropped |
//! | string over its `maxLength` | a 60-character firmware version | cut to the bound |
//! | `date-time` without an offset | `"2024-05-01T10:00:00"` | read as UTC |
//! | `null` for an optional property | `"meterStop": null` | the property is dropped |
//!
//! An unknown enumeration value in a *required* property is still an error:
//! there is nothing to put in its place. Each warning keeps the original value.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{DecodeError, DecodeErrorKind};

/// Which quirks to accept. [`Policy::default`] is strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Policy {
    /// Map an enumeration value to the schema's spelling, ignoring case.
    pub enum_case: bool,
    /// Drop an optional property whose enumeration value is unknown.
    pub unknown_enum_value: bool,
    /// Cut strings longer than their `maxLength` to the bound.
    pub over_long_string: bool,
    /// Read a `date-time` without a UTC offset as UTC.
    pub naive_date_time: bool,
    /// Drop `null` optional properties.
    pub null_optional: bool,
}

impl Policy {
    /// Reject every deviation from the schema (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Accept every quirk in the table above.
    pub fn lenient() -> Self {
        Self {
            enum_case: true,
            unknown_enum_value: true,
            over_long_string: true,
            naive_date_time: true,
            null_optional: true,
        }
    }

    /// Sets [`Policy::enum_case`].
    pub fn with_enum_case(mut self, on: bool) -> Self {
        self.enum_case = on;
        self
    }

    /// Sets [`Policy::unknown_enum_value`].
    pub fn with_unknown_enum_value(mut self, on: bool) -> Self {
        self.unknown_enum_value = on;
        self
    }

    /// Sets [`Policy::over_long_string`].
    pub fn with_over_long_string(mut self, on: bool) -> Self {
        self.over_long_string = on;
        self
    }

    /// Sets [`Policy::naive_date_time`].
    pub fn with_naive_date_time(mut self, on: bool) -> Self {
        self.naive_date_time = on;
        self
    }

    /// Sets [`Policy::null_optional`].
    pub fn with_null_optional(mut self, on: bool) -> Self {
        self.null_optional = on;
        self
    }

    fn is_strict(&self) -> bool {
        *self == Self::strict()
    }
}

/// A repair made under the lenient policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// The rule the input broke.
    pub kind: DecodeErrorKind,
    /// Where.
    pub pointer: String,
    /// What was done.
    pub action: &'static str,
    /// The value as received.
    pub original: Value,
}

/// The most repairs made on one payload before giving up.
const MAX_REPAIRS: usize = 64;

/// Decodes `json` as `T` under `policy`, returning the repairs made.
///
/// # Errors
///
/// The first [`DecodeError`] the policy does not repair.
pub fn from_str_with<T: DeserializeOwned>(
    json: &str,
    policy: &Policy,
) -> Result<(T, Vec<Warning>), DecodeError> {
    let first = match crate::from_str::<T>(json) {
        Ok(v) => return Ok((v, Vec::new())),
        Err(e) if policy.is_strict() => return Err(e),
        Err(e) => e,
    };
    let Ok(mut doc) = serde_json::from_str::<Value>(json) else {
        return Err(first);
    };
    let mut warnings = Vec::new();
    let mut err = first;
    for _ in 0..MAX_REPAIRS {
        let Some(w) = repair(&mut doc, &err, policy) else {
            return Err(err);
        };
        warnings.push(w);
        let text = doc.to_string();
        match crate::from_str::<T>(&text) {
            Ok(v) => return Ok((v, warnings)),
            Err(e) => {
                // Dropping a property that turns out to be required is no repair.
                if e.kind() == DecodeErrorKind::MissingField
                    && warnings
                        .last()
                        .is_some_and(|w| w.pointer == e.pointer() && w.action == "dropped")
                {
                    return Err(err);
                }
                err = e;
            }
        }
    }
    Err(err)
}

fn split_pointer(p: &str) -> Option<(&str, String)> {
    let (parent, last) = p.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn drop_property(doc: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, key) = split_pointer(pointer)?;
    doc.pointer_mut(parent)?.as_object_mut()?.remove(&key)
}

fn repair(doc: &mut Value, err: &DecodeError, policy: &Policy) -> Option<Warning> {
    let pointer = err.pointer().to_owned();
    let original = doc.pointer(&pointer)?.clone();
    let warn = |action| {
        Some(Warning {
            kind: err.kind(),
            pointer: pointer.clone(),
            action,
            original: original.clone(),
        })
    };
    match err.kind() {
        DecodeErrorKind::UnknownEnumValue => {
            let got = original.as_str()?;
            if policy.enum_case {
                if let Some(v) = err
                    .expected_values()
                    .into_iter()
                    .find(|v| v.eq_ignore_ascii_case(got))
                {
                    *doc.pointer_mut(&pointer)? = Value::String(v.to_owned());
                    return warn("case corrected");
                }
            }
            if policy.unknown_enum_value {
                drop_property(doc, &pointer)?;
                return warn("dropped");
            }
            None
        }
        DecodeErrorKind::TooLong if policy.over_long_string => {
            let max = err.max_len()?;
            let cut: String = original.as_str()?.chars().take(max).collect();
            *doc.pointer_mut(&pointer)? = Value::String(cut);
            warn("truncated")
        }
        DecodeErrorKind::Format if policy.naive_date_time => {
            let s = original.as_str()?;
            let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
            let fixed = naive
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            *doc.pointer_mut(&pointer)? = Value::String(fixed);
            warn("read as UTC")
        }
        DecodeErrorKind::TypeMismatch if policy.null_optional && original.is_null() => {
            drop_property(doc, &pointer)?;
            warn("dropped")
        }
        _ => None,
    }
}
