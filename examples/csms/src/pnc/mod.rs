//! Plug & Charge on the CSMS side (OCPP 2.0.1/2.1 blocks A and M, C07):
//! station certificates signed by the CSMS's CA and renewed before they
//! expire, contracts authorized by their certificate chain and OCSP,
//! contract certificates installed for cars through a provider, OCSP
//! answers for stations.
//!
//! The rules are pure and tested on their own: the CSR checks
//! ([`csr`]), the CA ([`ca`]), the contract verdict and the lab's
//! contract service ([`contract`]), OCSP ids, the lab's responder and the
//! answer cache ([`ocsp`]). [`Pnc`] is the thin shell: the store keeps
//! the CA's seed (settings `pnc_seed`: every node and every restart has
//! the same CAs), the certificates signed and the revocations; the OCPP
//! handlers (`crate::ocpp`, [`ocpp`]; 1.6 through the OCA application
//! note's `DataTransfer`, [`oca16`]) and the operator API ([`api`]) call
//! it. It is off unless `--pnc` (`CSMS_PNC`); off, the certificate
//! requests are answered `Rejected`/`Failed`, kept and alerted as before.

pub mod api;
pub mod ca;
pub mod contract;
pub mod csr;
pub mod oca16;
pub mod ocpp;
pub mod ocsp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evproto_iso15118::pki::TrustStore;

use crate::store::Store;
use ca::{BuiltinPki, CertificateUse, Signed};
use contract::{BuiltinProvider, ContractCertificateProvider, EvCertificateRequest, Verdict};
use ocsp::{CertId, OcspAnswer, OcspCache, OcspClient, OcspError, OcspStatus, TestResponder};

/// Plug & Charge flags (`CSMS_PNC*`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PncArgs {
    /// Plug & Charge: sign station certificates (SignCertificate), authorize contracts by certificate and OCSP, install contract certificates (Get15118EVCertificate), with a test PKI made at first start.
    #[arg(long, env = "CSMS_PNC")]
    pnc: bool,
    /// The organisation (O) a station's CSR must name (default evproto).
    #[arg(long, env = "CSMS_PNC_ORGANISATION")]
    pnc_organisation: Option<String>,
    /// PEM file of further trusted MO root certificates (roaming partners' contracts); the built-in MO root is always trusted.
    #[arg(long, env = "CSMS_PNC_MO_ROOTS")]
    pnc_mo_roots: Option<PathBuf>,
    /// Lifetime of a station certificate the CA signs, days (default 365).
    #[arg(long, env = "CSMS_PNC_CERTIFICATE_DAYS")]
    pnc_certificate_days: Option<u32>,
    /// Stations are asked to renew a certificate this many days before it expires (default 30).
    #[arg(long, env = "CSMS_PNC_RENEW_DAYS")]
    pnc_renew_days: Option<u32>,
    /// How long an OCSP answer of the built-in responder is valid (and cached), seconds (default 3600).
    #[arg(long, env = "CSMS_PNC_OCSP_VALIDITY_S")]
    pnc_ocsp_validity_s: Option<u64>,
    /// Ask this OCSP responder over HTTP (RFC 6960, a PKI's) instead of the built-in one (which still answers at POST /ocsp).
    #[arg(long, env = "CSMS_PNC_OCSP_URL")]
    pnc_ocsp_url: Option<String>,
    /// PEM file of the roots the OCSP responder's certificate must be issued by (default: the built-in V2G root and the trusted MO roots).
    #[arg(long, env = "CSMS_PNC_OCSP_ROOTS")]
    pnc_ocsp_roots: Option<PathBuf>,
    /// PEM file of the operator's CA that signs charging-station certificates (first) and its issuers up to the root (not included); its key in --pnc-station-ca-key. Default: the built-in station CA.
    #[arg(long, env = "CSMS_PNC_STATION_CA", requires = "pnc_station_ca_key")]
    pnc_station_ca: Option<PathBuf>,
    /// PEM file of that CA's private key (PKCS#8 or SEC1, secp256r1).
    #[arg(long, env = "CSMS_PNC_STATION_CA_KEY", requires = "pnc_station_ca")]
    pnc_station_ca_key: Option<PathBuf>,
    /// PEM file of the operator's CPO sub-CA that signs V2G (SECC) certificates (first) and its issuers up to the V2G root (not included); its key in --pnc-cpo-ca-key. Default: the built-in CPO sub-CAs.
    #[arg(long, env = "CSMS_PNC_CPO_CA", requires = "pnc_cpo_ca_key")]
    pnc_cpo_ca: Option<PathBuf>,
    /// PEM file of that CA's private key (PKCS#8 or SEC1, secp256r1).
    #[arg(long, env = "CSMS_PNC_CPO_CA_KEY", requires = "pnc_cpo_ca")]
    pnc_cpo_ca_key: Option<PathBuf>,
}

