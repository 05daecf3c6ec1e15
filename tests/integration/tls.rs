//! Test certificates (rcgen): a CA, a server certificate for `localhost`,
//! and client certificates whose CN is a station identity.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Pki {
    pub ca: CertificateDer<'static>,
    ca_issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        // the workspace builds rustls with both ring and aws-lc-rs (a
        // dependency of the CSMS's OpenADR client enables the latter), so
        // the process-level provider must be chosen: ring, as our crates use
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "evproto test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap().der().clone();
        Self {
            ca,
            ca_issuer: Issuer::new(params, key),
        }
    }

    fn leaf(
        &self,
        sans: Vec<String>,
        cn: &str,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca_issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.ca.clone()], key)
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        roots
    }

    /// Server TLS for profile 2 (no client certificates).
    pub fn server(&self) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.leaf(vec!["localhost".into()], "localhost");
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }

    /// Server TLS for profile 3 (client certificates from our CA required).
    pub fn server_mtls(&self) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.leaf(vec!["localhost".into()], "localhost");
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(self.roots()))
            .build()
            .unwrap();
        Arc::new(
            rustls::ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }

    /// Client TLS trusting our CA, optionally with a client certificate for `identity`.
    pub fn client(&self, identity: Option<&str>) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder().with_root_certificates(self.roots());
        Arc::new(match identity {
            Some(id) => {
                let (chain, key) = self.leaf(Vec::new(), id);
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        })
    }
}
