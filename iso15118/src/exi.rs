//! The EXI 1.0 bit-packed stream as V2G uses it: the primitives every
//! schema-informed codec of this crate is written in.
//!
//! The V2G profile (ISO 15118-2 §7.3.2, -20 §8.3.3; OCPI-NOTES' sibling
//! ISO15118-NOTES §1): schema-informed, **bit-packed** alignment, **strict =
//! false**, default fidelity options (no comments, processing instructions,
//! DTDs, prefixes or lexical values), no EXI options in the header, so the
//! header is the single byte `0x80` (distinguishing bits `10`, no options,
//! version 1). Event codes are n-bit unsigned integers of
//! `ceil(log2(productions))` bits; with strict = false every grammar state has
//! a second level, so even one declared production costs a bit.
//!
//! Values (EXI §7.1): unsigned integers in 7-bit groups, least significant
//! first, with a continuation bit; n-bit unsigned integers for bounded
//! ranges of at most 4096 values (offset from the minimum); strings as
//! `length + 2` followed by code points, where `0` and `1` would be string
//! table hits — the V2G profile's `valuePartitionCapacity = 0` keeps the
//! value table empty, so this crate never writes them and refuses them.
//!
//! Reading never allocates more than the input can justify: every length is
//! checked against the bits left before anything is reserved.

/// Why a stream could not be read (or a value not written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExiError {
    /// The stream ended early.
    #[error("EXI stream ends early (needed {needed} more bits)")]
    Truncated {
        /// Bits that were missing.
        needed: usize,
    },
    /// The header is not the V2G one (`0x80`).
    #[error("EXI header {0:#04x} is not 0x80 (V2G profile: no options, version 1)")]
    Header(u8),
    /// An event code names a production this codec does not take: a
    /// second-level (non-strict deviation) event or an element this schema
    /// set does not declare at that place.
    #[error("unsupported EXI event at {at}: code {code} of {of}")]
    Event {
        /// Where in the grammar.
        at: &'static str,
        /// The code read.
        code: u32,
        /// How many first-level productions there are.
        of: u32,
    },
    /// A value does not fit its type or facet.
    #[error("{what}: {reason}")]
    Value {
        /// The field.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An unsigned integer longer than its type.
    #[error("unsigned integer overflows 64 bits")]
    Overflow,
    /// A string table hit, which the V2G profile (value partition capacity 0)
    /// never produces.
    #[error("string table hit in a stream with an empty value table")]
    StringTableHit,
    /// Bytes after the end of the document (beyond the padding of its last
    /// byte); [`crate::lenient::Policy::trailing_bytes`] accepts them.
    #[error("{0} bytes after the end of the EXI document")]
    Trailing(usize),
    /// A decoded integer outside its schema facet (`minInclusive` /
    /// `maxInclusive`, or the range of its built-in type);
    /// [`crate::lenient::Policy::integer_outside_facet`] accepts one that
    /// fits the field's Rust type.
    #[error("integer {value} outside its facet {min}..={max} at bit {bit}")]
    IntegerOutsideFacet {
        /// The value read.
        value: i128,
        /// The facet's minimum.
        min: i128,
        /// The facet's maximum.
        max: i128,
        /// Where the value starts (bit offset from the start of the stream).
        bit: usize,
    },
}

use crate::lenient::{Policy, State, Warning, WarningKind};

/// Writes bits, most significant first, into bytes.
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits, right-aligned.
    acc: u64,
    /// How many bits `acc` holds (< 8 between calls).
    n: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the `n` low bits of `value` (n ≤ 32), most significant first.
    pub fn bits(&mut self, n: u32, value: u32) {
        if n == 0 {
            return;
        }
        let mask = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
        self.acc = (self.acc << n) | u64::from(value & mask);
        self.n += n;
        while self.n >= 8 {
            self.n -= 8;
            self.bytes.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u64 << self.n) - 1;
    }

    /// An event code: `code` among `of` choices (`ceil(log2(of))` bits).
    pub fn event(&mut self, code: u32, of: u32) {
        self.bits(width(of), code);
    }

    /// An unsigned integer in 7-bit groups (EXI §7.1.6).
    pub fn unsigned(&mut self, mut v: u64) {
        loop {
            let group = (v & 0x7f) as u32;
            v >>= 7;
            if v == 0 {
                self.bits(8, group);
                return;
            }
            self.bits(8, 0x80 | group);
        }
    }

    /// A string value (EXI §7.1.10, value table empty): length + 2, then
    /// each code point as an unsigned integer.
    pub fn string(&mut self, s: &str) {
        self.unsigned(s.chars().count() as u64 + 2);
        for c in s.chars() {
            self.unsigned(u64::from(u32::from(c)));
        }
    }

    /// The bytes written, the last one padded with zero bits.
    pub fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.bytes.push((self.acc << (8 - self.n)) as u8);
        }
        self.bytes
    }
}