/// Plug & Charge settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PncConfig {
    /// The O a station's CSR must name.
    pub organisation: String,
    /// Further trusted MO roots, DER.
    pub mo_roots: Vec<Vec<u8>>,
    /// A station certificate's lifetime.
    pub certificate_lifetime: Duration,
    /// Renewal is asked this long before expiry.
    pub renew_before: Duration,
    /// How often certificates are checked for renewal.
    pub renew_check: Duration,
    /// An OCSP answer's validity (built-in responder).
    pub ocsp_validity: Duration,
    /// A contract's lifetime (built-in provider).
    pub contract_lifetime: Duration,
    /// A PKI's OCSP responder asked over HTTP (`None`: the built-in one).
    pub ocsp_url: Option<String>,
    /// The roots its certificate must be issued by, DER (empty: the
    /// built-in V2G root and the trusted MO roots).
    pub ocsp_roots: Vec<Vec<u8>>,
    /// The operator's CA for charging-station certificates (`None`: the
    /// built-in one).
    pub station_ca: Option<ca::ConfiguredCa>,
    /// The operator's CPO sub-CA for V2G certificates (`None`: the
    /// built-in ones).
    pub cpo_ca: Option<ca::ConfiguredCa>,
}

impl Default for PncConfig {
    fn default() -> Self {
        PncConfig {
            organisation: "evproto".into(),
            mo_roots: Vec::new(),
            certificate_lifetime: Duration::from_secs(365 * 86_400),
            renew_before: Duration::from_secs(30 * 86_400),
            renew_check: Duration::from_secs(60),
            ocsp_validity: Duration::from_secs(3600),
            contract_lifetime: Duration::from_secs(2 * 365 * 86_400),
            ocsp_url: None,
            ocsp_roots: Vec::new(),
            station_ca: None,
            cpo_ca: None,
        }
    }
}

impl PncArgs {
    /// The settings, `None` without `--pnc`.
    ///
    /// # Errors
    ///
    /// An unreadable MO roots file, a zero value.
    pub fn to_config(&self) -> Result<Option<PncConfig>, String> {
        if !self.pnc {
            return Ok(None);
        }
        let d = PncConfig::default();
        let days = |v: Option<u32>, name: &str, default: Duration| match v {
            Some(0) => Err(format!("{name}: positive")),
            Some(n) => Ok(Duration::from_secs(u64::from(n) * 86_400)),
            None => Ok(default),
        };
        let roots = |path: &Option<PathBuf>| match path {
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Ok::<Vec<Vec<u8>>, String>(
                    evproto_iso15118::pki::Cert::from_pem_chain(&pem)
                        .map_err(|e| format!("{}: {e}", p.display()))?
                        .iter()
                        .map(|c| c.der().to_vec())
                        .collect(),
                )
            }
            None => Ok(Vec::new()),
        };
        let mo_roots = roots(&self.pnc_mo_roots)?;
        let ocsp_roots = roots(&self.pnc_ocsp_roots)?;
        let configured =
            |chain: &Option<PathBuf>, key: &Option<PathBuf>, name: &str| match (chain, key) {
                (Some(c), Some(k)) => {
                    let read =
                        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
                    ca::ConfiguredCa::from_pem(&read(c)?, &read(k)?)
                        .map(Some)
                        .map_err(|e| format!("{name} {}: {e}", c.display()))
                }
                _ => Ok(None),
            };
        let station_ca = configured(
            &self.pnc_station_ca,
            &self.pnc_station_ca_key,
            "pnc_station_ca",
        )?;
        let cpo_ca = configured(&self.pnc_cpo_ca, &self.pnc_cpo_ca_key, "pnc_cpo_ca")?;
        let ocsp_url = match self.pnc_ocsp_url.as_deref().filter(|u| !u.is_empty()) {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u.to_owned()),
            Some(u) => return Err(format!("pnc_ocsp_url: an http:// or https:// URL, not {u}")),
            None => None,
        };
        Ok(Some(PncConfig {
            organisation: self
                .pnc_organisation
                .clone()
                .filter(|o| !o.is_empty())
                .unwrap_or(d.organisation),
            mo_roots,
            certificate_lifetime: days(
                self.pnc_certificate_days,
                "pnc_certificate_days",
                d.certificate_lifetime,
            )?,
            renew_before: days(self.pnc_renew_days, "pnc_renew_days", d.renew_before)?,
            ocsp_validity: match self.pnc_ocsp_validity_s {
                Some(0) => return Err("pnc_ocsp_validity_s: positive".into()),
                Some(s) => Duration::from_secs(s),
                None => d.ocsp_validity,
            },
            ocsp_url,
            ocsp_roots,
            station_ca,
            cpo_ca,
            ..d
        }))
    }
}

