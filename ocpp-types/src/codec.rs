//! Field codecs used by the generated messages.
//!
//! Generated types keep plain Rust field types (`i32`, [`Decimal`],
//! `DateTime<Utc>`, `Vec<T>`); the schema's constraints on a field (numeric
//! bounds, `multipleOf`, item counts, RFC 3339 times, exact decimals) live in a
//! zero-sized codec type named on the field. Every check happens while
//! decoding, so a value that decodes is schema-valid.
//!
//! Error messages written here start with fixed words that
//! [`crate::error::DecodeErrorKind`] classifies; change them only together.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// How one field is decoded, encoded and generated.
pub trait FieldCodec {
    type Value;
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self::Value, D::Error>;
    fn ser<S: Serializer>(v: &Self::Value, s: S) -> Result<S::Ok, S::Error>;
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Self::Value>;
}

/// `serialize_with` adapter.
pub fn ser<C: FieldCodec, S: Serializer>(v: &C::Value, s: S) -> Result<S::Ok, S::Error> {
    C::ser(v, s)
}

/// `serialize_with` adapter for optional fields (only called when `Some`).
pub fn ser_opt<C: FieldCodec, S: Serializer>(
    v: &Option<C::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => C::ser(v, s),
        None => s.serialize_none(),
    }
}

/// A [`DeserializeSeed`] running codec `C`.
pub struct Seed<C>(PhantomData<C>);

impl<C> Seed<C> {
    #[inline]
    pub fn new() -> Self {
        Seed(PhantomData)
    }
}

impl<C> Default for Seed<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'de, C: FieldCodec> DeserializeSeed<'de> for Seed<C> {
    type Value = C::Value;
    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<C::Value, D::Error> {
        C::de(d)
    }
}

/// A type's own serde impls.
pub struct Plain<T>(PhantomData<T>);

#[cfg(any(test, feature = "arbitrary"))]
pub trait MaybeArbitrary: for<'a> arbitrary::Arbitrary<'a> {}
#[cfg(any(test, feature = "arbitrary"))]
impl<T: for<'a> arbitrary::Arbitrary<'a>> MaybeArbitrary for T {}
#[cfg(not(any(test, feature = "arbitrary")))]
pub trait MaybeArbitrary {}
#[cfg(not(any(test, feature = "arbitrary")))]
impl<T> MaybeArbitrary for T {}

impl<T: for<'de> Deserialize<'de> + Serialize + MaybeArbitrary> FieldCodec for Plain<T> {
    type Value = T;
    #[inline]
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        T::deserialize(d)
    }
    fn ser<S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<T> {
        T::arbitrary(u)
    }
}

/// A plain string with no length bound (serde's `String` visitor, but never `null`).
pub struct Text;

impl FieldCodec for Text {
    type Value = String;
    #[inline]
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        String::deserialize(d)
    }
    fn ser<S: Serializer>(v: &String, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<String> {
        arbitrary_text(u, 40)
    }
}

/// No bound on this side of an integer range.
pub const NONE: i64 = i64::MIN;

/// OCPP's 32-bit integer, with optional schema bounds (`NONE` = unbounded).
///
/// JSON Schema counts `3.0` as an integer, so a number with a zero fraction is
/// accepted.
pub struct Int<const MIN: i64, const MAX: i64>;

struct IntVisitor<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> IntVisitor<MIN, MAX> {
    fn check<E: de::Error>(v: i128) -> Result<i32, E> {
        if v < i128::from(i32::MIN) || v > i128::from(i32::MAX) {
            return Err(E::custom(format_args!(
                "out of type range: {v} is not a 32-bit integer"
            )));
        }
        if MIN != NONE && v < i128::from(MIN) {
            return Err(E::custom(format_args!(
                "out of range: {v} is below the minimum {MIN}"
            )));
        }
        if MAX != NONE && v > i128::from(MAX) {
            return Err(E::custom(format_args!(
                "out of range: {v} is above the maximum {MAX}"
            )));
        }
        Ok(v as i32)
    }
}

