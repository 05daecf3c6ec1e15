//! Why the server refused a station's WebSocket handshake.

use std::fmt;

/// What kind of refusal an [`Error`] is: the rule the request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request path is not under
    /// [`ServerConfig::path_prefix`](crate::ServerConfig::path_prefix)
    /// (HTTP 404).
    NoEndpoint,
    /// The identity in the path is not 1–48 characters of
    /// `A-Za-z0-9*-_=:+|@.` (2.0.1 Part 4 §3.1.1) after percent-decoding
    /// (HTTP 400).
    InvalidIdentity,
    /// No subprotocol the station offered is one the server has routes for
    /// (HTTP 400).
    NoSubprotocol,
    /// HTTP Basic authentication was missing, malformed, for another
    /// identity, or refused by the password check (HTTP 401).
    AuthenticationFailed,
    /// The TLS client certificate's subject CN is not the station identity
    /// (security profile 3, HTTP 401).
    CertificateMismatch,
    /// The request is not a valid WebSocket upgrade (HTTP 400).
    NotWebSocket,
    /// The station authenticated but is not admitted
    /// ([`ServerBuilder::admit`](crate::ServerBuilder::admit)): not, or no
    /// longer, registered (HTTP 401, as a wrong password, so the answer does
    /// not tell which identities exist).
    NotAdmitted,
    /// The station connected over the other transport than its security
    /// profile's ([`ServerBuilder::per_station_profiles`](crate::ServerBuilder::per_station_profiles)):
    /// profile 0 or 1 over TLS, 2 or 3 over plain WebSocket (HTTP 401).
    ProfileMismatch,
}

/// A handshake the server refused, as reported in
/// [`ServerEvent::Refused`](crate::ServerEvent::Refused).
///
/// Match on [`Error::kind`] or ask [`Error::is_unauthorized`] /
/// [`Error::is_protocol`]; the [`Display`](fmt::Display) text is for people
/// (logs, alerts), not API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    detail: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self { kind, detail: None }
    }

    pub(crate) fn with_detail(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: Some(detail.into()),
        }
    }

    /// The rule the request broke.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status the server answered with (404, 400 or 401).
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::NoEndpoint => 404,
            ErrorKind::AuthenticationFailed
            | ErrorKind::CertificateMismatch
            | ErrorKind::NotAdmitted
            | ErrorKind::ProfileMismatch => 401,
            ErrorKind::InvalidIdentity | ErrorKind::NoSubprotocol | ErrorKind::NotWebSocket => 400,
        }
    }

    /// Whether the station failed to authenticate (password or certificate):
    /// the refusals worth a security alert.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::AuthenticationFailed
                | ErrorKind::CertificateMismatch
                | ErrorKind::NotAdmitted
                | ErrorKind::ProfileMismatch
        )
    }

    /// Whether the request broke the OCPP-J handshake rules (path, identity,
    /// subprotocol, WebSocket upgrade), rather than authentication.
    pub fn is_protocol(&self) -> bool {
        !self.is_unauthorized()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the reason, and how the detail (if any) follows it
        let (what, join) = match self.kind {
            ErrorKind::NoEndpoint => ("no OCPP endpoint", " at "),
            ErrorKind::InvalidIdentity => ("invalid station identity", ": "),
            ErrorKind::NoSubprotocol => ("no supported OCPP subprotocol", " among "),
            ErrorKind::AuthenticationFailed => ("authentication failed", ": "),
            ErrorKind::CertificateMismatch => {
                ("client certificate does not match the identity", ": ")
            }
            ErrorKind::NotWebSocket => ("not a WebSocket upgrade", ": "),
            ErrorKind::NotAdmitted => ("station not admitted", ": "),
            ErrorKind::ProfileMismatch => ("wrong transport for the security profile", ": "),
        };
        match &self.detail {
            Some(d) => write!(f, "{what}{join}{d}"),
            None => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_give_status_and_readable_text() {
        let e = Error::with_detail(ErrorKind::NoEndpoint, "/x/CP1");
        assert_eq!(
            (e.status(), e.to_string()),
            (404, "no OCPP endpoint at /x/CP1".to_owned())
        );
        let e = Error::new(ErrorKind::AuthenticationFailed);
        assert!(e.is_unauthorized() && !e.is_protocol());
        assert_eq!(
            (e.status(), e.to_string()),
            (401, "authentication failed".to_owned())
        );
        for k in [
            ErrorKind::CertificateMismatch,
            ErrorKind::NotAdmitted,
            ErrorKind::ProfileMismatch,
        ] {
            let e = Error::new(k);
            assert_eq!(e.status(), 401);
            assert!(e.is_unauthorized());
        }
        for k in [
            ErrorKind::InvalidIdentity,
            ErrorKind::NoSubprotocol,
            ErrorKind::NotWebSocket,
        ] {
            let e = Error::new(k);
            assert_eq!((e.kind(), e.status(), e.is_protocol()), (k, 400, true));
        }
    }
}