/// `N` bytes from the operating system's CSPRNG (through rustls' ring
/// provider, named explicitly).
fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut out)
        .is_err()
    {
        use std::io::Read;
        // the OS source directly; should that fail too the values are
        // still distinct (clock and address), not secret
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut out))
            .is_err()
        {
            let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &out);
            let h = evproto_iso15118::pki::sha256(seed.as_bytes());
            for (o, b) in out.iter_mut().zip(h.iter().cycle()) {
                *o = *b;
            }
        }
    }
    out
}

/// A random secp256r1 scalar.
fn random_scalar() -> [u8; 32] {
    loop {
        let s = random_array::<32>();
        if p256::SecretKey::from_slice(&s).is_ok() {
            return s;
        }
    }
}

/// A random secp521r1 scalar (66 bytes, big-endian).
fn random_scalar_p521() -> [u8; 66] {
    loop {
        let mut s = random_array::<66>();
        // 521 bits; those at or above the group order are drawn again
        s[0] &= 0x01;
        if evproto_iso15118::pki::SigningKey::p521_from_bytes(&s).is_ok() {
            return s;
        }
    }
}

/// A random positive certificate serial (16 bytes).
fn random_serial() -> [u8; 16] {
    let mut s = random_array::<16>();
    s[0] = (s[0] & 0x7f) | 0x10;
    s
}

fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