impl<const MIN: i64, const MAX: i64> Visitor<'_> for IntVisitor<MIN, MAX> {
    type Value = i32;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }
    #[inline]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
        Self::check(i128::from(v))
    }
    #[inline]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
        Self::check(i128::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i32, E> {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e30 {
            Self::check(v as i128)
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }
}

impl<const MIN: i64, const MAX: i64> FieldCodec for Int<MIN, MAX> {
    type Value = i32;
    #[inline]
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        d.deserialize_i64(IntVisitor::<MIN, MAX>)
    }
    fn ser<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*v)
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<i32> {
        let lo = if MIN == NONE {
            -1000
        } else {
            MIN.max(i64::from(i32::MIN))
        };
        let hi = if MAX == NONE {
            lo.max(0) + 100_000
        } else {
            MAX.min(i64::from(i32::MAX))
        };
        let v = if u.ratio(1, 8)? {
            // edges of the range
            if u.arbitrary()? {
                lo
            } else {
                hi
            }
        } else {
            u.int_in_range(lo..=hi)?
        };
        Ok(v as i32)
    }
}

/// An exact decimal number. `MIN`/`MAX` bound it (`NONE` = unbounded);
/// `MULT_SCALE` > 0 requires a multiple of 10^-MULT_SCALE (`multipleOf: 0.1` is 1).
///
/// The number's text is read exactly (no `f64` on the way), so `0.1` is `0.1`.
/// A schema-valid number that a 96-bit decimal cannot hold exactly (more
/// than 28 decimal places or 29 significant digits, as in `5e-324` or
/// `1.2e-40` from a charger printing an `f64`) is rounded to the nearest
/// representable value, ties to even; magnitudes below 0.5 × 10^-28 become 0.
/// Only a magnitude beyond the decimal range (±79228162514264337593543950335)
/// is an error ([`crate::DecodeErrorKind::OutOfTypeRange`]).
pub struct Dec<const MIN: i64, const MAX: i64, const MULT_SCALE: u32>;

/// The largest mantissa of a [`Decimal`] (2^96 - 1).
const DECIMAL_MANTISSA_MAX: u128 = (1 << 96) - 1;

/// A JSON number read as a [`Decimal`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ParsedDecimal {
    /// The nearest representable value.
    pub(crate) value: Decimal,
    /// The exact number compared with `value` (`Equal` unless rounded), for
    /// `minimum`/`maximum`: `-1e-40` rounds to 0 but is below a minimum of 0.
    pub(crate) exact: Ordering,
}

/// Parses a JSON number's text as a [`Decimal`], rounding to the nearest
/// representable value (at most 28 decimal places and a 96-bit mantissa;
/// ties to even; a magnitude below 0.5 × 10^-28 becomes 0). `None` if the
/// text is not a JSON number or its magnitude is beyond the decimal range.
pub(crate) fn parse_decimal(text: &str) -> Option<ParsedDecimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^-scale, with `scale` saturating far beyond any
    // useful range (an exponent of a billion digits is still just "huge").
    const LIMIT: i64 = 1 << 40;
    let exp: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (neg, digits) = match e.as_bytes().first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let magnitude = digits
                .bytes()
                .try_fold(0i64, |acc, b| {
                    let v = acc * 10 + i64::from(b - b'0');
                    (v <= LIMIT).then_some(v)
                })
                .unwrap_or(LIMIT);
            if neg {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    let all = |i: usize| -> u8 {
        if i < int.len() {
            int.as_bytes()[i]
        } else {
            frac.as_bytes()[i - int.len()]
        }
    };
    let total = int.len() + frac.len();
    let lead = (0..total).take_while(|&i| all(i) == b'0').count();
    // the significant digits, without leading zeros
    let n = total - lead;
    let digit = |i: usize| -> u8 {
        if i < n {
            all(lead + i) - b'0'
        } else {
            0
        }
    };
    let scale = frac.len() as i64 - exp;
    if n == 0 {
        // zero, keeping its scale where a decimal can hold it (`0.00`, not `0e-324`)
        let scale = if (0..=28).contains(&scale) { scale } else { 0 };
        return Some(ParsedDecimal {
            value: Decimal::from_i128_with_scale(0, scale as u32),
            exact: Ordering::Equal,
        });
    }
    // digits before the decimal point (negative: leading zeros after it)
    let int_digits = n as i64 - scale;
    if int_digits > 29 {
        return None;
    }
    let mut keep_scale = scale.clamp(0, 28).min(29 - int_digits);
    loop {
        // the first `keep` significant digits, then round on the rest
        let keep = int_digits + keep_scale;
        let mut m: u128 = 0;
        for i in 0..keep.max(0) as usize {
            m = m * 10 + u128::from(digit(i));
        }
        let first_dropped = keep.max(0) as usize;
        let dropped = (first_dropped..n).any(|i| digit(i) != 0);
        let round_up = if keep < 0 {
            false // below half a unit of the last place kept
        } else {
            match digit(first_dropped) {
                0..=4 => false,
                6..=9 => true,
                _ => {
                    let more = (first_dropped + 1..n).any(|i| digit(i) != 0);
                    more || m % 2 == 1
                }
            }
        };
        if round_up {
            m += 1;
        }
        if m <= DECIMAL_MANTISSA_MAX {
            let signed = if negative { -(m as i128) } else { m as i128 };
            let value = if m == 0 {
                Decimal::ZERO // rounded away entirely: no 28 places of zeros
            } else {
                Decimal::from_i128_with_scale(signed, keep_scale as u32)
            };
            // how the exact magnitude compares with the kept one
            let magnitude = match (dropped, round_up) {
                (false, _) => Ordering::Equal,
                (true, true) => Ordering::Less,
                (true, false) => Ordering::Greater,
            };
            let exact = if negative {
                magnitude.reverse()
            } else {
                magnitude
            };
            return Some(ParsedDecimal { value, exact });
        }
        if keep_scale == 0 {
            return None;
        }
        // 29 digits that overflow 96 bits: one decimal place fewer
        keep_scale -= 1;
    }
}

