//! Revocation by OCSP (RFC 6960): what the CSMS asks about a certificate
//! ([`CertId`], OCPP's `OCSPRequestDataType`), the answer
//! ([`OcspAnswer`]: good, revoked or unknown, its validity, the DER
//! `OCSPResponse` a station forwards to the car), the [`OcspClient`] a
//! commercial PKI's responder plugs in as, the lab's own responder
//! ([`TestResponder`], sans-IO: the revocation and the time come in) and
//! the cache that keeps answers within their validity ([`OcspCache`]).

use std::collections::HashMap;

use x509_cert::der::{Decode, Encode};

/// The identity of a certificate as OCSP asks about it: SHA-256 hashes of
/// its issuer's name and key, its serial number; lowercase hex without
/// leading zeros in the serial (OCPP's spelling is compared through
/// [`CertId::normalized`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertId {
    /// `issuerNameHash`: SHA-256 of the issuer's subject name (DER), hex.
    pub issuer_name_hash: String,
    /// `issuerKeyHash`: SHA-256 of the issuer's public key bits, hex.
    pub issuer_key_hash: String,
    /// `serialNumber`, hex.
    pub serial: String,
}

/// Why a [`CertId`] could not be made or an answer not had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    /// A certificate that does not parse.
    #[error("not an X.509 certificate: {0}")]
    Certificate(String),
    /// The hash algorithm is not SHA-256.
    #[error("hash algorithm {0} is not served (SHA256 only)")]
    HashAlgorithm(String),
    /// The responder could not be reached or answered nothing usable.
    #[error("OCSP responder: {0}")]
    Responder(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_owned()
    };
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl CertId {
    /// The id of `leaf` (DER) issued by `issuer` (DER).
    ///
    /// # Errors
    ///
    /// Either does not parse.
    pub fn of(leaf: &[u8], issuer: &[u8]) -> Result<CertId, OcspError> {
        let bad = |e: x509_cert::der::Error| OcspError::Certificate(e.to_string());
        let leaf = x509_cert::Certificate::from_der(leaf).map_err(bad)?;
        let issuer = x509_cert::Certificate::from_der(issuer).map_err(bad)?;
        let tbs = issuer.tbs_certificate();
        let name = tbs.subject().to_der().map_err(bad)?;
        let key = tbs.subject_public_key_info().subject_public_key.raw_bytes();
        Ok(CertId {
            issuer_name_hash: hex(&evproto_iso15118::pki::sha256(&name)),
            issuer_key_hash: hex(&evproto_iso15118::pki::sha256(key)),
            serial: hex(leaf.tbs_certificate().serial_number().as_bytes()),
        }
        .normalized())
    }

    /// From OCPP's fields (`hashAlgorithm` must be `SHA256`).
    ///
    /// # Errors
    ///
    /// Another hash algorithm.
    pub fn from_ocpp(
        hash_algorithm: &str,
        issuer_name_hash: &str,
        issuer_key_hash: &str,
        serial: &str,
    ) -> Result<CertId, OcspError> {
        if hash_algorithm != "SHA256" {
            return Err(OcspError::HashAlgorithm(hash_algorithm.into()));
        }
        Ok(CertId {
            issuer_name_hash: issuer_name_hash.into(),
            issuer_key_hash: issuer_key_hash.into(),
            serial: serial.into(),
        }
        .normalized())
    }

    /// Lowercase hex, the serial without leading zero bytes.
    pub fn normalized(self) -> CertId {
        let serial = self.serial.trim().to_ascii_lowercase();
        let serial = serial.trim_start_matches('0');
        CertId {
            issuer_name_hash: self.issuer_name_hash.trim().to_ascii_lowercase(),
            issuer_key_hash: self.issuer_key_hash.trim().to_ascii_lowercase(),
            serial: if serial.is_empty() {
                "0".into()
            } else {
                serial.into()
            },
        }
    }

    /// The key the store and the cache keep it under.
    pub fn key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.issuer_name_hash, self.issuer_key_hash, self.serial
        )
    }
}

/// A certificate's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OcspStatus {
    /// Not revoked.
    Good,
    /// Revoked at this Unix time (s).
    Revoked {
        /// When.
        at: u64,
    },
    /// The responder does not know the certificate.
    Unknown,
}

