//! The lenient decoding policy: accept deviations real cars and chargers
//! send, each reported as a [`Warning`] with its position.
//!
//! Strict decoding (`decode`, [`Policy::strict`]) is the default and the
//! only mode a conformance check should use: it refuses every deviation from
//! the schema. Deployed EVs and SECCs, though, send a few; a charger that
//! refuses them ends the session. With [`Policy::lenient`], the `decode_with`
//! functions of the XSD-driven engine ([`crate::schema::SchemaSet::decode_with`],
//! [`crate::schema::SchemaSet::decode_fragment_with`]) and of the generated
//! typed codecs (`Message::decode_with`, `Fragment::decode_with` in
//! `crate::messages`) accept exactly these, and still refuse everything else:
//!
//! | deviation | seen in | read as |
//! |---|---|---|
//! | bytes after the end of the EXI document | real DIN frames with one byte after the document | the document; the bytes are ignored |
//! | an integer outside its schema facet (`minInclusive`/`maxInclusive`) that fits the field's Rust type | a real ISO 15118-2 frame with 4 where the facet allows 1..=3 (an n-bit range code above the maximum) | the value as sent |
//!
//! A value read this way does not encode again: encoders write only
//! schema-valid values.
//!
//! ```
//! use evproto_iso15118::lenient::{Policy, Warning, WarningKind};
//! use evproto_iso15118::schema;
//!
//! // a DIN SessionStopReq with a byte after the document
//! let mut bytes = vec![0x80, 0x9a, 0x02, 0x00, 0x40, 0x80, 0xc1, 0x01, 0x41, 0x81, 0xc2, 0x11, 0xf0];
//! bytes.push(0x00);
//! let din = schema::din()?;
//! assert!(din.decode(&bytes).is_err());
//! let (doc, warnings) = din.decode_with(&bytes, &Policy::lenient())?;
//! assert!(doc["V2G_Message"]["Body"]["SessionStopReq"].is_object());
//! assert_eq!(warnings, [Warning {
//!     kind: WarningKind::TrailingBytes { count: 1 },
//!     bit: 13 * 8,
//!     path: String::new(),
//! }]);
//! assert_eq!(warnings[0].to_string(), "byte 13: 1 byte after the end of the EXI document (ignored)");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

/// Which deviations to accept. [`Policy::default`] is strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Policy {
    /// Ignore bytes after the end of the EXI document.
    pub trailing_bytes: bool,
    /// Accept an integer outside its schema facet when it fits the field's
    /// Rust type.
    pub integer_outside_facet: bool,
}

impl Policy {
    /// Refuse every deviation from the schema (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Accept every deviation in the module's table.
    pub fn lenient() -> Self {
        Self {
            trailing_bytes: true,
            integer_outside_facet: true,
        }
    }

    /// Sets [`Policy::trailing_bytes`].
    pub fn with_trailing_bytes(mut self, on: bool) -> Self {
        self.trailing_bytes = on;
        self
    }

    /// Sets [`Policy::integer_outside_facet`].
    pub fn with_integer_outside_facet(mut self, on: bool) -> Self {
        self.integer_outside_facet = on;
        self
    }

    /// Whether nothing is accepted.
    pub fn is_strict(&self) -> bool {
        *self == Self::strict()
    }
}

/// What a [`Warning`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// Bytes after the end of the EXI document (beyond the padding of its
    /// last byte).
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// An integer outside its schema facet.
    IntegerOutsideFacet {
        /// The value as sent.
        value: i128,
        /// The facet's minimum.
        min: i128,
        /// The facet's maximum.
        max: i128,
    },
}

/// A deviation the lenient policy accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What was accepted.
    pub kind: WarningKind,
    /// Where it starts: the bit offset from the first bit of the stream
    /// (the header byte included); `bit / 8` is the byte.
    pub bit: usize,
    /// The element (and `@attribute`) it is in, root first, separated by
    /// `/` (`V2G_Message/Body/CurrentDemandReq/EVTargetCurrent/Multiplier`);
    /// empty outside the document's root element (trailing bytes).
    pub path: String,
}

impl Warning {
    /// The byte the deviation starts in.
    pub fn byte(&self) -> usize {
        self.bit / 8
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WarningKind::TrailingBytes { count } => write!(
                f,
                "byte {}: {count} byte{} after the end of the EXI document (ignored)",
                self.byte(),
                if *count == 1 { "" } else { "s" }
            ),
            WarningKind::IntegerOutsideFacet { value, min, max } => write!(
                f,
                "bit {} (byte {}), {}: integer {value} outside its facet {min}..={max} (accepted)",
                self.bit,
                self.byte(),
                self.path
            ),
        }
    }
}

/// A lenient reader's state (kept by [`crate::exi::BitReader`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub(crate) policy: Policy,
    pub(crate) warnings: Vec<Warning>,
    /// The open elements, root first.
    pub(crate) path: Vec<String>,
}

impl State {
    pub(crate) fn warn(&mut self, bit: usize, kind: WarningKind) {
        self.warnings.push(Warning {
            kind,
            bit,
            path: self.path.join("/"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert!(Policy::default().is_strict());
        assert!(Policy::strict().is_strict());
        assert!(!Policy::lenient().is_strict());
        assert_eq!(
            Policy::strict()
                .with_trailing_bytes(true)
                .with_integer_outside_facet(true),
            Policy::lenient()
        );
        assert!(!Policy::strict().with_trailing_bytes(true).is_strict());
    }

    #[test]
    fn display() {
        let w = Warning {
            kind: WarningKind::IntegerOutsideFacet {
                value: 4,
                min: 1,
                max: 3,
            },
            bit: 90,
            path: "V2G_Message/Body/X".into(),
        };
        assert_eq!(
            w.to_string(),
            "bit 90 (byte 11), V2G_Message/Body/X: integer 4 outside its facet 1..=3 (accepted)"
        );
        let t = Warning {
            kind: WarningKind::TrailingBytes { count: 2 },
            bit: 16,
            path: String::new(),
        };
        assert_eq!(
            t.to_string(),
            "byte 2: 2 bytes after the end of the EXI document (ignored)"
        );
    }
}
