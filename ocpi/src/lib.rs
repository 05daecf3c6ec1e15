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
//! # What this crate does not do (yet)
//!
//! No HTTP (the `server`/`client` features are to come), no typed module
//! objects beyond what the tariff engine reads, and no credentials
//! handshake yet.
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
//! use ocpi::auth::{encode_token, parse_token, TokenEncoding};
//! use ocpi::status::{Response, StatusCode};
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
//! None yet.

#![forbid(unsafe_code)]

pub mod auth;
pub mod pagination;
pub mod status;
pub mod tariff;
