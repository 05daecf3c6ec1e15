//! Vehicle-to-grid communication (ISO 15118-2, ISO 15118-20, DIN SPEC 70121):
//! the transport layers under the EXI messages.
//!
//! - [`v2gtp`]: the V2G Transfer Protocol header (ISO 15118-2 §7.8.3) and a
//!   bounded reassembler for TCP streams;
//! - [`sdp`]: the SECC Discovery Protocol request and response (§7.10.1);
//! - [`exi`]: the bit-packed EXI stream of the V2G profile (header `0x80`,
//!   strict = false, empty value table): event codes, unsigned integers,
//!   strings, bounded reads;
//! - [`app_protocol`]: the SupportedAppProtocol handshake — messages, EXI
//!   codec checked byte for byte against EXIficient, and the SECC's choice;
//! - [`schema`]: DIN 70121, ISO 15118-2 and the five -20 schema sets through
//!   an XSD-driven EXI engine over a JSON view (checked against EXIficient on
//!   every message of every set, header signatures included), and EXI
//!   fragments, the bytes XML signatures digest (`SignedInfo`, signed body
//!   elements).
//!
//! # What this crate does not do (yet)
//!
//! Typed message structs for DIN/-2/-20 (the engine works on JSON); the
//! cryptography of Plug & Charge (the crate gives the bytes to digest and
//! sign); no sockets either: everything is bytes in, values out.
//!
//! # Data flow
//!
//! ```text
//!  TCP bytes ─► v2gtp::Reassembler::push ─► Packet { payload_type, payload }
//!                                              │ 0x8001 EXI, 0x8002.. -20 streams
//!                                              ▼
//!                                        app_protocol::decode / schema::by_name(..).decode
//!  UDP datagram ─► sdp::Request::decode / sdp::Response::decode
//! ```
//!
//! # Example
//!
//! ```
//! use iso15118::v2gtp::{self, PayloadType, Reassembler};
//!
//! let mut frame = Vec::new();
//! v2gtp::encode(PayloadType::EXI, &[0x80, 0x00, 0xdb, 0xab], &mut frame)?;
//! assert_eq!(&frame[..8], &[0x01, 0xfe, 0x80, 0x01, 0, 0, 0, 4]);
//!
//! let mut r = Reassembler::new(64 * 1024);
//! r.push(&frame[..5]);            // TCP may split anywhere
//! assert!(r.next_packet()?.is_none());
//! r.push(&frame[5..]);
//! let packet = r.next_packet()?.unwrap();
//! assert_eq!((packet.payload_type, packet.payload.as_slice()), (PayloadType::EXI, &[0x80, 0x00, 0xdb, 0xab][..]));
//! # Ok::<(), iso15118::v2gtp::Error>(())
//! ```
//!
//! # Feature flags
//!
//! None yet.

#![forbid(unsafe_code)]

pub mod app_protocol;
pub mod exi;
pub mod grammar;
pub mod schema;
pub mod sdp;
pub mod v2gtp;