/// A responder's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspAnswer {
    /// The status.
    pub status: OcspStatus,
    /// `thisUpdate`, Unix s.
    pub this_update: u64,
    /// `nextUpdate`, Unix s: the answer may be used until then.
    pub next_update: u64,
    /// The DER `OCSPResponse` (what `GetCertificateStatus` returns, base64).
    pub response: Vec<u8>,
}

/// An OCSP responder as the CSMS asks it: the lab's [`TestResponder`]
/// through the store, or a commercial PKI's over HTTP.
#[async_trait::async_trait]
pub trait OcspClient: Send + Sync + std::fmt::Debug {
    /// The status of `id` at Unix time `at` (s).
    async fn check(&self, id: &CertId, at: u64) -> Result<OcspAnswer, OcspError>;
}

/// Answers kept until their `nextUpdate` (sans-IO: the time comes in).
#[derive(Debug, Default)]
pub struct OcspCache {
    answers: HashMap<CertId, OcspAnswer>,
}

impl OcspCache {
    /// The answer for `id` still valid at `at`.
    pub fn get(&mut self, id: &CertId, at: u64) -> Option<OcspAnswer> {
        match self.answers.get(id) {
            Some(a) if a.this_update <= at && at < a.next_update => Some(a.clone()),
            Some(_) => {
                self.answers.remove(id);
                None
            }
            None => None,
        }
    }

    /// Keeps `answer` for `id`.
    pub fn put(&mut self, id: CertId, answer: OcspAnswer) {
        self.answers.insert(id, answer);
    }

    /// Forgets `id` (it was revoked here: the next question is asked anew).
    pub fn forget(&mut self, id: &CertId) {
        self.answers.remove(id);
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// The lab's OCSP responder: every certificate it is asked about is good
/// unless it was revoked here (a lab responder, not a CA's: it does not
/// know which certificates exist), answers valid for `validity` seconds,
/// signed by the responder certificate (named in the response).
#[derive(Debug, Clone)]
pub struct TestResponder {
    /// The responder's certificate and key (secp256r1).
    pub signer: evproto_iso15118::pki::demo::Issued,
    /// How long an answer is valid, s.
    pub validity: u64,
}

impl TestResponder {
    /// The answer for `id` at `at`, `revoked_at` when it was revoked.
    ///
    /// # Errors
    ///
    /// The id's hex does not decode or the response cannot be signed.
    pub fn respond(
        &self,
        id: &CertId,
        revoked_at: Option<u64>,
        at: u64,
    ) -> Result<OcspAnswer, OcspError> {
        let status = match revoked_at {
            Some(r) if r <= at => OcspStatus::Revoked { at: r },
            _ => OcspStatus::Good,
        };
        let next_update = at + self.validity;
        let response = self.encode(id, status, at, next_update)?;
        Ok(OcspAnswer {
            status,
            this_update: at,
            next_update,
            response,
        })
    }

    /// The DER `OCSPResponse` (successful, id-pkix-ocsp-basic, one
    /// SingleResponse, the responder named by key hash and its certificate
    /// included).
    fn encode(
        &self,
        id: &CertId,
        status: OcspStatus,
        at: u64,
        next_update: u64,
    ) -> Result<Vec<u8>, OcspError> {
        let bad = |what: &str| OcspError::Responder(format!("cannot encode {what}"));
        let cert_id = cert_id_der(id)?;
        let cert_status = match status {
            OcspStatus::Good => der::tlv(0x80, &[]),
            OcspStatus::Revoked { at } => der::tlv(0xa1, &der::time(at)),
            OcspStatus::Unknown => der::tlv(0x82, &[]),
        };
        let single = der::seq(&[
            cert_id,
            cert_status,
            der::time(at),
            der::tlv(0xa0, &der::time(next_update)),
        ]);
        let signer = x509_cert::Certificate::from_der(self.signer.cert.der())
            .map_err(|e| OcspError::Certificate(e.to_string()))?;
        let responder_key = evproto_iso15118::pki::sha256(
            signer
                .tbs_certificate()
                .subject_public_key_info()
                .subject_public_key
                .raw_bytes(),
        );
        let tbs = der::seq(&[
            der::tlv(0xa2, &der::tlv(0x04, &responder_key)),
            der::time(at),
            der::seq(&[single]),
        ]);
        // ecdsa-with-SHA256 over the DER of tbsResponseData
        let evproto_iso15118::pki::SigningKey::P256(key) = &self.signer.key else {
            return Err(bad("the signature (the responder key is not secp256r1)"));
        };
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = key.sign(&tbs);
        let sig = sig.to_der();
        let mut bits = vec![0u8];
        bits.extend_from_slice(sig.as_bytes());
        let ecdsa_sha256 = der::seq(&[der::oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])]);
        let certs = der::tlv(0xa0, &der::seq(&[self.signer.cert.der().to_vec()]));
        let basic = der::seq(&[tbs, ecdsa_sha256, der::tlv(0x03, &bits), certs]);
        let basic_oid = der::oid(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01]);
        let bytes = der::seq(&[basic_oid, der::tlv(0x04, &basic)]);
        let response = der::seq(&[der::tlv(0x0a, &[0]), der::tlv(0xa0, &bytes)]);
        // the result must be DER a reader accepts
        x509_cert::der::asn1::Any::from_der(&response).map_err(|_| bad("the response"))?;
        Ok(response)
    }
}

