//! Length-limited strings.
//!
//! OCPP bounds most strings (`CiString20Type` in 1.6, `string[0..20]` in 2.x; the
//! JSON schemas say `"maxLength": 20`). [`BoundedString<N>`] holds a string of at
//! most `N` characters (Unicode scalar values, as JSON Schema counts them), and
//! checks the bound whenever one is built or decoded, so a value that exists is
//! valid.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string of at most `N` characters.
///
/// Comparison is byte-wise, as on the wire: OCPP calls these strings
/// case-insensitive (`CiString`), but leaves comparison to the application,
/// which can use [`BoundedString::eq_ignore_ascii_case`].
///
/// ```
/// use evproto_ocpp_types::BoundedString;
/// let model: BoundedString<20> = "SuperCharger".parse().unwrap();
/// assert_eq!(model.as_str(), "SuperCharger");
/// assert!("x".repeat(21).parse::<BoundedString<20>>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BoundedString<const N: usize>(String);

/// A string was longer than its bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too long: {len} characters, at most {max} allowed")]
pub struct TooLong {
    /// The length of the rejected string, in characters.
    pub len: usize,
    /// The bound.
    pub max: usize,
}

/// Counts characters the way JSON Schema `maxLength` does, with a fast path
/// for strings whose byte length is already within the bound.
pub(crate) fn check_len(s: &str, max: usize) -> Result<(), TooLong> {
    if s.len() <= max {
        return Ok(());
    }
    let len = s.chars().count();
    if len <= max {
        Ok(())
    } else {
        Err(TooLong { len, max })
    }
}

impl<const N: usize> BoundedString<N> {
    /// The bound, in characters.
    pub const MAX_LEN: usize = N;

    /// Wraps `s` if it has at most `N` characters.
    ///
    /// # Errors
    ///
    /// [`TooLong`] if `s` has more than `N` characters.
    pub fn new(s: impl Into<String>) -> Result<Self, TooLong> {
        let s = s.into();
        check_len(&s, N)?;
        Ok(Self(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The inner `String`.
    pub fn into_string(self) -> String {
        self.0
    }

    /// ASCII case-insensitive comparison, as OCPP's `CiString` types are compared.
    pub fn eq_ignore_ascii_case(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl<const N: usize> Deref for BoundedString<N> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> AsRef<str> for BoundedString<N> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const N: usize> fmt::Display for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const N: usize> FromStr for BoundedString<N> {
    type Err = TooLong;
    fn from_str(s: &str) -> Result<Self, TooLong> {
        check_len(s, N)?;
        Ok(Self(s.to_owned()))
    }
}

impl<const N: usize> TryFrom<String> for BoundedString<N> {
    type Error = TooLong;
    fn try_from(s: String) -> Result<Self, TooLong> {
        Self::new(s)
    }
}

impl<const N: usize> TryFrom<&str> for BoundedString<N> {
    type Error = TooLong;
    fn try_from(s: &str) -> Result<Self, TooLong> {
        s.parse()
    }
}

impl<const N: usize> From<BoundedString<N>> for String {
    fn from(s: BoundedString<N>) -> String {
        s.0
    }
}

impl<const N: usize> PartialEq<str> for BoundedString<N> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl<const N: usize> PartialEq<&str> for BoundedString<N> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<const N: usize> Serialize for BoundedString<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

struct BoundedVisitor<const N: usize>;

impl<const N: usize> Visitor<'_> for BoundedVisitor<N> {
    type Value = BoundedString<N>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string of at most {N} characters")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        check_len(v, N).map_err(E::custom)?;
        Ok(BoundedString(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        check_len(&v, N).map_err(E::custom)?;
        Ok(BoundedString(v))
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedString<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(BoundedVisitor::<N>)
    }
}

impl<const N: usize> schemars::JsonSchema for BoundedString<N> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("BoundedString{N}").into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "maxLength": N })
    }
}

#[cfg(any(test, feature = "arbitrary"))]
impl<'a, const N: usize> arbitrary::Arbitrary<'a> for BoundedString<N> {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(crate::codec::arbitrary_text(u, N)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_counts_characters_not_bytes() {
        // 5 characters, 10 bytes.
        let s = "ééééé";
        assert!(BoundedString::<5>::new(s).is_ok());
        assert_eq!(BoundedString::<4>::new(s), Err(TooLong { len: 5, max: 4 }));
    }

    #[test]
    fn decode_rejects_over_long_and_non_strings() {
        assert!(serde_json::from_str::<BoundedString<3>>("\"abc\"").is_ok());
        let e = serde_json::from_str::<BoundedString<3>>("\"abcd\"").unwrap_err();
        assert!(e.to_string().starts_with("too long"), "{e}");
        let e = serde_json::from_str::<BoundedString<3>>("12").unwrap_err();
        assert!(e.to_string().starts_with("invalid type"), "{e}");
    }
}
