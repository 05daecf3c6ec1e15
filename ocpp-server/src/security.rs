//! Security profiles (OCPP 1.6 Security Whitepaper, 2.0.1 Part 2 A00):
//! who may connect, and how they prove it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What [`PasswordCheck::verify`] returns: the answer, later.
pub type Verdict = Pin<Box<dyn Future<Output = bool> + Send + 'static>>;

/// Checks a station's Basic-auth password during the WebSocket handshake.
///
/// The server awaits [`PasswordCheck::verify`], whose default runs
/// [`PasswordCheck::check`] on tokio's blocking pool: a password hash that
/// is slow on purpose (Argon2id, bcrypt) never holds a runtime worker. A
/// check with a cache of its own, or that limits how many hashes run at
/// once, overrides `verify`.
pub trait PasswordCheck: Send + Sync + 'static {
    /// Whether `password` is right for `identity`. May block (it runs off
    /// the runtime's workers unless `verify` is overridden).
    fn check(&self, identity: &str, password: &[u8]) -> bool;

    /// Whether `password` is right for `identity`, without blocking the
    /// caller's runtime worker. By default, [`PasswordCheck::check`] on
    /// [`tokio::task::spawn_blocking`]; a check that panics answers `false`.
    fn verify(self: Arc<Self>, identity: String, password: Vec<u8>) -> Verdict {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.check(&identity, &password))
                .await
                .unwrap_or(false)
        })
    }
}
impl<F: Fn(&str, &[u8]) -> bool + Send + Sync + 'static> PasswordCheck for F {
    fn check(&self, identity: &str, password: &[u8]) -> bool {
        self(identity, password)
    }
}

/// The security profile a server enforces.
#[derive(Clone)]
#[non_exhaustive]
pub enum Security {
    /// Profile 0: anyone may connect as any identity. Tests and closed networks only.
    Unsecured,
    /// Profile 1: HTTP Basic auth (username = identity) over plain WebSocket.
    BasicAuth(Arc<dyn PasswordCheck>),
    /// Profile 2: TLS, then HTTP Basic auth.
    TlsBasicAuth(Arc<rustls::ServerConfig>, Arc<dyn PasswordCheck>),
    /// Profile 3: TLS with client certificates; the certificate's subject CN
    /// must equal the identity. The `ServerConfig` must verify client
    /// certificates against your CA (`WebPkiClientVerifier`). A valid
    /// certificate does not say the station is still registered: give the
    /// server your registry with [`ServerBuilder::admit`](crate::ServerBuilder::admit).
    MutualTls(Arc<rustls::ServerConfig>),
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Unsecured => "Security::Unsecured (profile 0)",
            Security::BasicAuth(_) => "Security::BasicAuth (profile 1)",
            Security::TlsBasicAuth(..) => "Security::TlsBasicAuth (profile 2)",
            Security::MutualTls(_) => "Security::MutualTls (profile 3)",
        })
    }
}

impl Security {
    /// Profile 0: no authentication. Only for tests and closed networks.
    pub fn unsecured() -> Self {
        Security::Unsecured
    }

    /// Profile 1: Basic auth over plain WebSocket.
    pub fn basic_auth(check: impl PasswordCheck) -> Self {
        Security::BasicAuth(Arc::new(check))
    }

    /// Profile 2: TLS with `tls`, then Basic auth.
    pub fn tls_basic_auth(tls: Arc<rustls::ServerConfig>, check: impl PasswordCheck) -> Self {
        Security::TlsBasicAuth(tls, Arc::new(check))
    }

    /// Profile 3: mutual TLS; `tls` must require and verify client certificates.
    pub fn mutual_tls(tls: Arc<rustls::ServerConfig>) -> Self {
        Security::MutualTls(tls)
    }

    /// The profile number (0–3).
    pub fn profile(&self) -> u8 {
        match self {
            Security::Unsecured => 0,
            Security::BasicAuth(_) => 1,
            Security::TlsBasicAuth(..) => 2,
            Security::MutualTls(_) => 3,
        }
    }

    pub(crate) fn tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        match self {
            Security::TlsBasicAuth(t, _) | Security::MutualTls(t) => Some(t),
            _ => None,
        }
    }
}

/// The subject common name of a DER certificate.
pub(crate) fn subject_cn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

/// Decodes `Authorization: Basic ...` into (username, password bytes).
pub(crate) fn parse_basic(header: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_auth() {
        assert_eq!(
            parse_basic("Basic Q1AwMDE6cGFzcw=="),
            Some(("CP001".into(), b"pass".to_vec()))
        );
        assert_eq!(
            parse_basic("basic Q1AwMDE6"),
            Some(("CP001".into(), Vec::new()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
