//! V2G Transfer Protocol (ISO 15118-2:2014 §7.8.3, ISO 15118-20 §7.8.3,
//! DIN SPEC 70121 §8.7.3): an 8-byte header (version `0x01`, inverse
//! `0xFE`, payload type, big-endian payload length) before every message.

use std::fmt;

/// Protocol version byte.
pub const VERSION: u8 = 0x01;
/// Inverse protocol version byte.
pub const INVERSE_VERSION: u8 = 0xFE;
/// Header length in bytes.
pub const HEADER_LEN: usize = 8;

/// The payload type: an open code space (newer parts add types), with
/// constants for the assigned ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadType(pub u16);

impl PayloadType {
    /// EXI-encoded V2G message (DIN, -2; SupportedAppProtocol in -20).
    pub const EXI: PayloadType = PayloadType(0x8001);
    /// -20 main stream (CommonMessages).
    pub const ISO20_MAIN: PayloadType = PayloadType(0x8002);
    /// -20 AC.
    pub const ISO20_AC: PayloadType = PayloadType(0x8003);
    /// -20 DC.
    pub const ISO20_DC: PayloadType = PayloadType(0x8004);
    /// -20 ACDP.
    pub const ISO20_ACDP: PayloadType = PayloadType(0x8005);
    /// -20 WPT.
    pub const ISO20_WPT: PayloadType = PayloadType(0x8006);
    /// -20 schedule renegotiation.
    pub const ISO20_SCHEDULE_RENEGOTIATION: PayloadType = PayloadType(0x8101);
    /// -20 metering confirmation.
    pub const ISO20_METERING_CONFIRMATION: PayloadType = PayloadType(0x8102);
    /// -20 ACDP system status.
    pub const ISO20_ACDP_SYSTEM_STATUS: PayloadType = PayloadType(0x8103);
    /// -20 parking status.
    pub const ISO20_PARKING_STATUS: PayloadType = PayloadType(0x8104);
    /// SECC Discovery Protocol request.
    pub const SDP_REQUEST: PayloadType = PayloadType(0x9000);
    /// SECC Discovery Protocol response.
    pub const SDP_RESPONSE: PayloadType = PayloadType(0x9001);
    /// Wireless SDP request (-20 WPT).
    pub const SDP_REQUEST_WIRELESS: PayloadType = PayloadType(0x9002);
    /// Wireless SDP response (-20 WPT).
    pub const SDP_RESPONSE_WIRELESS: PayloadType = PayloadType(0x9003);

    /// Every assigned type.
    pub const ALL: [PayloadType; 14] = [
        Self::EXI,
        Self::ISO20_MAIN,
        Self::ISO20_AC,
        Self::ISO20_DC,
        Self::ISO20_ACDP,
        Self::ISO20_WPT,
        Self::ISO20_SCHEDULE_RENEGOTIATION,
        Self::ISO20_METERING_CONFIRMATION,
        Self::ISO20_ACDP_SYSTEM_STATUS,
        Self::ISO20_PARKING_STATUS,
        Self::SDP_REQUEST,
        Self::SDP_RESPONSE,
        Self::SDP_REQUEST_WIRELESS,
        Self::SDP_RESPONSE_WIRELESS,
    ];

    /// The ISO 15118-20 schema set (`evproto_iso15118::schema::by_name` short name)
    /// whose messages travel under this payload type, for the -20 streams:
    /// `iso20` (CommonMessages), `iso20-ac`, `iso20-dc`, `iso20-acdp`,
    /// `iso20-wpt`; `None` for the others (DIN/-2 and SAP share 0x8001).
    pub fn iso20_schema(self) -> Option<&'static str> {
        match self {
            PayloadType::ISO20_MAIN => Some("iso20"),
            PayloadType::ISO20_AC => Some("iso20-ac"),
            PayloadType::ISO20_DC => Some("iso20-dc"),
            PayloadType::ISO20_ACDP => Some("iso20-acdp"),
            PayloadType::ISO20_WPT => Some("iso20-wpt"),
            _ => None,
        }
    }

    /// Whether the type is one of the assigned ones.
    pub fn is_known(self) -> bool {
        Self::ALL.contains(&self)
    }
}

impl fmt::Debug for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadType({:#06x})", self.0)
    }
}

/// A complete V2GTP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The payload type.
    pub payload_type: PayloadType,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A V2GTP framing error. A stream that produced one is out of sync: close it
/// (ISO 15118-2 [V2G2-064] to [V2G2-067] give the negative responses for UDP).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The version/inverse-version bytes are not `0x01 0xFE`.
    #[error("bad V2GTP version bytes {0:#04x} {1:#04x}")]
    BadVersion(u8, u8),
    /// The payload length is larger than the receiver accepts.
    #[error("V2GTP payload of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// Fewer bytes than the header announces (a datagram cut short).
    #[error("V2GTP message truncated: {have} of {need} bytes")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Bytes after the announced payload in a single datagram.
    #[error("{0} bytes after the V2GTP payload")]
    TrailingBytes(usize),
}

