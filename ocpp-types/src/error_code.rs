//! The `ErrorCode` type each version module defines.

/// Defines a version's open `ErrorCode` newtype with one constant per code the
/// version's OCPP-J specification lists.
macro_rules! error_codes {
    ($version:literal, $section:literal, $( $(#[$doc:meta])* $konst:ident = $wire:literal, )*) => {
        #[doc = concat!("A CALLERROR `errorCode` as OCPP ", $version, " spells it (", $section, ").")]
        ///
        /// An open code space: a peer may send a code outside the list, which
        /// is kept as received; [`ErrorCode::is_known`] tells them apart.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct ErrorCode(std::borrow::Cow<'static, str>);

        impl ErrorCode {
            $( $(#[$doc])* pub const $konst: ErrorCode = ErrorCode(std::borrow::Cow::Borrowed($wire)); )*

            /// Every code the specification lists.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$konst),*];

            /// A code as received on the wire.
            pub fn from_wire(code: &str) -> Self {
                match Self::ALL.iter().find(|c| c.as_str() == code) {
                    Some(c) => c.clone(),
                    None => ErrorCode(std::borrow::Cow::Owned(code.to_owned())),
                }
            }

            /// The code as spelled on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the specification lists this code.
            pub fn is_known(&self) -> bool {
                Self::ALL.contains(self)
            }
        }

        impl std::fmt::Display for ErrorCode {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for ErrorCode {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for ErrorCode {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok(Self::from_wire(&s))
            }
        }
    };
}

pub(crate) use error_codes;