impl<const MIN: i64, const MAX: i64, const MULT_SCALE: u32> Dec<MIN, MAX, MULT_SCALE> {
    fn check<E: de::Error>(text: &str, parsed: ParsedDecimal) -> Result<Decimal, E> {
        let v = parsed.value;
        let below = |bound: Decimal| v < bound || (v == bound && parsed.exact.is_lt());
        let above = |bound: Decimal| v > bound || (v == bound && parsed.exact.is_gt());
        if MIN != NONE && below(Decimal::from(MIN)) {
            return Err(E::custom(format_args!(
                "out of range: {text} is below the minimum {MIN}"
            )));
        }
        if MAX != NONE && above(Decimal::from(MAX)) {
            return Err(E::custom(format_args!(
                "out of range: {text} is above the maximum {MAX}"
            )));
        }
        // on the decimal: `5e-324` (0) is a multiple of 0.1, as the jsonschema
        // crate also judges in `f64`; noise below 28 places does not count
        if MULT_SCALE > 0 && v.normalize().scale() > MULT_SCALE {
            return Err(E::custom(format_args!(
                "out of range: {text} is not a multiple of {}",
                Decimal::new(1, MULT_SCALE)
            )));
        }
        Ok(v)
    }
}

impl<const MIN: i64, const MAX: i64, const MULT_SCALE: u32> FieldCodec
    for Dec<MIN, MAX, MULT_SCALE>
{
    type Value = Decimal;
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        let first = text.as_bytes().first().copied().unwrap_or(b' ');
        if !(first == b'-' || first.is_ascii_digit()) {
            let what = match first {
                b'"' => de::Unexpected::Other("string"),
                b'{' => de::Unexpected::Map,
                b'[' => de::Unexpected::Seq,
                b't' | b'f' => de::Unexpected::Other("boolean"),
                b'n' => de::Unexpected::Unit,
                _ => de::Unexpected::Other("value"),
            };
            return Err(de::Error::invalid_type(what, &"a number"));
        }
        match parse_decimal(text) {
            Some(parsed) => Self::check(text, parsed),
            None => Err(de::Error::custom(format_args!(
                "out of type range: {text} is beyond the range of a 96-bit decimal (magnitude at most {})",
                Decimal::MAX
            ))),
        }
    }
    fn ser<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(v.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Decimal> {
        let lo = if MIN == NONE { -1_000_000 } else { MIN };
        let hi = if MAX == NONE {
            lo.max(0) + 1_000_000
        } else {
            MAX
        };
        let scale = if MULT_SCALE > 0 {
            MULT_SCALE
        } else {
            u.int_in_range(0..=4)?
        };
        let factor = 10i64.pow(scale);
        let units = u.int_in_range(lo * factor..=hi * factor)?;
        Ok(Decimal::new(units, scale))
    }
}

