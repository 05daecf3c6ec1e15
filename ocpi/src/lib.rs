//! OCPI, the roaming protocol between charge point operators (CPO) and
//! e-mobility service providers (eMSP): the transport rules every module
//! shares (`transport_and_format.asciidoc`, `status_codes.asciidoc` of the
//! OCPI 2.2.1 and 2.3.0 specifications).
//!
//! - [`status`]: the response envelope and the OCPI status codes;
//! - [`auth`]: the `Authorization: Token ...` header, Base64 for 2.2+ with a
//!   switch for peers that send it plain;
//! - [`pagination`]: `offset`/`limit`/`date_from`/`date_to` and the `Link`,
//!   `X-Total-Count`, `X-Limit` headers;
//! - [`tariff`]: prices a session's charging periods under a tariff,
//!   exactly, with every restriction, step sizes, min/max, VAT (2.2.1) and
//!   tax lines (2.3.0), in the location's local time.
//!
//! - [`types`], [`v211`], [`v221`], [`v230`]: every object, class and enum
//!   of each version, generated from the vendored spec tables
//!   (`cargo xtask codegen`), with bounded and case-insensitive strings,
//!   exact decimals, lenient UTC timestamps, unknown fields kept;
//! - [`validate`]: decode-and-check by module or type name, with the JSON
//!   path of the fault;
//! - [`credentials`]: the registration handshake as sans-IO Sender and
//!   Receiver machines, and the URL policy for peer-supplied URLs;
//! - `client` (feature): reqwest/rustls calls, pagination stream;
//! - `server` (feature): axum router for a CPO or eMSP over a storage trait;
//! - [`convert`]: objects from one version to another, with what is lost.
//!
//! # Not yet
//!
//! Acting as a hub (forwarding by the routing headers; we send and answer
//! them party to party), the 2.3.0 Payments, Bookings and Invoice
//! Reconciliation interfaces (the Payments types are there, behind
//! `payments`).
//!
//! # Data flow
//!
//! ```text
//!  request headers ─► auth::parse_token ─► token (or 401)
//!  query string ────► pagination::Page::from_query ─► offset, limit, date range
//!  your data ───────► status::Response::success(data) ─► JSON body
//!                     pagination::Page::headers(total, url) ─► Link, X-Total-Count, X-Limit
//! ```
//!
//! # Example
//!
//! ```
//! use evproto_ocpi::auth::{encode_token, parse_token, TokenEncoding};
//! use evproto_ocpi::status::{Response, StatusCode};
//!
//! let header = encode_token("example-token", TokenEncoding::Base64);
//! assert_eq!(header, "Token ZXhhbXBsZS10b2tlbg==");
//! assert_eq!(parse_token(&header, TokenEncoding::Base64).unwrap(), "example-token");
//!
//! let body = Response::<()>::error(StatusCode::UNKNOWN_TOKEN, "no such token");
//! assert_eq!(serde_json::to_value(&body).unwrap()["status_code"], 2004);
//! ```
//!
//! # Feature flags
//!
//! - `client`: HTTP client (reqwest with rustls, ring provider).
//! - `server`: HTTP server (axum); implies `client` for the handshake's
//!   call-backs.
//! - `payments`: the 2.3.0 Payments module's types.

#![forbid(unsafe_code)]

pub mod auth;
#[cfg(feature = "client")]
pub mod client;
pub mod commands;
pub mod convert;
pub mod credentials;
pub mod pagination;
#[cfg(feature = "server")]
pub mod server;
pub mod status;
pub mod tariff;
pub mod types;
pub mod v211;
pub mod v221;
pub mod v230;
pub mod validate;

/// An OCPI version this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// OCPI 2.1.1 (2017), for legacy peers.
    V211,
    /// OCPI 2.2.1 (2021).
    V221,
    /// OCPI 2.3.0 (2025).
    V230,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 3] = [Version::V211, Version::V221, Version::V230];

    /// The version number as OCPI writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V211 => "2.1.1",
            Version::V221 => "2.2.1",
            Version::V230 => "2.3.0",
        }
    }

    /// Reads `2.1.1`, `2.2.1`, `2.3.0` (also `211`, `v2.2.1`, ...).
    pub fn parse(s: &str) -> Option<Version> {
        let t = s.trim().trim_start_matches(['v', 'V']).replace('.', "");
        match t.as_str() {
            "211" => Some(Version::V211),
            "221" => Some(Version::V221),
            "230" => Some(Version::V230),
            _ => None,
        }
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Version::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown OCPI version {s}")))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
