//! SECC Discovery Protocol (ISO 15118-2:2014 §7.10.1): the EV multicasts a
//! 2-byte request (UDP, `FF02::1`, port 15118) inside a V2GTP header of type
//! `0x9000`; the SECC answers with 20 bytes (`0x9001`): its IPv6 address, TCP
//! port, security and transport.

use std::net::Ipv6Addr;

use crate::v2gtp::{self, PayloadType};

/// The UDP port SDP runs on.
pub const PORT: u16 = 15118;

/// The security the EV asks for or the SECC offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Security {
    /// `0x00`: TLS.
    Tls,
    /// `0x10`: no transport security.
    None,
}

/// The transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// `0x00`: TCP.
    Tcp,
    /// `0x10`: UDP (reserved).
    Udp,
}

/// An SDP error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The V2GTP framing is wrong.
    #[error(transparent)]
    Framing(#[from] v2gtp::Error),
    /// The payload type is not the one expected.
    #[error("expected payload type {expected:?}, got {got:?}")]
    WrongPayloadType {
        /// Expected.
        expected: PayloadType,
        /// Received.
        got: PayloadType,
    },
    /// The payload has the wrong length.
    #[error("SDP payload of {0} bytes has the wrong length")]
    WrongLength(usize),
    /// A security byte other than `0x00`/`0x10`.
    #[error("unknown security value {0:#04x}")]
    UnknownSecurity(u8),
    /// A transport byte other than `0x00`/`0x10`.
    #[error("unknown transport value {0:#04x}")]
    UnknownTransport(u8),
}

fn security(b: u8) -> Result<Security, Error> {
    match b {
        0x00 => Ok(Security::Tls),
        0x10 => Ok(Security::None),
        other => Err(Error::UnknownSecurity(other)),
    }
}

fn transport(b: u8) -> Result<Transport, Error> {
    match b {
        0x00 => Ok(Transport::Tcp),
        0x10 => Ok(Transport::Udp),
        other => Err(Error::UnknownTransport(other)),
    }
}

fn security_byte(s: Security) -> u8 {
    match s {
        Security::Tls => 0x00,
        Security::None => 0x10,
    }
}

fn transport_byte(t: Transport) -> u8 {
    match t {
        Transport::Tcp => 0x00,
        Transport::Udp => 0x10,
    }
}

fn payload(datagram: &[u8], expected: PayloadType, len: usize) -> Result<Vec<u8>, Error> {
    let packet = v2gtp::decode(datagram, 64)?;
    if packet.payload_type != expected {
        return Err(Error::WrongPayloadType {
            expected,
            got: packet.payload_type,
        });
    }
    if packet.payload.len() != len {
        return Err(Error::WrongLength(packet.payload.len()));
    }
    Ok(packet.payload)
}

/// The EV's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// Requested security.
    pub security: Security,
    /// Requested transport.
    pub transport: Transport,
}

impl Request {
    /// The V2GTP datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10);
        let body = [security_byte(self.security), transport_byte(self.transport)];
        // A 2-byte payload always fits.
        let _ = v2gtp::encode(PayloadType::SDP_REQUEST, &body, &mut out);
        out
    }

    /// Reads a datagram.
    ///
    /// # Errors
    ///
    /// [`Error`] for framing, payload type, length or field values.
    pub fn decode(datagram: &[u8]) -> Result<Self, Error> {
        let p = payload(datagram, PayloadType::SDP_REQUEST, 2)?;
        Ok(Self {
            security: security(p[0])?,
            transport: transport(p[1])?,
        })
    }
}

/// The SECC's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Response {
    /// Where the SECC's TCP server listens.
    pub address: Ipv6Addr,
    /// Its port.
    pub port: u16,
    /// Offered security (may differ from the request: SECCs downgrade).
    pub security: Security,
    /// Offered transport.
    pub transport: Transport,
}

impl Response {
    /// The V2GTP datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(20);
        body.extend_from_slice(&self.address.octets());
        body.extend_from_slice(&self.port.to_be_bytes());
        body.push(security_byte(self.security));
        body.push(transport_byte(self.transport));
        let mut out = Vec::with_capacity(28);
        let _ = v2gtp::encode(PayloadType::SDP_RESPONSE, &body, &mut out);
        out
    }

    /// Reads a datagram.
    ///
    /// # Errors
    ///
    /// [`Error`] for framing, payload type, length or field values.
    pub fn decode(datagram: &[u8]) -> Result<Self, Error> {
        let p = payload(datagram, PayloadType::SDP_RESPONSE, 20)?;
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&p[..16]);
        Ok(Self {
            address: Ipv6Addr::from(addr),
            port: u16::from_be_bytes([p[16], p[17]]),
            security: security(p[18])?,
            transport: transport(p[19])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let r = Request {
            security: Security::None,
            transport: Transport::Tcp,
        };
        assert_eq!(
            r.encode(),
            vec![0x01, 0xfe, 0x90, 0x00, 0, 0, 0, 2, 0x10, 0x00]
        );
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        assert_eq!(
            Request::decode(&[0x01, 0xfe, 0x90, 0x00, 0, 0, 0, 2, 0x20, 0x00]),
            Err(Error::UnknownSecurity(0x20))
        );
        assert!(matches!(
            Request::decode(&[0x01, 0xfe, 0x90, 0x01, 0, 0, 0, 2, 0x10, 0x00]),
            Err(Error::WrongPayloadType { .. })
        ));
        assert_eq!(
            Request::decode(&[0x01, 0xfe, 0x90, 0x00, 0, 0, 0, 1, 0x10]),
            Err(Error::WrongLength(1))
        );
    }

    #[test]
    fn response_round_trip() {
        let r = Response {
            address: "fe80::1234:5678".parse().unwrap(),
            port: 50000,
            security: Security::Tls,
            transport: Transport::Tcp,
        };
        let bytes = r.encode();
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[..8], &[0x01, 0xfe, 0x90, 0x01, 0, 0, 0, 20]);
        assert_eq!(&bytes[24..26], &50000u16.to_be_bytes());
        assert_eq!(Response::decode(&bytes).unwrap(), r);
        for cut in 0..bytes.len() {
            assert!(Response::decode(&bytes[..cut]).is_err());
        }
    }
}