/// An RFC 3339 `date-time` (JSON Schema `format: date-time`), held in UTC.
pub struct Time;

struct TimeVisitor;

pub(crate) fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    // RFC 3339 requires `T` (or `t`) between date and time; chrono also takes a space.
    if v.as_bytes().get(10).is_some_and(|b| *b == b' ') {
        return None;
    }
    DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 date-time string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<DateTime<Utc>, E> {
        parse_time(v)
            .ok_or_else(|| E::custom(format_args!("invalid date-time: {v:?} is not RFC 3339")))
    }
}

impl FieldCodec for Time {
    type Value = DateTime<Utc>;
    #[inline]
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(TimeVisitor)
    }
    fn ser<S: Serializer>(v: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<DateTime<Utc>> {
        // 2000-01-01 .. 2100-01-01, millisecond precision half of the time
        let secs = u.int_in_range(946_684_800i64..=4_102_444_800)?;
        let millis = if u.arbitrary()? {
            u.int_in_range(0u32..=999)?
        } else {
            0
        };
        Ok(DateTime::from_timestamp(secs, millis * 1_000_000).unwrap_or_default())
    }
}

/// An array of `C` with `minItems`/`maxItems` (`MAX` = 0: unbounded).
///
/// Decoding stops at the first item past `MAX`, so a hostile array never
/// allocates more than the schema allows.
pub struct List<C, const MIN: usize, const MAX: usize>(PhantomData<C>);

struct ListVisitor<C, const MIN: usize, const MAX: usize>(PhantomData<C>);

impl<'de, C: FieldCodec, const MIN: usize, const MAX: usize> Visitor<'de>
    for ListVisitor<C, MIN, MAX>
{
    type Value = Vec<C::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let hint = seq
            .size_hint()
            .unwrap_or(0)
            .min(if MAX == 0 { 64 } else { MAX });
        let mut out = Vec::with_capacity(hint);
        while let Some(v) = seq.next_element_seed(Seed::<C>::new())? {
            if MAX != 0 && out.len() == MAX {
                return Err(de::Error::custom(format_args!(
                    "too many items: more than {MAX} (maxItems)"
                )));
            }
            out.push(v);
        }
        if out.len() < MIN {
            return Err(de::Error::custom(format_args!(
                "too few items: {} given, at least {MIN} (minItems)",
                out.len()
            )));
        }
        Ok(out)
    }
}

impl<C: FieldCodec, const MIN: usize, const MAX: usize> FieldCodec for List<C, MIN, MAX> {
    type Value = Vec<C::Value>;
    #[inline]
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(ListVisitor::<C, MIN, MAX>(PhantomData))
    }
    fn ser<S: Serializer>(v: &Self::Value, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        struct Item<'a, C: FieldCodec>(&'a C::Value);
        impl<C: FieldCodec> Serialize for Item<'_, C> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                C::ser(self.0, s)
            }
        }
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&Item::<C>(item))?;
        }
        seq.end()
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Self::Value> {
        let max = if MAX == 0 {
            MIN.max(1) + 3
        } else {
            MAX.min(MIN.max(1) + 3)
        };
        let n = u.int_in_range(MIN..=max)?;
        (0..n).map(|_| C::arbitrary(u)).collect()
    }
}

/// A `format: uri` string (RFC 3986 URI: a scheme, `:`, then URI characters),
/// with an optional `maxLength` (`MAX` = 0: unbounded).
pub struct Uri<const MAX: usize>;

pub(crate) fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut sc = scheme.bytes();
    if !sc.next().is_some_and(|b| b.is_ascii_alphabetic())
        || !sc.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return false;
    }
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'?' | b'#' | b'[' | b']' | b'@' | b'!'
            | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

impl<const MAX: usize> FieldCodec for Uri<MAX> {
    type Value = String;
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        if MAX > 0 {
            crate::strings::check_len(&s, MAX).map_err(de::Error::custom)?;
        }
        if !is_uri(&s) {
            return Err(de::Error::custom(format_args!(
                "invalid uri: {s:?} is not an RFC 3986 URI"
            )));
        }
        Ok(s)
    }
    fn ser<S: Serializer>(v: &String, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<String> {
        let host =
            ["example.com", "10.0.0.1", "files.example.org"][usize::from(u.int_in_range(0u8..=2)?)];
        let scheme = ["https", "ftp", "http"][usize::from(u.int_in_range(0u8..=2)?)];
        Ok(format!(
            "{scheme}://{host}/f/{}",
            u.int_in_range(0u32..=99_999)?
        ))
    }
}