/// The SHA-256 `CertID` of `id` (DER).
fn cert_id_der(id: &CertId) -> Result<Vec<u8>, OcspError> {
    let bad = |what: &str| OcspError::Responder(format!("cannot encode {what}"));
    let name_hash = unhex(&id.issuer_name_hash).ok_or_else(|| bad("issuerNameHash"))?;
    let key_hash = unhex(&id.issuer_key_hash).ok_or_else(|| bad("issuerKeyHash"))?;
    let mut serial = unhex(&id.serial).ok_or_else(|| bad("serialNumber"))?;
    if serial.first().is_some_and(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    let sha256 = der::seq(&[der::oid(&[
        0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
    ])]);
    Ok(der::seq(&[
        sha256,
        der::tlv(0x04, &name_hash),
        der::tlv(0x04, &key_hash),
        der::tlv(0x02, &serial),
    ]))
}

/// OCSP over HTTP (RFC 6960 appendix A.1): the request a client POSTs
/// (`application/ocsp-request`), one `CertID`, unsigned.
///
/// # Errors
///
/// The id's hex does not decode.
pub fn encode_request(id: &CertId) -> Result<Vec<u8>, OcspError> {
    // OCSPRequest { TBSRequest { requestList { Request { reqCert } } } }
    Ok(der::seq(&[der::seq(&[der::seq(&[der::seq(&[
        cert_id_der(id)?,
    ])])])]))
}

const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";
const OCSP_BASIC_OID: &str = "1.3.6.1.5.5.7.48.1.1";
const ECDSA_SHA256_OID: &str = "1.2.840.10045.4.3.2";

/// Why a request a responder received gets no answer of its own.
fn malformed(why: impl std::fmt::Display) -> OcspError {
    OcspError::Responder(format!("malformed request: {why}"))
}

fn id_of(c: &x509_ocsp::CertId) -> Result<CertId, OcspError> {
    let algorithm = c.hash_algorithm.oid.to_string();
    if algorithm != SHA256_OID {
        return Err(OcspError::HashAlgorithm(algorithm));
    }
    Ok(CertId {
        issuer_name_hash: hex(c.issuer_name_hash.as_bytes()),
        issuer_key_hash: hex(c.issuer_key_hash.as_bytes()),
        serial: hex(c.serial_number.as_bytes()),
    }
    .normalized())
}

/// The certificate a POSTed `OCSPRequest` asks about (the responder's
/// side; one `CertID`, SHA-256).
///
/// # Errors
///
/// Not an OCSP request, more or fewer than one certificate, another hash.
pub fn decode_request(bytes: &[u8]) -> Result<CertId, OcspError> {
    use der07::Decode;
    let req = x509_ocsp::OcspRequest::from_der(bytes).map_err(malformed)?;
    match &req.tbs_request.request_list[..] {
        [one] => id_of(&one.req_cert),
        list => Err(malformed(format!(
            "{} certificates asked about (one is served)",
            list.len()
        ))),
    }
}

/// The `OCSPResponse` a responder sends for a request it cannot read
/// (`malformedRequest`, no response bytes).
pub fn malformed_response() -> Vec<u8> {
    der::seq(&[der::tlv(0x0a, &[1])])
}

/// The `OCSPResponse` a responder sends when it failed (`internalError`).
pub fn internal_error_response() -> Vec<u8> {
    der::seq(&[der::tlv(0x0a, &[2])])
}

/// A responder's DER `OCSPResponse` for `id` read at Unix time `at`: a
/// successful basic response, signed (ecdsa-with-SHA256, secp256r1) by the
/// certificate it includes, that certificate valid at `at` with the
/// digital-signature usage and issued by one of `trust`, a `SingleResponse`
/// for `id` current at `at`. The answer keeps the response as received
/// (what `GetCertificateStatus` forwards to the car).
///
/// # Errors
///
/// Anything else, with the reason.
pub fn decode_response(
    bytes: &[u8],
    id: &CertId,
    trust: &evproto_iso15118::pki::TrustStore,
    at: u64,
) -> Result<OcspAnswer, OcspError> {
    use der07::{Decode, Encode};
    let bad = |why: String| OcspError::Responder(why);
    let resp = x509_ocsp::OcspResponse::from_der(bytes)
        .map_err(|e| bad(format!("not an OCSPResponse: {e}")))?;
    if resp.response_status != x509_ocsp::OcspResponseStatus::Successful {
        return Err(bad(format!("status {:?}", resp.response_status)));
    }
    let body = resp
        .response_bytes
        .ok_or_else(|| bad("no response bytes".into()))?;
    if body.response_type.to_string() != OCSP_BASIC_OID {
        return Err(bad(format!("response type {}", body.response_type)));
    }
    let basic = x509_ocsp::BasicOcspResponse::from_der(body.response.as_bytes())
        .map_err(|e| bad(format!("not a BasicOCSPResponse: {e}")))?;
    if basic.signature_algorithm.oid.to_string() != ECDSA_SHA256_OID {
        return Err(bad(format!(
            "signature algorithm {} (ecdsa-with-SHA256 is served)",
            basic.signature_algorithm.oid
        )));
    }
    // the signer: the certificate the response includes, issued by a trusted root
    let signer = basic
        .certs
        .as_ref()
        .and_then(|c| c.first())
        .ok_or_else(|| bad("no signer certificate included".into()))?
        .to_der()
        .map_err(|e| bad(e.to_string()))?;
    let chain = evproto_iso15118::pki::verify_chain(
        &signer,
        &[],
        trust,
        at,
        evproto_iso15118::pki::LeafUsage::Signature,
    )
    .map_err(|e| bad(format!("the signer is not trusted: {e}")))?;
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| bad(e.to_string()))?;
    let sig = basic
        .signature
        .as_bytes()
        .ok_or_else(|| bad("the signature is not whole bytes".into()))?;
    let sig = p256::ecdsa::Signature::from_der(sig)
        .map_err(|_| bad("the signature is not a DER ECDSA signature".into()))?;
    evproto_iso15118::pki::VerifyingKey::of(&chain.leaf)
        .map_err(|e| bad(e.to_string()))?
        .verify_raw(&tbs, &sig.to_bytes())
        .map_err(|_| bad("the signature does not verify".into()))?;
    let unix = |t: &x509_ocsp::OcspGeneralizedTime| t.0.to_unix_duration().as_secs();
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| id_of(&r.cert_id).is_ok_and(|i| i == *id))
        .ok_or_else(|| bad("no answer for the certificate asked about".into()))?;
    let this_update = unix(&single.this_update);
    // no nextUpdate: newer information is always available; used once
    let next_update = single.next_update.as_ref().map_or(this_update, unix);
    if this_update > at + 300 || next_update < at {
        return Err(bad(format!(
            "not current: thisUpdate {this_update}, nextUpdate {next_update}, now {at}"
        )));
    }
    let status = match &single.cert_status {
        x509_ocsp::CertStatus::Good(_) => OcspStatus::Good,
        x509_ocsp::CertStatus::Revoked(r) => OcspStatus::Revoked {
            at: unix(&r.revocation_time),
        },
        x509_ocsp::CertStatus::Unknown(_) => OcspStatus::Unknown,
    };
    Ok(OcspAnswer {
        status,
        this_update,
        next_update,
        response: bytes.to_vec(),
    })
}