/// `ceil(log2(n))`: the bits of an n-choice code (0 for one choice).
pub fn width(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Reads bits, most significant first.
///
/// A reader is strict unless given a lenient [`Policy`]
/// ([`BitReader::with_policy`]); then the value readers of
/// [`crate::grammar`] accept what the policy allows, and
/// [`BitReader::finish`] returns the [`Warning`]s.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// `None` when strict: nothing is tracked.
    lenient: Option<Box<State>>,
}

impl<'a> BitReader<'a> {
    /// A strict reader at the first bit of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            lenient: None,
        }
    }

    /// The reader under `policy` (a strict policy keeps it strict).
    pub fn with_policy(mut self, policy: &Policy) -> Self {
        self.lenient = (!policy.is_strict()).then(|| {
            Box::new(State {
                policy: *policy,
                ..State::default()
            })
        });
        self
    }

    /// The policy the reader decodes under.
    pub fn policy(&self) -> Policy {
        self.lenient
            .as_ref()
            .map_or_else(Policy::strict, |l| l.policy)
    }

    /// Bits read so far (the header byte included).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Records a deviation starting at bit `bit` when the policy accepts it
    /// (`allowed` of the policy); `false` when the reader must refuse it.
    pub(crate) fn accept(
        &mut self,
        allowed: impl FnOnce(&Policy) -> bool,
        bit: usize,
        kind: WarningKind,
    ) -> bool {
        match &mut self.lenient {
            Some(l) if allowed(&l.policy) => {
                l.warn(bit, kind);
                true
            }
            _ => false,
        }
    }

    /// An element starts (a lenient reader names it in its warnings).
    pub(crate) fn enter(&mut self, name: &str) {
        if let Some(l) = &mut self.lenient {
            l.path.push(name.to_string());
        }
    }

    /// An attribute's value follows.
    pub(crate) fn enter_attr(&mut self, name: &str) {
        if let Some(l) = &mut self.lenient {
            l.path.push(format!("@{name}"));
        }
    }

    /// The element (or attribute) last entered ends.
    pub(crate) fn leave(&mut self) {
        if let Some(l) = &mut self.lenient {
            l.path.pop();
        }
    }

    /// Bits not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }

    /// Reads `n` bits (n ≤ 32).
    pub fn bits(&mut self, n: u32) -> Result<u32, ExiError> {
        let n_us = n as usize;
        if self.remaining() < n_us {
            return Err(ExiError::Truncated {
                needed: n_us - self.remaining(),
            });
        }
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let off = (self.pos % 8) as u32;
            let take = left.min(8 - off);
            let chunk = (u32::from(byte) >> (8 - off - take)) & ((1u32 << take) - 1);
            v = (v << take) | u64::from(chunk);
            self.pos += take as usize;
            left -= take;
        }
        Ok(v as u32)
    }

    /// An event code among `of` choices.
    pub fn event(&mut self, of: u32) -> Result<u32, ExiError> {
        self.bits(width(of))
    }

    /// An unsigned integer in 7-bit groups.
    pub fn unsigned(&mut self) -> Result<u64, ExiError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let group = self.bits(8)?;
            if shift >= 64 || (shift > 57 && (group & 0x7f) >> (64 - shift) != 0) {
                return Err(ExiError::Overflow);
            }
            v |= u64::from(group & 0x7f) << shift;
            if group & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    /// A string of at most `max` characters (`what` names the field).
    pub fn string(&mut self, what: &'static str, max: usize) -> Result<String, ExiError> {
        let len = self.unsigned()?;
        if len < 2 {
            return Err(ExiError::StringTableHit);
        }
        let len = len - 2;
        if len > max as u64 {
            return Err(ExiError::Value {
                what,
                reason: format!("{len} characters, at most {max}"),
            });
        }
        // each character takes at least 8 bits: refuse lengths the input cannot hold
        if len.saturating_mul(8) > self.remaining() as u64 {
            return Err(ExiError::Truncated {
                needed: (len as usize * 8).saturating_sub(self.remaining()),
            });
        }
        let mut s = String::with_capacity(len as usize);
        for _ in 0..len {
            let cp = self.unsigned()?;
            let c = u32::try_from(cp)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| ExiError::Value {
                    what,
                    reason: format!("{cp} is not a Unicode scalar value"),
                })?;
            s.push(c);
        }
        Ok(s)
    }

    /// Checks that only padding follows (the bits of the last byte), and
    /// returns the warnings of a lenient reader (none when strict).
    ///
    /// # Errors
    ///
    /// [`ExiError::Trailing`] when whole bytes follow and the policy does
    /// not accept them.
    pub fn finish(mut self) -> Result<Vec<Warning>, ExiError> {
        let end = self.pos.div_ceil(8);
        let rest = self.bytes.len() - end;
        if rest > 0 {
            if let Some(l) = &mut self.lenient {
                // outside the root element
                l.path.clear();
            }
            if !self.accept(
                |p| p.trailing_bytes,
                end * 8,
                WarningKind::TrailingBytes { count: rest },
            ) {
                return Err(ExiError::Trailing(rest));
            }
        }
        Ok(self.lenient.map(|l| l.warnings).unwrap_or_default())
    }
}