/// Any JSON value (a property with no `type` in its schema).
pub struct AnyJson;

impl FieldCodec for AnyJson {
    type Value = serde_json::Value;
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        serde_json::Value::deserialize(d)
    }
    fn ser<S: Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
    #[cfg(any(test, feature = "arbitrary"))]
    fn arbitrary(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<serde_json::Value> {
        use serde_json::Value;
        Ok(match u.int_in_range(0u8..=4)? {
            0 => Value::String(arbitrary_text(u, 16)?),
            1 => Value::from(u.int_in_range(-1000i64..=1000)?),
            2 => Value::Bool(u.arbitrary()?),
            3 => serde_json::json!({ "k": arbitrary_text(u, 8)?, "n": [1, 2.5, null] }),
            _ => Value::Null,
        })
    }
}

/// Extension properties for objects whose schema allows them (`customData`).
#[cfg(any(test, feature = "arbitrary"))]
pub fn arbitrary_extra(
    u: &mut arbitrary::Unstructured<'_>,
) -> arbitrary::Result<serde_json::Map<String, serde_json::Value>> {
    let mut m = serde_json::Map::new();
    if u.ratio(1, 3)? {
        m.insert("vendorExtension".to_owned(), AnyJson::arbitrary(u)?);
    }
    Ok(m)
}

/// A spec enumeration: a closed set of wire strings.
pub trait WireEnum: Sized + 'static {
    /// Every wire value, in schema order.
    const VARIANTS: &'static [&'static str];
    /// The schema name of the enumeration.
    const NAME: &'static str;
    /// The variant for an exact wire value.
    fn from_wire(s: &str) -> Option<Self>;
    /// The wire value.
    fn as_wire(&self) -> &'static str;
}

/// Deserializes a [`WireEnum`] from a JSON string; anything else is a type error.
pub fn de_enum<'de, T: WireEnum, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    struct V<T>(PhantomData<T>);
    impl<T: WireEnum> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a {} string", T::NAME)
        }
        #[inline]
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            T::from_wire(v).ok_or_else(|| {
                E::custom(format_args!(
                    "unknown variant `{v}`, expected one of {}",
                    ExpectedList(T::VARIANTS)
                ))
            })
        }
    }
    d.deserialize_str(V::<T>(PhantomData))
}

struct ExpectedList(&'static [&'static str]);