/// A PKI's OCSP responder over HTTP (RFC 6960 appendix A.1: the request
/// POSTed as `application/ocsp-request`); its answers checked by
/// [`decode_response`] against `trust`.
#[derive(Debug, Clone)]
pub struct HttpOcspClient {
    /// The responder's URL.
    pub url: String,
    /// The roots the responder's certificate must be issued by.
    pub trust: evproto_iso15118::pki::TrustStore,
    http: reqwest::Client,
}

impl HttpOcspClient {
    /// A client of the responder at `url` (10 s per request).
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built.
    pub fn new(
        url: impl Into<String>,
        trust: evproto_iso15118::pki::TrustStore,
    ) -> Result<HttpOcspClient, OcspError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| OcspError::Responder(e.to_string()))?;
        Ok(HttpOcspClient {
            url: url.into(),
            trust,
            http,
        })
    }
}

#[async_trait::async_trait]
impl OcspClient for HttpOcspClient {
    async fn check(&self, id: &CertId, at: u64) -> Result<OcspAnswer, OcspError> {
        let fail = |e: String| OcspError::Responder(format!("{}: {e}", self.url));
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/ocsp-request")
            .header("accept", "application/ocsp-response")
            .body(encode_request(id)?)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        decode_response(&bytes, id, &self.trust, at).map_err(|e| fail(e.to_string()))
    }
}