/// Appends a header and `payload` to `out`.
///
/// # Errors
///
/// [`Error::TooLong`] if the payload does not fit the 32-bit length.
pub fn encode(payload_type: PayloadType, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::TooLong {
        len: payload.len() as u64,
        max: u32::MAX as usize,
    })?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&[VERSION, INVERSE_VERSION]);
    out.extend_from_slice(&payload_type.0.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Reads a header: (payload type, payload length).
fn header(bytes: &[u8; HEADER_LEN]) -> Result<(PayloadType, u32), Error> {
    if bytes[0] != VERSION || bytes[1] != INVERSE_VERSION {
        return Err(Error::BadVersion(bytes[0], bytes[1]));
    }
    let ty = PayloadType(u16::from_be_bytes([bytes[2], bytes[3]]));
    let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Ok((ty, len))
}

/// Decodes exactly one message from a datagram (SDP over UDP).
///
/// # Errors
///
/// [`Error`] for bad version bytes, a payload over `max`, a short or long datagram.
pub fn decode(datagram: &[u8], max: usize) -> Result<Packet, Error> {
    let Some(head) = datagram.first_chunk::<HEADER_LEN>() else {
        return Err(Error::Truncated {
            have: datagram.len(),
            need: HEADER_LEN,
        });
    };
    let (payload_type, len) = header(head)?;
    let len = len as usize;
    if len > max {
        return Err(Error::TooLong {
            len: len as u64,
            max,
        });
    }
    let body = &datagram[HEADER_LEN..];
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(Error::Truncated {
            have: datagram.len(),
            need: HEADER_LEN + len,
        }),
        std::cmp::Ordering::Greater => Err(Error::TrailingBytes(body.len() - len)),
        std::cmp::Ordering::Equal => Ok(Packet {
            payload_type,
            payload: body.to_vec(),
        }),
    }
}

/// Splits a TCP byte stream into V2GTP messages, holding at most one
/// header plus `max` payload bytes: a hostile length is refused from the
/// header alone, before anything is allocated for it.
#[derive(Debug, Clone)]
pub struct Reassembler {
    buf: Vec<u8>,
    max: usize,
    failed: Option<Error>,
}

impl Reassembler {
    /// A reassembler accepting payloads up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            failed: None,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes held that are not yet a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, if one has arrived.
    ///
    /// # Errors
    ///
    /// [`Error::BadVersion`] or [`Error::TooLong`]; the stream is then out of
    /// sync and every later call returns the same error.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(head) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let (payload_type, len) = match header(head) {
            Ok(h) => h,
            Err(e) => return Err(self.fail(e)),
        };
        let len = len as usize;
        if len > self.max {
            return Err(self.fail(Error::TooLong {
                len: len as u64,
                max: self.max,
            }));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(Packet {
            payload_type,
            payload,
        }))
    }

    fn fail(&mut self, e: Error) -> Error {
        self.buf = Vec::new();
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_header_bytes() {
        // A DIN SessionSetupReq as seen on the wire starts 01 fe 80 01 00 00 00 0e.
        let mut out = Vec::new();
        encode(PayloadType::EXI, &[0u8; 14], &mut out).unwrap();
        assert_eq!(&out[..8], &[0x01, 0xfe, 0x80, 0x01, 0x00, 0x00, 0x00, 0x0e]);
        assert_eq!(decode(&out, 1024).unwrap().payload.len(), 14);
    }

    #[test]
    fn datagram_errors() {
        assert_eq!(
            decode(&[0x01, 0xfe, 0x90], 64),
            Err(Error::Truncated { have: 3, need: 8 })
        );
        assert_eq!(
            decode(&[0x02, 0xfd, 0x90, 0, 0, 0, 0, 0], 64),
            Err(Error::BadVersion(2, 0xfd))
        );
        assert_eq!(
            decode(&[1, 0xfe, 0x90, 0, 0, 0, 0, 2, 9], 64),
            Err(Error::Truncated { have: 9, need: 10 })
        );
        assert_eq!(
            decode(&[1, 0xfe, 0x90, 0, 0, 0, 0, 1, 9, 9], 64),
            Err(Error::TrailingBytes(1))
        );
        assert_eq!(
            decode(&[1, 0xfe, 0x90, 0, 0xff, 0xff, 0xff, 0xff], 64),
            Err(Error::TooLong {
                len: u64::from(u32::MAX),
                max: 64
            })
        );
    }

    #[test]
    fn hostile_length_is_refused_from_the_header() {
        let mut r = Reassembler::new(1024);
        r.push(&[1, 0xfe, 0x80, 0x01, 0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(r.next_packet(), Err(Error::TooLong { .. })));
        r.push(&[0; 100]);
        assert_eq!(r.buffered(), 0, "nothing kept after a framing error");
        assert!(r.next_packet().is_err(), "the stream stays failed");
    }

    proptest! {
        #[test]
        fn stream_split_anywhere_reassembles(payloads in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..8), cuts in proptest::collection::vec(1usize..50, 0..40)) {
            let mut stream = Vec::new();
            for (ty, p) in &payloads {
                encode(PayloadType(*ty), p, &mut stream).unwrap();
            }
            let mut r = Reassembler::new(300);
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                r.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(p) = r.next_packet().unwrap() {
                    got.push((p.payload_type.0, p.payload));
                }
            }
            prop_assert_eq!(got, payloads);
            prop_assert_eq!(r.buffered(), 0);
        }

        #[test]
        fn every_prefix_of_a_datagram_fails_cleanly(ty in any::<u16>(), p in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Vec::new();
            encode(PayloadType(ty), &p, &mut d).unwrap();
            for cut in 0..d.len() {
                prop_assert!(decode(&d[..cut], 1024).is_err());
            }
            prop_assert_eq!(decode(&d, 1024).unwrap(), Packet { payload_type: PayloadType(ty), payload: p });
        }
    }
}