/// The EXI header of the V2G profile.
pub const HEADER: u8 = 0x80;

impl BitWriter {
    /// A writer that has written the V2G profile's header byte.
    pub fn with_header() -> Self {
        let mut w = BitWriter::new();
        w.bits(8, u32::from(HEADER));
        w
    }
}

impl<'a> BitReader<'a> {
    /// A reader past the V2G profile's header byte; an error when the
    /// stream does not start with it.
    pub fn with_header(bytes: &'a [u8]) -> Result<Self, ExiError> {
        let mut r = BitReader::new(bytes);
        let h = r.bits(8)? as u8;
        if h != HEADER {
            return Err(ExiError::Header(h));
        }
        Ok(r)
    }
}

/// Second-level productions of a simple-typed element's first state in the
/// non-strict profile (EE, AT(xsi:type), AT(xsi:nil), AT(*), AT(*)
/// untyped, SE(*), CH untyped): an empty value is the escape, then EE,
/// code 0 of these (as EXIficient writes it).
pub const SECOND_LEVEL_START: u32 = 7;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn widths() {
        assert_eq!(
            (width(1), width(2), width(3), width(4), width(5), width(81)),
            (0, 1, 2, 2, 3, 7)
        );
    }

    #[test]
    fn unsigned_examples() {
        // EXI §7.1.6: 0x80 0x01 is 128
        let mut w = BitWriter::new();
        w.unsigned(128);
        assert_eq!(w.finish(), vec![0x80, 0x01]);
        let mut r = BitReader::new(&[0xff; 11]);
        assert_eq!(r.unsigned(), Err(ExiError::Overflow));
        let mut r = BitReader::new(&[0x80]);
        assert!(matches!(r.unsigned(), Err(ExiError::Truncated { .. })));
    }

    #[test]
    fn hostile_string_length_is_refused_before_allocating() {
        let mut w = BitWriter::new();
        w.unsigned(1_000_000_000);
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        assert!(r.string("s", usize::MAX).is_err());
        let mut r = BitReader::new(&[0x00]);
        assert_eq!(r.string("s", 10), Err(ExiError::StringTableHit));
    }

    proptest! {
        #[test]
        fn round_trip(values in proptest::collection::vec((0u32..8, any::<u64>(), ".{0,12}"), 0..20)) {
            let mut w = BitWriter::new();
            for (n, v, s) in &values {
                w.bits(*n, (*v as u32) & ((1u32 << n) - 1));
                w.unsigned(*v);
                w.string(s);
            }
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for (n, v, s) in &values {
                prop_assert_eq!(r.bits(*n).unwrap(), (*v as u32) & ((1u32 << n) - 1));
                prop_assert_eq!(r.unsigned().unwrap(), *v);
                prop_assert_eq!(&r.string("s", 100).unwrap(), s);
            }
            prop_assert!(r.finish().is_ok());
        }
    }
}