impl fmt::Display for ExpectedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{v}`")?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
pub enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    #[inline]
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property name")
            }
            #[inline]
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Reads one field's value into its slot, rejecting a repeated property.
#[inline]
pub fn take_field<'de, C: FieldCodec, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<C::Value>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::custom(format_args!(
            "duplicate property `{name}`"
        )));
    }
    *slot = Some(map.next_value_seed(Seed::<C>::new())?);
    Ok(())
}

/// The error for a property the schema does not allow.
#[cold]
pub fn unknown_field<E: de::Error>(name: &str, expected: &'static [&'static str]) -> E {
    E::unknown_field(name, expected)
}

/// The error for a required property that is absent.
#[cold]
pub fn missing_field<E: de::Error>(name: &'static str) -> E {
    E::missing_field(name)
}

/// Random text of at most `max` characters: mostly ASCII, sometimes wider
/// characters, to exercise character (not byte) counting.
#[cfg(any(test, feature = "arbitrary"))]
pub fn arbitrary_text(
    u: &mut arbitrary::Unstructured<'_>,
    max: usize,
) -> arbitrary::Result<String> {
    let len = if u.ratio(1, 10)? {
        max
    } else {
        u.int_in_range(0..=max.min(24))?
    };
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        let c = match u.int_in_range(0u8..=19)? {
            0 => ['é', 'ß', '€', '✓', '"', '\\', '\n', '😀'][usize::from(u.int_in_range(0u8..=7)?)],
            _ => char::from(u.int_in_range(b' '..=b'~')?),
        };
        s.push(c);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn de<C: FieldCodec>(json: &str) -> Result<C::Value, String> {
        let mut d = serde_json::Deserializer::from_str(json);
        C::de(&mut d).map_err(|e| e.to_string())
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(de::<Dec<NONE, NONE, 0>>("0.1").unwrap(), Decimal::new(1, 1));
        assert_eq!(
            de::<Dec<NONE, NONE, 0>>("-12.50").unwrap(),
            Decimal::new(-1250, 2)
        );
        assert_eq!(
            de::<Dec<NONE, NONE, 0>>("1e3").unwrap(),
            Decimal::from(1000)
        );
        assert!(de::<Dec<NONE, NONE, 0>>("\"1\"")
            .unwrap_err()
            .starts_with("invalid type"));
        assert!(de::<Dec<0, NONE, 0>>("-0.5")
            .unwrap_err()
            .starts_with("out of range"));
        assert!(de::<Dec<NONE, NONE, 1>>("0.15")
            .unwrap_err()
            .starts_with("out of range"));
        assert!(de::<Dec<NONE, NONE, 1>>("0.10").is_ok());
        let mut out = Vec::new();
        Dec::<NONE, NONE, 0>::ser(
            &Decimal::new(1250, 2),
            &mut serde_json::Serializer::new(&mut out),
        )
        .unwrap();
        assert_eq!(out, b"12.50");
    }

    /// Issue 14: a schema-valid number a 96-bit decimal cannot hold exactly
    /// is rounded to the nearest decimal, not refused.
    #[test]
    fn decimals_round_to_the_nearest_representable_value() {
        type Any = Dec<NONE, NONE, 0>;
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(de::<Any>("5e-324").unwrap(), Decimal::ZERO);
        assert_eq!(de::<Any>("5e-324").unwrap().scale(), 0);
        assert_eq!(de::<Any>("1.2e-40").unwrap(), Decimal::ZERO);
        assert_eq!(de::<Any>("-1.2E-40").unwrap(), Decimal::ZERO);
        assert_eq!(
            de::<Any>("1.23456789012345678901234567890123e0").unwrap(),
            d("1.2345678901234567890123456789")
        );
        // 28 places: rounding up, down, and ties to even
        assert_eq!(de::<Any>("6e-29").unwrap(), Decimal::new(1, 28));
        assert_eq!(de::<Any>("4.9e-29").unwrap(), Decimal::ZERO);
        assert_eq!(de::<Any>("5e-29").unwrap(), Decimal::ZERO);
        assert_eq!(de::<Any>("1.5e-28").unwrap(), Decimal::new(2, 28));
        assert_eq!(de::<Any>("2.5e-28").unwrap(), Decimal::new(2, 28));
        assert_eq!(de::<Any>("2.50000001e-28").unwrap(), Decimal::new(3, 28));
        assert_eq!(
            de::<Any>("0.00000000000000000000000000015").unwrap(),
            Decimal::new(2, 28)
        );
        // 29 significant digits that overflow 96 bits lose a decimal place
        assert_eq!(
            de::<Any>("9999999999999999999999999999.99").unwrap(),
            d("10000000000000000000000000000")
        );
        // many digits in scientific notation, exact after all
        assert_eq!(
            de::<Any>("1000000000000000000000000000000000e-33").unwrap(),
            Decimal::ONE
        );
        assert_eq!(de::<Any>("0e-324").unwrap(), Decimal::ZERO);
        assert_eq!(de::<Any>("0e-324").unwrap().scale(), 0);
        assert_eq!(de::<Any>("0.00").unwrap().scale(), 2);
        assert_eq!(de::<Any>("1e-99999999999999999999").unwrap(), Decimal::ZERO);
        // the edges of the range
        assert_eq!(
            de::<Any>("79228162514264337593543950335").unwrap(),
            Decimal::MAX
        );
        assert_eq!(
            de::<Any>("-7.92281625142643375935439503354e28").unwrap(),
            Decimal::MIN
        );
        for beyond in [
            "1e29",
            "-1e29",
            "79228162514264337593543950336",
            "79228162514264337593543950335.5",
            "1e99999999999999999999",
            "123456789012345678901234567890",
        ] {
            let e = de::<Any>(beyond).unwrap_err();
            assert!(e.starts_with("out of type range"), "{beyond}: {e}");
            assert!(
                e.contains("beyond the range of a 96-bit decimal"),
                "{beyond}: {e}"
            );
        }
    }

    /// Every decimal, written plainly or in scientific notation, reads back
    /// as itself (value and scale): rounding never touches exact input.
    #[test]
    fn every_decimal_reads_back_exactly() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 2000,
            failure_persistence: None,
            ..Default::default()
        });
        let mantissa = -(DECIMAL_MANTISSA_MAX as i128)..=DECIMAL_MANTISSA_MAX as i128;
        runner
            .run(&(mantissa, 0u32..=28), |(m, scale)| {
                let d = Decimal::from_i128_with_scale(m, scale);
                let plain = parse_decimal(&d.to_string()).unwrap();
                prop_assert_eq!(plain.value, d);
                prop_assert_eq!(plain.value.scale(), d.scale());
                prop_assert_eq!(plain.exact, Ordering::Equal);
                let sci = parse_decimal(&format!("{m}e-{scale}")).unwrap();
                prop_assert_eq!(sci.value, d);
                prop_assert_eq!(sci.exact, Ordering::Equal);
                Ok(())
            })
            .unwrap();
    }

    /// Bounds judge the number sent, not its rounding; `multipleOf` the decimal.
    #[test]
    fn decimal_constraints_apply_to_the_exact_number() {
        assert!(de::<Dec<0, NONE, 0>>("-1e-40")
            .unwrap_err()
            .starts_with("out of range: -1e-40 is below the minimum 0"));
        assert_eq!(de::<Dec<0, NONE, 0>>("1e-40").unwrap(), Decimal::ZERO);
        assert!(de::<Dec<NONE, 0, 0>>("1e-40")
            .unwrap_err()
            .starts_with("out of range: 1e-40 is above the maximum 0"));
        assert_eq!(de::<Dec<NONE, 0, 0>>("-1e-40").unwrap(), Decimal::ZERO);
        // `multipleOf` judges the decimal the number rounds to
        assert_eq!(de::<Dec<NONE, NONE, 1>>("5e-324").unwrap(), Decimal::ZERO);
        assert_eq!(
            de::<Dec<NONE, NONE, 1>>("0.10000000000000000000000000000001").unwrap(),
            Decimal::new(1, 1)
        );
        assert!(
            de::<Dec<NONE, NONE, 1>>("1.23456789012345678901234567890123e0")
                .unwrap_err()
                .starts_with(
                    "out of range: 1.23456789012345678901234567890123e0 is not a multiple of 0.1"
                )
        );
        assert_eq!(
            de::<Dec<NONE, NONE, 1>>("0.10000000000000000000000000000000").unwrap(),
            Decimal::new(1, 1)
        );
        assert_eq!(
            de::<Dec<NONE, NONE, 1>>("1.5e1").unwrap(),
            Decimal::from(15)
        );
    }

    #[test]
    fn integers_are_32_bit() {
        assert_eq!(de::<Int<NONE, NONE>>("2147483647").unwrap(), i32::MAX);
        assert!(de::<Int<NONE, NONE>>("2147483648")
            .unwrap_err()
            .starts_with("out of type range"));
        assert_eq!(de::<Int<NONE, NONE>>("3.0").unwrap(), 3);
        assert!(de::<Int<NONE, NONE>>("3.5")
            .unwrap_err()
            .starts_with("invalid type"));
        assert!(de::<Int<0, NONE>>("-1")
            .unwrap_err()
            .starts_with("out of range"));
        assert!(de::<Int<NONE, NONE>>("null")
            .unwrap_err()
            .starts_with("invalid type"));
    }

    #[test]
    fn times_are_rfc3339() {
        assert!(de::<Time>("\"2024-01-02T03:04:05Z\"").is_ok());
        assert!(de::<Time>("\"2024-01-02T03:04:05.123+02:00\"").is_ok());
        assert!(de::<Time>("\"2024-01-02T03:04:05\"")
            .unwrap_err()
            .starts_with("invalid date-time"));
        assert!(de::<Time>("\"2024-01-02 03:04:05Z\"")
            .unwrap_err()
            .starts_with("invalid date-time"));
    }

    #[test]
    fn lists_enforce_item_counts_without_overallocating() {
        type L = List<Int<NONE, NONE>, 1, 2>;
        assert!(de::<L>("[]").unwrap_err().starts_with("too few items"));
        assert_eq!(de::<L>("[1,2]").unwrap(), vec![1, 2]);
        assert!(de::<L>("[1,2,3]")
            .unwrap_err()
            .starts_with("too many items"));
    }
}
