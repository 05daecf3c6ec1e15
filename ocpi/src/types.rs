//! The primitive types every OCPI version shares (`types.asciidoc`):
//! bounded strings, case-insensitive strings, timestamps, numbers, and the
//! map that keeps fields a version does not define.
//!
//! Every type checks its bounds when it is built or decoded, so a value that
//! exists is valid: `CiString<3>` never holds four characters.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::str::FromStr;

use chrono::{NaiveDateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Fields an object carries that its version does not define. OCPI 2.3.0
/// ("Non-specified JSON fields") forbids rejecting them; we keep them and
/// send them back unchanged.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// A value did not fit its OCPI type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// Longer than the field allows.
    #[error("too long: {len} characters, at most {max} allowed")]
    TooLong {
        /// Length of the rejected value, in characters.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A `CiString` held a character outside printable ASCII.
    #[error("CiString allows printable ASCII only, found {0:?}")]
    NotAscii(char),
}

fn check_len(s: &str, max: usize) -> Result<(), TypeError> {
    if s.len() <= max {
        return Ok(());
    }
    let len = s.chars().count();
    if len <= max {
        Ok(())
    } else {
        Err(TypeError::TooLong { len, max })
    }
}

/// `string(n)`: a case-sensitive string of at most `N` characters.
///
/// ```
/// use evproto_ocpi::types::Str;
/// let currency: Str<3> = "EUR".parse().unwrap();
/// assert_eq!(currency.as_str(), "EUR");
/// assert!("EURO".parse::<Str<3>>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Str<const N: usize>(String);

impl<const N: usize> Str<N> {
    /// The bound, in characters.
    pub const MAX_LEN: usize = N;

    /// Wraps `s` if it has at most `N` characters.
    pub fn new(s: impl Into<String>) -> Result<Self, TypeError> {
        let s = s.into();
        check_len(&s, N)?;
        Ok(Self(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// `CiString(n)`: a case-insensitive string of printable ASCII, at most `N`
/// characters. Comparison and hashing ignore ASCII case; the value keeps the
/// case it was written in, so it goes back on the wire unchanged.
///
/// ```
/// use evproto_ocpi::types::CiString;
/// let a: CiString<3> = "abc".parse().unwrap();
/// let b: CiString<3> = "ABC".parse().unwrap();
/// assert_eq!(a, b);
/// assert_eq!(b.as_str(), "ABC");
/// assert!("abcd".parse::<CiString<3>>().is_err());
/// assert!("é".parse::<CiString<3>>().is_err());
/// ```
#[derive(Clone, Default)]
pub struct CiString<const N: usize = { usize::MAX }>(String);

impl<const N: usize> CiString<N> {
    /// The bound, in characters.
    pub const MAX_LEN: usize = N;

    /// Wraps `s` if it is printable ASCII of at most `N` characters.
    pub fn new(s: impl Into<String>) -> Result<Self, TypeError> {
        let s = s.into();
        if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(TypeError::NotAscii(c));
        }
        check_len(&s, N)?;
        Ok(Self(s))
    }

    /// The string, in the case it was written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const N: usize> PartialEq for CiString<N> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl<const N: usize> Eq for CiString<N> {}

impl<const N: usize> PartialEq<str> for CiString<N> {
    fn eq(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl<const N: usize> PartialEq<&str> for CiString<N> {
    fn eq(&self, other: &&str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl<const N: usize> Hash for CiString<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

macro_rules! string_impls {
    ($ty:ident, $what:literal) => {
        impl<const N: usize> Deref for $ty<N> {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl<const N: usize> AsRef<str> for $ty<N> {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<const N: usize> Borrow<str> for $ty<N> {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<const N: usize> fmt::Debug for $ty<N> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl<const N: usize> fmt::Display for $ty<N> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<const N: usize> FromStr for $ty<N> {
            type Err = TypeError;
            fn from_str(s: &str) -> Result<Self, TypeError> {
                Self::new(s)
            }
        }

        impl<const N: usize> TryFrom<String> for $ty<N> {
            type Error = TypeError;
            fn try_from(s: String) -> Result<Self, TypeError> {
                Self::new(s)
            }
        }

        impl<const N: usize> TryFrom<&str> for $ty<N> {
            type Error = TypeError;
            fn try_from(s: &str) -> Result<Self, TypeError> {
                Self::new(s)
            }
        }

        impl<const N: usize> Serialize for $ty<N> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de, const N: usize> Deserialize<'de> for $ty<N> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<const N: usize>;
                impl<const N: usize> Visitor<'_> for V<N> {
                    type Value = $ty<N>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        if N == usize::MAX {
                            write!(f, $what)
                        } else {
                            write!(f, concat!($what, " of at most {} characters"), N)
                        }
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        $ty::new(v).map_err(E::custom)
                    }
                    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                        $ty::new(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V::<N>)
            }
        }
    };
}

string_impls!(Str, "a string");
string_impls!(CiString, "a printable ASCII string");

/// `URL`: an absolute URL, at most 255 characters (2.2.1 `types.asciidoc`
/// "URL type"). Kept as written.
pub type Url = Str<255>;

/// `DateTime`: an RFC 3339 timestamp in UTC.
///
/// Reading is lenient where the spec is: a timestamp without a zone
/// designator is UTC (2.2.1 `types.asciidoc`, "DateTime type"), and other
/// offsets are converted. Writing always uses `Z`, with fractional seconds
/// only when there are any.
///
/// ```
/// use evproto_ocpi::types::DateTime;
/// let t: DateTime = serde_json::from_str("\"2015-06-29T20:39:09\"").unwrap();
/// assert_eq!(serde_json::to_string(&t).unwrap(), "\"2015-06-29T20:39:09Z\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(pub chrono::DateTime<Utc>);

impl DateTime {
    /// Parses an OCPI timestamp.
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Some(Self(t.with_timezone(&Utc)));
        }
        for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
                return Some(Self(Utc.from_utc_datetime(&t)));
            }
        }
        None
    }

    /// The timestamp as OCPI writes it.
    pub fn to_wire(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(t: chrono::DateTime<Utc>) -> Self {
        Self(t)
    }
}

impl Deref for DateTime {
    type Target = chrono::DateTime<Utc>;
    fn deref(&self) -> &chrono::DateTime<Utc> {
        &self.0
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_wire())
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DateTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DateTime, E> {
                DateTime::parse(v)
                    .ok_or_else(|| E::custom(format_args!("not an RFC 3339 timestamp: {v:?}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// Serde adapters for `number` fields held as [`Decimal`].
///
/// A JSON number is read through its shortest decimal form, so `0.1` is
/// exactly `0.1` (the 15 significant digits a JSON number reliably carries
/// are kept; money never needs more). Numbers written as strings are
/// accepted too, as some peers send them. Writing uses the decimal's own
/// digits, so `0.10` stays `0.10`.
pub mod decimal {
    use super::*;

    pub(crate) struct DecVisitor;

    impl Visitor<'_> for DecVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            if !v.is_finite() {
                return Err(E::custom("not a finite number"));
            }
            // `Display` for f64 writes the shortest text that reads back
            // as the same double: the digits the peer wrote.
            let text = v.to_string();
            Decimal::from_str_exact(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .map_err(|_| E::custom(format_args!("{v} does not fit a 96-bit decimal")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            let t = v.trim();
            Decimal::from_str_exact(t)
                .or_else(|_| Decimal::from_scientific(t))
                .map_err(|_| E::custom(format_args!("not a number: {v:?}")))
        }
    }

    /// Writes the decimal as a JSON number with its own digits.
    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(v.normalize_zero().to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }

    /// Reads a JSON number (or a numeric string).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecVisitor)
    }

    trait NormalizeZero {
        fn normalize_zero(&self) -> Decimal;
    }

    impl NormalizeZero for Decimal {
        /// `-0` has no JSON spelling worth sending.
        fn normalize_zero(&self) -> Decimal {
            if self.is_zero() {
                let mut z = *self;
                z.set_sign_positive(true);
                z
            } else {
                *self
            }
        }
    }
}

/// [`decimal`] for optional fields.
pub mod decimal_opt {
    use super::*;

    /// Writes the decimal, if any (fields using this skip `None`).
    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => decimal::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a number, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Decimal>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                decimal::deserialize(d).map(Some)
            }
        }
        d.deserialize_option(V)
    }
}

/// Reads a `*` list: absent (with `#[serde(default)]`), `null` and `[]` are
/// all the empty list.
pub fn vec_or_null<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Reads a `+` list, which must hold at least one element.
pub fn non_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v = Vec::<T>::deserialize(d)?;
    if v.is_empty() {
        return Err(de::Error::custom("must hold at least one element"));
    }
    Ok(v)
}

/// Implements `Serialize`, `Deserialize`, `Display` and `FromStr` for a
/// generated enum from its `as_str`/`from_wire`/`VALUES`.
macro_rules! wire_enum {
    ($name:ident) => {
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_wire(&s).ok_or_else(|| {
                    <D::Error as ::serde::de::Error>::unknown_variant(&s, Self::VALUES)
                })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::types::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_wire(s).ok_or_else(|| $crate::types::UnknownValue(s.to_string()))
            }
        }
    };
}
pub(crate) use wire_enum;

/// Defines a version's `VersionDetails` (the version details endpoint's
/// data) from its generated `VersionNumber` and `Endpoint`.
macro_rules! version_details {
    () => {
        /// The version details endpoint's data: this version's endpoints
        /// (`version_information_endpoint`, "Version details endpoint").
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        pub struct VersionDetails {
            /// The version number.
            pub version: VersionNumber,
            /// The endpoints this party offers in this version.
            #[serde(deserialize_with = "crate::types::non_empty")]
            pub endpoints: Vec<Endpoint>,
            /// Fields this version does not define, kept and sent back unchanged.
            #[serde(flatten)]
            pub extra: crate::types::Extra,
        }
    };
}
pub(crate) use version_details;

/// A string is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Num {
        #[serde(with = "decimal")]
        v: Decimal,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "decimal_opt")]
        o: Option<Decimal>,
    }

    #[test]
    fn numbers_keep_their_digits() {
        let n: Num = serde_json::from_str(r#"{"v": 0.1, "o": 2.50}"#).unwrap();
        assert_eq!(n.v, Decimal::new(1, 1));
        assert_eq!(n.o, Some(Decimal::new(25, 1)));
        assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"v":0.1,"o":2.5}"#);
        let n: Num = serde_json::from_str(r#"{"v": "12.340", "o": null}"#).unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), r#"{"v":12.340}"#);
        assert!(serde_json::from_str::<Num>(r#"{"v": true}"#).is_err());
        assert!(serde_json::from_str::<Num>(r#"{"v": "abc"}"#).is_err());
        assert!(serde_json::from_str::<Num>(r#"{"v": 1e40}"#).is_err());
        // Through serde_json::Value too.
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["v"], serde_json::json!(12.34));
    }

    #[test]
    fn timestamps() {
        for (input, out) in [
            ("2015-06-29T20:39:09Z", "2015-06-29T20:39:09Z"),
            ("2015-06-29T20:39:09", "2015-06-29T20:39:09Z"),
            ("2015-06-29T20:39:09.123", "2015-06-29T20:39:09.123Z"),
            ("2015-06-29T22:39:09+02:00", "2015-06-29T20:39:09Z"),
        ] {
            let t = DateTime::parse(input).unwrap();
            assert_eq!(t.to_wire(), out, "{input}");
        }
        assert!(DateTime::parse("2015-06-29").is_none());
        assert!(serde_json::from_str::<DateTime>("\"yesterday\"").is_err());
    }

    #[test]
    fn cistring_compares_without_case_and_keeps_it() {
        use std::collections::HashSet;
        let a: CiString<5> = serde_json::from_str("\"NL-Ab\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"NL-Ab\"");
        let set: HashSet<CiString<5>> = [a.clone()].into();
        assert!(set.contains(&CiString::<5>::new("nl-ab").unwrap()));
        assert!(serde_json::from_str::<CiString<5>>("\"NL-Abc\"").is_err());
        assert!(serde_json::from_str::<CiString<5>>("\"a\\tb\"").is_err());
        let s: Str<5> = serde_json::from_str("\"héllo\"").unwrap();
        assert_eq!(s.len(), 6, "bytes");
        assert!(serde_json::from_str::<Str<4>>("\"héllo\"").is_err());
    }
}