/// The few DER constructions an OCSP response needs.
mod der {
    /// Tag, definite length, content.
    pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(content);
        out
    }

    /// A SEQUENCE of encoded elements.
    pub(super) fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// An OBJECT IDENTIFIER from its encoded arcs.
    pub(super) fn oid(arcs: &[u8]) -> Vec<u8> {
        tlv(0x06, arcs)
    }

    /// A GeneralizedTime of Unix seconds (`YYYYMMDDHHMMSSZ`).
    pub(super) fn time(secs: u64) -> Vec<u8> {
        let t = chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
            .unwrap_or_default();
        tlv(0x18, t.format("%Y%m%d%H%M%SZ").to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evproto_iso15118::pki::demo::DemoPki;

    fn pki() -> DemoPki {
        DemoPki::generate(b"ocsp", "DEEVPC000000001", 1_700_000_000, 2_000_000_000).unwrap()
    }

    #[test]
    fn the_id_of_a_contract_matches_ocpps_spelling_and_the_responder_says_good_or_revoked() {
        let p = pki();
        let id = CertId::of(p.contract.cert.der(), p.mo_sub_ca2.cert.der()).unwrap();
        assert_eq!(id.issuer_name_hash.len(), 64);
        let spelled = CertId::from_ocpp(
            "SHA256",
            &id.issuer_name_hash.to_uppercase(),
            &id.issuer_key_hash,
            &format!("00{}", id.serial.to_uppercase()),
        )
        .unwrap();
        assert_eq!(spelled, id);
        assert!(matches!(
            CertId::from_ocpp("SHA384", "a", "b", "1"),
            Err(OcspError::HashAlgorithm(_))
        ));
        let responder = TestResponder {
            signer: p.cps.clone(),
            validity: 600,
        };
        let good = responder.respond(&id, None, 1_800_000_000).unwrap();
        assert_eq!(good.status, OcspStatus::Good);
        assert_eq!(good.next_update, 1_800_000_600);
        let revoked = responder
            .respond(&id, Some(1_799_000_000), 1_800_000_000)
            .unwrap();
        assert_eq!(revoked.status, OcspStatus::Revoked { at: 1_799_000_000 });
        assert_ne!(good.response, revoked.response);
        // a revocation later than the question is not yet one
        let later = responder
            .respond(&id, Some(1_900_000_000), 1_800_000_000)
            .unwrap();
        assert_eq!(later.status, OcspStatus::Good);
    }

    #[test]
    fn the_cache_keeps_an_answer_until_its_next_update() {
        let p = pki();
        let id = CertId::of(p.contract.cert.der(), p.mo_sub_ca2.cert.der()).unwrap();
        let responder = TestResponder {
            signer: p.cps.clone(),
            validity: 60,
        };
        let mut cache = OcspCache::default();
        cache.put(id.clone(), responder.respond(&id, None, 1000).unwrap());
        assert!(cache.get(&id, 1000).is_some());
        assert!(cache.get(&id, 1059).is_some());
        assert!(cache.get(&id, 1060).is_none());
        assert!(cache.is_empty());
        cache.put(id.clone(), responder.respond(&id, None, 1000).unwrap());
        cache.forget(&id);
        assert!(cache.get(&id, 1001).is_none());
    }

    /// A responder certificate issued by `p`'s V2G root.
    fn responder_of(p: &DemoPki) -> evproto_iso15118::pki::demo::Issued {
        use evproto_iso15118::pki::demo;
        demo::issue(
            "CN=OCSP Responder,O=evproto,DC=V2G",
            &demo::derive_key(b"ocsp", "responder"),
            Some(&p.v2g_root),
            demo::Role::Signer,
            77,
            1_700_000_000,
            2_000_000_000,
        )
        .unwrap()
    }

    #[test]
    fn a_request_over_http_names_the_certificate_and_the_answer_is_checked() {
        let p = pki();
        let id = CertId::of(p.contract.cert.der(), p.mo_sub_ca2.cert.der()).unwrap();
        // the request a client POSTs, read back by a responder
        let request = encode_request(&id).unwrap();
        assert_eq!(decode_request(&request).unwrap(), id);
        assert!(decode_request(b"not DER").is_err());
        let responder = TestResponder {
            signer: responder_of(&p),
            validity: 600,
        };
        let trust = evproto_iso15118::pki::TrustStore::new(vec![p.v2g_root.cert.clone()]);
        let at = 1_800_000_000;
        let good = responder.respond(&id, None, at).unwrap();
        let read = decode_response(&good.response, &id, &trust, at + 10).unwrap();
        assert_eq!(read, good);
        let revoked = responder.respond(&id, Some(at - 5), at).unwrap();
        let read = decode_response(&revoked.response, &id, &trust, at).unwrap();
        assert_eq!(read.status, OcspStatus::Revoked { at: at - 5 });
        // past its nextUpdate
        let stale = decode_response(&good.response, &id, &trust, at + 601);
        assert!(stale.unwrap_err().to_string().contains("not current"));
        // another certificate's answer
        let other = CertId {
            serial: "1234".into(),
            ..id.clone()
        };
        let e = decode_response(&good.response, &other, &trust, at).unwrap_err();
        assert!(e.to_string().contains("no answer"), "{e}");
        // a signer the trust store does not know
        let mo_only = evproto_iso15118::pki::TrustStore::new(vec![p.mo_root.cert.clone()]);
        let e = decode_response(&good.response, &id, &mo_only, at).unwrap_err();
        assert!(e.to_string().contains("not trusted"), "{e}");
        // a signer not issued by a root directly (the CPS leaf, under sub-CAs)
        let cps = TestResponder {
            signer: p.cps.clone(),
            validity: 600,
        };
        let e = decode_response(
            &cps.respond(&id, None, at).unwrap().response,
            &id,
            &trust,
            at,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not trusted"), "{e}");
        // a status changed after signing: the signature does not verify
        let mut forged = revoked.response.clone();
        let at_status = forged
            .windows(2)
            .position(|w| w == [0xa1, 0x11])
            .expect("the revoked status");
        forged[at_status + 2 + 14] ^= 0x01; // a digit of the revocation time
        let e = decode_response(&forged, &id, &trust, at).unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
        // an unsuccessful response
        let e = decode_response(&malformed_response(), &id, &trust, at).unwrap_err();
        assert!(e.to_string().contains("MalformedRequest"), "{e}");
        let e = decode_response(&internal_error_response(), &id, &trust, at).unwrap_err();
        assert!(e.to_string().contains("InternalError"), "{e}");
        assert!(decode_response(b"\x30\x00", &id, &trust, at).is_err());
    }
}