/// Why a station's CSR was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The request broke a rule.
    #[error(transparent)]
    Csr(#[from] csr::CsrError),
    /// The CA could not sign it.
    #[error(transparent)]
    Issue(#[from] evproto_iso15118::pki::demo::IssueError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The lab's OCSP responder answering from the store's revocations.
#[derive(Debug, Clone)]
pub struct StoreResponder {
    /// The responder.
    pub responder: TestResponder,
    /// Where revocations are kept.
    pub store: Store,
}

#[async_trait::async_trait]
impl OcspClient for StoreResponder {
    async fn check(&self, id: &CertId, at: u64) -> Result<OcspAnswer, OcspError> {
        let revoked = self
            .store
            .certificate_revoked_at(&id.key())
            .await
            .map_err(|e| OcspError::Responder(e.to_string()))?;
        self.responder
            .respond(id, revoked.and_then(|r| u64::try_from(r).ok()), at)
    }
}

/// The Plug & Charge service (see the module docs).
#[derive(Debug)]
pub struct Pnc {
    /// Settings.
    pub config: PncConfig,
    /// The CSMS's CAs.
    pub pki: BuiltinPki,
    mo_roots: TrustStore,
    ocsp: Arc<dyn OcspClient>,
    /// The built-in responder (served at `POST /ocsp` whichever is asked).
    lab: Arc<StoreResponder>,
    provider: Arc<dyn ContractCertificateProvider>,
    cache: Mutex<OcspCache>,
    store: Store,
    /// Contracts accepted by certificate (see [`ocpp::with_known_contract`]).
    accepted: ocpp::AcceptedContracts,
}

/// The store setting that keeps the CA's seed and validity.
const SEED_SETTING: &str = "pnc_seed";

impl Pnc {
    /// The service over `store`: the CAs of the stored seed (made now at
    /// first start, valid 20 years), the built-in responder and provider;
    /// contracts' eMAIDs start with `emaid_prefix` (country and party).
    ///
    /// # Errors
    ///
    /// The store failed or the stored seed is unusable.
    pub async fn start(store: Store, config: PncConfig, emaid_prefix: &str) -> Result<Pnc, String> {
        let now = unix_now();
        let fresh = format!(
            "{} {} {}",
            random_array::<32>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            now.saturating_sub(86_400),
            now + 20 * 365 * 86_400
        );
        let stored = store
            .setting_or_insert(SEED_SETTING, &fresh)
            .await
            .map_err(|e| format!("pnc: {e}"))?;
        let bad = || format!("pnc: the stored {SEED_SETTING} is unusable");
        let mut parts = stored.split(' ');
        let (Some(seed), Some(from), Some(to)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let from: u64 = from.parse().map_err(|_| bad())?;
        let to: u64 = to.parse().map_err(|_| bad())?;
        let mut pki =
            BuiltinPki::from_seed(seed.as_bytes(), from, to).map_err(|e| e.to_string())?;
        pki.station_signer = config.station_ca.clone();
        pki.v2g_signer = config.cpo_ca.clone();
        let mut roots = vec![
            pki.v2g.mo_root.cert.clone(),
            pki.iso20_mo.mo_root.cert.clone(),
        ];
        for der in &config.mo_roots {
            roots.push(evproto_iso15118::pki::Cert::from_der(der).map_err(|e| e.to_string())?);
        }
        let lab = Arc::new(StoreResponder {
            responder: TestResponder {
                signer: pki.ocsp_responder.clone(),
                validity: config.ocsp_validity.as_secs(),
            },
            store: store.clone(),
        });
        let ocsp: Arc<dyn OcspClient> = match &config.ocsp_url {
            Some(url) => {
                let trust = if config.ocsp_roots.is_empty() {
                    let mut t = vec![
                        pki.v2g.v2g_root.cert.clone(),
                        pki.iso20.v2g_root.cert.clone(),
                    ];
                    t.extend(roots.iter().cloned());
                    TrustStore::new(t)
                } else {
                    TrustStore::from_der(&config.ocsp_roots).map_err(|e| e.to_string())?
                };
                Arc::new(ocsp::HttpOcspClient::new(url, trust).map_err(|e| e.to_string())?)
            }
            None => lab.clone(),
        };
        let provider = Arc::new(BuiltinProvider {
            pki: pki.clone(),
            emaid_prefix: emaid_prefix.to_owned(),
            validity: config.contract_lifetime.as_secs(),
        });
        Ok(Pnc {
            config,
            pki,
            mo_roots: TrustStore::new(roots),
            ocsp,
            lab,
            provider,
            cache: Mutex::new(OcspCache::default()),
            store,
            accepted: ocpp::AcceptedContracts::default(),
        })
    }

    /// The built-in responder's answer to a POSTed `OCSPRequest` (RFC 6960
    /// appendix A.1): the DER `OCSPResponse`, `malformedRequest` for a
    /// request it cannot read (SHA-256, one certificate), `internalError`
    /// when the store failed.
    pub async fn serve_ocsp(&self, request: &[u8]) -> Vec<u8> {
        match ocsp::decode_request(request) {
            Ok(id) => match self.lab.check(&id, unix_now()).await {
                Ok(answer) => answer.response,
                Err(e) => {
                    tracing::warn!("OCSP responder: {e}");
                    ocsp::internal_error_response()
                }
            },
            Err(_) => ocsp::malformed_response(),
        }
    }

    /// Replaces the OCSP client (a commercial PKI's responder).
    pub fn with_ocsp(mut self, ocsp: Arc<dyn OcspClient>) -> Self {
        self.ocsp = ocsp;
        self
    }

    /// Replaces the contract certificate provider.
    pub fn with_provider(mut self, provider: Arc<dyn ContractCertificateProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// The MO roots a contract must chain to.
    pub fn mo_roots(&self) -> &TrustStore {
        &self.mo_roots
    }

    /// The OCSP answer for `id` (from the cache while valid).
    ///
    /// # Errors
    ///
    /// The responder failed.
    pub async fn status(&self, id: &CertId) -> Result<OcspAnswer, OcspError> {
        let at = unix_now();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id, at);
        if let Some(a) = cached {
            return Ok(a);
        }
        let answer = self.ocsp.check(id, at).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(id.clone(), answer.clone());
        Ok(answer)
    }

    /// Revokes `id` in the lab's responder (and forgets its cached answer).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn revoke(&self, id: &CertId) -> crate::store::Result<()> {
        let at = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        self.store.revoke_certificate(&id.key(), at).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(id);
        Ok(())
    }

    /// The verdict on a contract presented for `emaid`: its chain
    /// (`certificate`, PEM) checked and its leaf asked about, or, when the
    /// station checked the chain and sends only the OCSP ids
    /// (`iso15118CertificateHashData`), each of those asked about.
    pub async fn contract_verdict(
        &self,
        emaid: &str,
        certificate: Option<&str>,
        hashes: &[Result<CertId, OcspError>],
    ) -> Verdict {
        if let Some(pem) = certificate.filter(|p| !p.trim().is_empty()) {
            let chain = contract::verify(pem, emaid, &self.mo_roots, unix_now());
            let ocsp = match &chain {
                Ok(c) => self.asked(&c.cert_id).await,
                Err(_) => None,
            };
            return contract::judge(&chain, ocsp);
        }
        if hashes.is_empty() {
            return Verdict::NoCertificateAvailable;
        }
        for id in hashes {
            let status = match id {
                Ok(id) => self.asked(id).await,
                Err(_) => None,
            };
            match status {
                Some(OcspStatus::Good) => {}
                Some(OcspStatus::Revoked { .. }) => return Verdict::CertificateRevoked,
                Some(OcspStatus::Unknown) | None => return Verdict::CertChainError,
            }
        }
        Verdict::Accepted
    }

    async fn asked(&self, id: &CertId) -> Option<OcspStatus> {
        match self.status(id).await {
            Ok(a) => Some(a.status),
            Err(e) => {
                tracing::warn!("OCSP: {e}");
                None
            }
        }
    }

    /// The EXI answer of the provider for a car's request.
    ///
    /// # Errors
    ///
    /// The provider made none.
    pub async fn ev_certificate(
        &self,
        request: &EvCertificateRequest,
    ) -> Result<Vec<u8>, contract::ProviderError> {
        self.provider.answer(request, unix_now()).await
    }

    /// Checks `csr` of `station` and signs it as `usage`, recording it:
    /// the chain for `CertificateSigned`.
    ///
    /// # Errors
    ///
    /// A rule broken, signing or the store failed.
    pub async fn sign(
        &self,
        station: &str,
        csr_pem: &str,
        usage: CertificateUse,
    ) -> Result<Signed, SignError> {
        let rule = match usage {
            CertificateUse::ChargingStation => csr::KeyRule::ChargingStation,
            _ => csr::KeyRule::V2g,
        };
        let checked = csr::check(csr_pem, station, &self.config.organisation, rule)?;
        let now = unix_now();
        let serial = random_serial();
        let subject = format!(
            "CN={},O={}",
            escape(&checked.common_name),
            escape(&checked.organisation)
        );
        let not_after = now + self.config.certificate_lifetime.as_secs();
        let signed = self.pki.sign(
            usage,
            &subject,
            &checked.public_key,
            &serial,
            now.saturating_sub(60),
            not_after,
        )?;
        let serial_hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
        self.store
            .station_certificate_signed(
                station,
                usage.as_str(),
                &serial_hex,
                i64::try_from(not_after).unwrap_or(i64::MAX),
                &signed.pem_chain,
            )
            .await?;
        Ok(signed)
    }
}

/// An RFC 4514 attribute value escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The authorization of a contract token: a verdict other than `Accepted`
/// makes the token `Invalid`; an accepted contract whose eMAID nobody
/// knows (`Unknown`: neither the operator's registry nor a roaming
/// partner) is `Accepted` (its MO vouches for it); one the operator
/// registered, or a partner's token, keeps its own status (blocked,
/// expired, or `Invalid` when its eMSP did not answer in real time).
pub fn with_contract(
    mut decision: evproto_csms_core::authorization::Decision,
    verdict: Verdict,
) -> evproto_csms_core::authorization::Decision {
    use evproto_csms_core::authorization::Status;
    decision.status = match (verdict, decision.status) {
        (Verdict::Accepted, Status::Unknown) => Status::Accepted,
        (Verdict::Accepted, s) => s,
        _ => Status::Invalid,
    };
    decision
}

/// What the renewal worker does each turn: asks every connected station
/// whose certificate expires within `renew_before` to sign a new one
/// (2.x `TriggerMessage` SignChargingStationCertificate /
/// SignV2GCertificate, 1.6 `ExtendedTriggerMessage`); an accepted request
/// is noted so it is asked once per certificate.
pub async fn renew_due(
    store: &Store,
    gateway: &crate::gateway::StationGateway,
    renew_before: Duration,
) -> crate::store::Result<usize> {
    let before = unix_now() + renew_before.as_secs();
    let due = store
        .certificates_to_renew(i64::try_from(before).unwrap_or(i64::MAX), 500)
        .await?;
    let mut asked = 0;
    for c in due {
        let Some(usage) = CertificateUse::parse(&c.certificate_use) else {
            continue;
        };
        match api::trigger_renewal(gateway, &c.station_id, usage).await {
            Ok(true) => {
                store
                    .certificate_renewal_requested(&c.station_id, usage.as_str())
                    .await?;
                asked += 1;
            }
            Ok(false) => tracing::info!(station = %c.station_id, "renewal trigger not accepted"),
            // not connected: asked when it is
            Err(e) => tracing::debug!(station = %c.station_id, "renewal: {e}"),
        }
    }
    Ok(asked)
}

/// Runs [`renew_due`] every `config.renew_check` for as long as the CSMS runs.
pub async fn renewals(store: Store, gateway: crate::gateway::StationGateway, config: PncConfig) {
    let mut tick = tokio::time::interval(config.renew_check);
    loop {
        tick.tick().await;
        if let Err(e) = renew_due(&store, &gateway, config.renew_before).await {
            tracing::warn!("certificate renewal: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evproto_csms_core::authorization::{Decision, Status};

    fn decision(status: Status) -> Decision {
        Decision {
            status,
            group: None,
            expires_at: None,
        }
    }

    #[test]
    fn a_contract_decides_an_unknown_token_and_not_a_registered_status() {
        let d = with_contract(decision(Status::Unknown), Verdict::Accepted);
        assert_eq!(d.status, Status::Accepted);
        let d = with_contract(decision(Status::Blocked), Verdict::Accepted);
        assert_eq!(d.status, Status::Blocked);
        // a partner's token its eMSP did not confirm: not accepted on the
        // certificate alone
        let d = with_contract(decision(Status::Invalid), Verdict::Accepted);
        assert_eq!(d.status, Status::Invalid);
        let d = with_contract(decision(Status::Accepted), Verdict::CertificateRevoked);
        assert_eq!(d.status, Status::Invalid);
    }

    #[test]
    fn flags_make_the_settings() {
        assert_eq!(PncArgs::default().to_config(), Ok(None));
        let on = PncArgs {
            pnc: true,
            pnc_renew_days: Some(7),
            ..PncArgs::default()
        };
        let c = on.to_config().unwrap().unwrap();
        assert_eq!(c.renew_before, Duration::from_secs(7 * 86_400));
        assert_eq!(c.organisation, "evproto");
        let zero = PncArgs {
            pnc: true,
            pnc_certificate_days: Some(0),
            ..PncArgs::default()
        };
        assert!(zero.to_config().is_err());
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("CS,1"), "CS\\,1");
        assert_eq!(escape("#a"), "\\#a");
    }
}
