//! Plug & Charge (ISO 15118-2, and -20's authorization by contract): what
//! the SECC and the EVCC are given, what the SECC asks the backend, and the
//! certificate provisioning service's side of CertificateInstallation and
//! CertificateUpdate (-2).
//!
//! The machines do the protocol (chains, GenChallenge, signatures over
//! EXI fragments, the contract key's decryption) with [`crate::pki`]; what
//! they cannot know comes in as data: the MO roots and the GenChallenge
//! ([`SeccPnc`]), the car's contract and provisioning credentials
//! ([`EvPnc`]), the backend's verdict on a contract
//! ([`super::EvseRequest::AuthorizeContract`] → [`ContractStatus`]), a
//! CertificateInstallationRes ([`super::EvseRequest::InstallCertificate`]
//! → [`CertificateInstallation`], which [`ContractProvisioning::install`]
//! makes for a lab or test backend) and a CertificateUpdateRes
//! ([`super::EvseRequest::UpdateCertificate`] → [`CertificateUpdate`],
//! [`ContractProvisioning::update`]). ISO 15118-20's CertificateInstallation
//! goes alike: [`super::EvseRequest::InstallCertificateIso20`] →
//! [`Iso20CertificateInstallation`], [`ContractProvisioning::install_iso20`].

use crate::grammar::{Base64Binary, HexBinary};
use crate::messages::iso2 as m;
use crate::messages::iso20 as cm;
use crate::messages::xmldsig;
use crate::pki::{self, Cert, KeyError, SigningKey, TrustStore};

/// Plug & Charge settings of an SECC ([`super::SeccConfig::pnc`]), both
/// versions: -20's GenChallenge is AuthorizationSetupRes's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SeccPnc {
    /// The MO roots a contract chain must end at.
    pub mo_roots: TrustStore,
    /// The GenChallenge of PaymentDetailsRes: 16 fresh random bytes per
    /// session, drawn by the shell (the machine draws none).
    pub gen_challenge: [u8; 16],
    /// Ask for one signed MeteringReceipt (`ReceiptRequired=true` in the
    /// first charge-loop answer that carries a meter reading). Default on.
    pub receipt_required: bool,
}

impl SeccPnc {
    /// PnC against `mo_roots` with this session's `gen_challenge`.
    pub fn new(mo_roots: TrustStore, gen_challenge: [u8; 16]) -> Self {
        Self {
            mo_roots,
            gen_challenge,
            receipt_required: true,
        }
    }
    /// Sets [`SeccPnc::receipt_required`].
    pub fn with_receipt_required(mut self, on: bool) -> Self {
        self.receipt_required = on;
        self
    }
}

/// A contract: the certificate chain the car presents and its key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Contract {
    /// The eMAID (the contract certificate's CN).
    pub emaid: String,
    /// The contract certificate, DER.
    pub certificate: Vec<u8>,
    /// Its sub-CAs, DER, the leaf's issuer first.
    pub sub_cas: Vec<Vec<u8>>,
    /// The private key: a secp256r1 scalar, 32 bytes (-2), or a secp521r1
    /// one, 66 bytes (-20).
    pub key: Vec<u8>,
}

impl Contract {
    /// A contract from its parts.
    pub fn new(emaid: String, certificate: Vec<u8>, sub_cas: Vec<Vec<u8>>, key: Vec<u8>) -> Self {
        Self {
            emaid,
            certificate,
            sub_cas,
            key,
        }
    }
}

/// The OEM provisioning credentials a car uses to get a contract.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Provisioning {
    /// The OEM provisioning certificate, DER.
    pub certificate: Vec<u8>,
    /// Its private key (secp256r1 scalar): signs CertificateInstallationReq
    /// and decrypts the contract key.
    pub key: Vec<u8>,
}

impl Provisioning {
    /// Provisioning credentials from their parts.
    pub fn new(certificate: Vec<u8>, key: Vec<u8>) -> Self {
        Self { certificate, key }
    }

    /// ISO 15118-20: the `OEMProvisioningCertificateChain` of a
    /// CertificateInstallationReq (`Id` `id1`, the certificate alone) and
    /// the header signature over it by the provisioning key (secp521r1
    /// with SHA-512), as the EVCC sends them and
    /// [`verify_iso20_installation_request`] checks them.
    ///
    /// # Errors
    ///
    /// The certificate cannot be read, the key is not its key, or the
    /// signature cannot be made.
    pub fn sign_iso20_chain(
        &self,
    ) -> Result<(cm::SignedCertificateChainType, xmldsig::SignatureType), InstallError> {
        let cert = Cert::from_der(&self.certificate)?;
        let key = pki::check_key_pair(&self.key, &cert)?;
        let chain = cm::SignedCertificateChainType {
            id: "id1".into(),
            certificate: Base64Binary(self.certificate.clone()),
            sub_certificates: None,
        };
        let (id, fragment) = iso20_request_fragment(&chain).map_err(InstallError::Exi)?;
        let signature = pki::sign(&key, &[(id.as_str(), &fragment)])?;
        Ok((chain, signature))
    }
}

/// Plug & Charge settings of an EVCC ([`super::EvccConfig::pnc`]). Over
/// -20 only [`EvPnc::contract`] is used (no CertificateInstallation yet).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EvPnc {
    /// The contract, if the car has one; without, it installs one first.
    pub contract: Option<Contract>,
    /// The OEM provisioning credentials (for CertificateInstallation).
    pub provisioning: Option<Provisioning>,
    /// The V2G roots the car trusts: their ids go into
    /// CertificateInstallationReq and the SA provisioning chain must end at one.
    pub v2g_roots: TrustStore,
    /// Renew the contract (CertificateUpdateReq, before PaymentDetails)
    /// when it expires within this many seconds; `None`: never.
    pub renew_within: Option<u64>,
}

impl EvPnc {
    /// PnC with this contract and/or provisioning credentials.
    pub fn new(
        contract: Option<Contract>,
        provisioning: Option<Provisioning>,
        v2g_roots: TrustStore,
    ) -> Self {
        Self {
            contract,
            provisioning,
            v2g_roots,
            renew_within: None,
        }
    }
    /// Sets [`EvPnc::renew_within`] (seconds).
    pub fn with_renewal(mut self, within: Option<u64>) -> Self {
        self.renew_within = within;
        self
    }
}

/// The backend's verdict on a contract (OCSP, contract database): the
/// answer to [`super::EvseRequest::AuthorizeContract`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContractStatus {
    /// Charge.
    Accepted,
    /// The certificate is revoked: `FAILED_CertificateRevoked`.
    Revoked,
    /// Not allowed here (unknown, blocked): `FAILED`.
    Rejected,
}

/// A CertificateInstallationRes as the backend or provisioning service
/// made it: the body and the header signature of the SA provisioning key.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateInstallation {
    /// The response (its ResponseCode is the SECC's to set).
    pub response: m::CertificateInstallationResType,
    /// Signs ContractSignatureCertChain, ContractSignatureEncryptedPrivateKey,
    /// DHpublickey and eMAID.
    pub signature: xmldsig::SignatureType,
}

/// A CertificateUpdateRes as the backend or provisioning service made it:
/// the body and the header signature of the SA provisioning key (over the
/// same four elements as an installation's).
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateUpdate {
    /// The response (its ResponseCode is the SECC's to set).
    pub response: m::CertificateUpdateResType,
    /// Signs ContractSignatureCertChain, ContractSignatureEncryptedPrivateKey,
    /// DHpublickey and eMAID.
    pub signature: xmldsig::SignatureType,
}

/// An ISO 15118-20 CertificateInstallationRes as the backend or
/// provisioning service made it: what the SECC sends under its own header
/// (ResponseCode `OK`, `EVSEProcessing=Finished`).
#[derive(Debug, Clone, PartialEq)]
pub struct Iso20CertificateInstallation {
    /// `CPSCertificateChain`: the CPS leaf and its sub-CAs.
    pub cps_chain: cm::CertificateChainType,
    /// `SignedInstallationData`: the contract chain, the ECDH curve and
    /// public key, the encrypted contract key.
    pub data: cm::SignedInstallationDataType,
    /// `RemainingContractCertificateChains`.
    pub remaining: u8,
    /// The header signature of the CPS leaf over `SignedInstallationData`.
    pub signature: xmldsig::SignatureType,
}

impl Iso20CertificateInstallation {
    /// Takes the parts of a whole CertificateInstallationRes (e.g. the
    /// `exiResponse` of OCPP's `Get15118EVCertificate`, decoded); `None`
    /// when its header carries no signature.
    pub fn from_response(r: &cm::CertificateInstallationResType) -> Option<Self> {
        Some(Self {
            cps_chain: r.cps_certificate_chain.clone(),
            data: r.signed_installation_data.clone(),
            remaining: r.remaining_contract_certificate_chains,
            signature: r.header.signature.clone()?,
        })
    }

    /// The whole CertificateInstallationRes (ResponseCode `OK`,
    /// `EVSEProcessing=Finished`) under a header of `session_id` (the
    /// request's) and `time_stamp` (Unix s) that carries the CPS signature:
    /// what a backend returns, e.g. as `Get15118EVCertificate`'s
    /// `exiResponse`; [`Iso20CertificateInstallation::from_response`] takes
    /// it back.
    pub fn into_response(
        self,
        session_id: &[u8],
        time_stamp: u64,
    ) -> cm::CertificateInstallationResType {
        cm::CertificateInstallationResType {
            header: cm::MessageHeaderType {
                session_id: HexBinary(session_id.to_vec()),
                time_stamp,
                signature: Some(self.signature),
            },
            response_code: cm::ResponseCodeType::OK,
            evse_processing: cm::ProcessingType::Finished,
            cps_certificate_chain: self.cps_chain,
            signed_installation_data: self.data,
            remaining_contract_certificate_chains: self.remaining,
        }
    }
}

/// Checks a -20 CertificateInstallationReq as the SECC and a provisioning
/// service must: its header signature, by the OEM provisioning
/// certificate's key, over `OEMProvisioningCertificateChain`
/// [V2G20-2207]. Returns that certificate (its CN is the PCID). The chain
/// up to an OEM root is the provisioning service's to check (it knows the
/// OEM roots; the SECC does not).
///
/// # Errors
///
/// The certificate cannot be read or its key used, the header carries no
/// signature, or it does not verify.
pub fn verify_iso20_installation_request(
    r: &cm::CertificateInstallationReqType,
) -> Result<Cert, InstallError> {
    let chain = &r.oem_provisioning_certificate_chain;
    let cert = Cert::from_der(&chain.certificate.0)?;
    let key = cert.public_key()?;
    let signature = r.header.signature.as_ref().ok_or(InstallError::Unsigned)?;
    let (id, fragment) = iso20_request_fragment(chain).map_err(InstallError::Exi)?;
    pki::verify(signature, &[(id.as_str(), fragment.as_slice())], &key)?;
    Ok(cert)
}

impl cm::SubCertificatesType {
    /// The certificates, DER, in their order (the leaf's issuer first).
    pub fn ders(&self) -> Vec<Vec<u8>> {
        self.certificate.iter().map(|c| c.0.clone()).collect()
    }
}

impl m::SubCertificatesType {
    /// The certificates, DER, in their order (the leaf's issuer first).
    pub fn ders(&self) -> Vec<Vec<u8>> {
        self.certificate.iter().map(|c| c.0.clone()).collect()
    }
}

/// The signed element of a -20 CertificateInstallationRes as `(Id, EXI
/// fragment)`.
pub(crate) fn iso20_installation_fragment(
    d: &cm::SignedInstallationDataType,
) -> Result<(String, Vec<u8>), InstallError> {
    let mut out = Vec::new();
    cm::Fragment::SignedInstallationData(Box::new(d.clone()))
        .encode(&mut out)
        .map_err(|e| InstallError::Exi(e.to_string()))?;
    Ok((d.id.clone(), out))
}

/// The signed element of a -20 CertificateInstallationReq (the OEM
/// provisioning chain) as `(Id, EXI fragment)`.
pub(crate) fn iso20_request_fragment(
    c: &cm::SignedCertificateChainType,
) -> Result<(String, Vec<u8>), String> {
    let mut out = Vec::new();
    cm::Fragment::OEMProvisioningCertificateChain(Box::new(c.clone()))
        .encode(&mut out)
        .map_err(|e| e.to_string())?;
    Ok((c.id.clone(), out))
}

/// Why a [`CertificateInstallation`] could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// A key problem (OEM key not secp256r1, decrypted key not the contract's).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A certificate that cannot be read or does not verify.
    #[error(transparent)]
    Certificate(#[from] pki::CertError),
    /// The signature does not verify or cannot be made.
    #[error(transparent)]
    Signature(#[from] pki::SignatureError),
    /// A fragment that cannot be encoded.
    #[error("EXI: {0}")]
    Exi(String),
    /// A request whose header carries no signature.
    #[error("the request carries no signature")]
    Unsigned,
}

/// The Ids ISO 15118-2 gives the four signed elements of a
/// CertificateInstallationRes.
const IDS: [&str; 4] = ["id1", "id2", "id3", "id4"];

fn chain(id: Option<&str>, leaf: &[u8], subs: &[Vec<u8>]) -> m::CertificateChainType {
    m::CertificateChainType {
        id: id.map(Into::into),
        certificate: Base64Binary(leaf.to_vec()),
        sub_certificates: (!subs.is_empty()).then(|| m::SubCertificatesType {
            certificate: subs.iter().cloned().map(Base64Binary).collect(),
        }),
    }
}

/// The leaf and sub-CAs of a certificate chain element, DER.
pub(crate) fn chain_parts(c: &m::CertificateChainType) -> (Vec<u8>, Vec<Vec<u8>>) {
    (
        c.certificate.0.clone(),
        c.sub_certificates
            .as_ref()
            .map(|s| s.certificate.iter().map(|b| b.0.clone()).collect())
            .unwrap_or_default(),
    )
}

/// The four signed elements of a CertificateInstallationRes as `(Id, EXI
/// fragment)`.
pub(crate) fn installation_fragments(
    r: &m::CertificateInstallationResType,
) -> Result<Vec<(String, Vec<u8>)>, InstallError> {
    signed_fragments(
        &r.contract_signature_cert_chain,
        &r.contract_signature_encrypted_private_key,
        &r.d_hpublickey,
        &r.e_maid,
    )
}

/// The four signed elements of a CertificateUpdateRes as `(Id, EXI
/// fragment)`: the same four as an installation's.
pub(crate) fn update_fragments(
    r: &m::CertificateUpdateResType,
) -> Result<Vec<(String, Vec<u8>)>, InstallError> {
    signed_fragments(
        &r.contract_signature_cert_chain,
        &r.contract_signature_encrypted_private_key,
        &r.d_hpublickey,
        &r.e_maid,
    )
}

/// ContractSignatureCertChain, ContractSignatureEncryptedPrivateKey,
/// DHpublickey and eMAID as `(Id, EXI fragment)`.
fn signed_fragments(
    chain: &m::CertificateChainType,
    key: &m::ContractSignatureEncryptedPrivateKeyType,
    dh: &m::DiffieHellmanPublickeyType,
    emaid: &m::EMAIDType,
) -> Result<Vec<(String, Vec<u8>)>, InstallError> {
    let frags = [
        (
            chain.id.clone().unwrap_or_default(),
            m::Fragment::ContractSignatureCertChain(Box::new(chain.clone())),
        ),
        (
            key.id.clone(),
            m::Fragment::ContractSignatureEncryptedPrivateKey(Box::new(key.clone())),
        ),
        (
            dh.id.clone(),
            m::Fragment::DHpublickey(Box::new(dh.clone())),
        ),
    ];
    let mut out = frags
        .into_iter()
        .map(|(id, f)| {
            let mut out = Vec::new();
            f.encode(&mut out)
                .map_err(|e| InstallError::Exi(e.to_string()))?;
            Ok((id, out))
        })
        .collect::<Result<Vec<_>, InstallError>>()?;
    // eMAID has two declarations of different types in the -2 schema
    // (PaymentDetailsReq's string, this EMAIDType), so the typed `Fragment`
    // enum has no variant for it: the XSD-driven engine encodes it
    let exi = |e: String| InstallError::Exi(e);
    let json = serde_json::json!({ "eMAID": serde_json::to_value(emaid).map_err(|e| exi(e.to_string()))? });
    let bytes = crate::schema::by_name("iso2")
        .map_err(|e| exi(e.to_string()))?
        .encode_fragment(&json)
        .map_err(|e| exi(e.to_string()))?;
    out.push((emaid.id.clone(), bytes));
    Ok(out)
}

/// The signed elements as [`pki::sign`] and [`pki::verify`] take them.
pub(crate) fn as_refs(v: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    v.iter().map(|(i, b)| (i.as_str(), b.as_slice())).collect()
}

/// The certificate provisioning service of a lab or test backend: it
/// holds a contract for the car and the SA provisioning key and chain, and
/// makes the CertificateInstallationRes for an OEM provisioning
/// certificate (the contract key encrypted for it, [V2G2-818]).
#[derive(Debug, Clone)]
pub struct ContractProvisioning {
    /// The SA provisioning (CPS) leaf's key.
    pub cps_key: SigningKey,
    /// The SA provisioning leaf, DER.
    pub cps_certificate: Vec<u8>,
    /// Its sub-CAs, DER, the leaf's issuer first.
    pub cps_sub_cas: Vec<Vec<u8>>,
    /// The contract to deliver.
    pub contract: Contract,
}

/// What CertificateInstallationRes and CertificateUpdateRes both carry,
/// and the SA provisioning key's signature over its four signed elements.
struct Delivery {
    sa_chain: m::CertificateChainType,
    contract_chain: m::CertificateChainType,
    encrypted_key: m::ContractSignatureEncryptedPrivateKeyType,
    dh_public_key: m::DiffieHellmanPublickeyType,
    emaid: m::EMAIDType,
    signature: xmldsig::SignatureType,
}

impl ContractProvisioning {
    /// The CertificateInstallationRes for the car holding
    /// `oem_provisioning_cert`; `ephemeral_key` (a secp256r1 scalar) and
    /// `iv` must be fresh random values, drawn by the caller.
    pub fn install(
        &self,
        oem_provisioning_cert: &[u8],
        ephemeral_key: &[u8],
        iv: [u8; 16],
    ) -> Result<CertificateInstallation, InstallError> {
        let d = self.deliver(oem_provisioning_cert, ephemeral_key, iv)?;
        Ok(CertificateInstallation {
            response: m::CertificateInstallationResType {
                response_code: m::ResponseCodeType::OK,
                sa_provisioning_certificate_chain: d.sa_chain,
                contract_signature_cert_chain: d.contract_chain,
                contract_signature_encrypted_private_key: d.encrypted_key,
                d_hpublickey: d.dh_public_key,
                e_maid: d.emaid,
            },
            signature: d.signature,
        })
    }

    /// The ISO 15118-20 CertificateInstallationRes for the car holding
    /// `oem_provisioning_cert` (secp521r1; its CN is the PCID): the
    /// contract (secp521r1, with a SubjectKeyIdentifier) and its key
    /// encrypted for the provisioning key [V2G20-2497] with the AAD of
    /// [V2G20-2492], `SignedInstallationData` signed by the CPS key;
    /// `ephemeral_key` (a secp521r1 scalar, 66 bytes) and `iv` must be
    /// fresh random values, drawn by the caller.
    pub fn install_iso20(
        &self,
        oem_provisioning_cert: &[u8],
        ephemeral_key: &[u8],
        iv: [u8; 12],
    ) -> Result<Iso20CertificateInstallation, InstallError> {
        let oem = Cert::from_der(oem_provisioning_cert)?;
        let pcid = oem.common_name().unwrap_or_default();
        let contract = Cert::from_der(&self.contract.certificate)?;
        let aad = pki::installation_aad(&pcid, &contract)?;
        let enc = pki::encrypt_contract_key_iso20(
            &self.contract.key,
            &oem.public_key()?,
            ephemeral_key,
            iv,
            &aad,
        )?;
        let data = cm::SignedInstallationDataType {
            id: "id1".into(),
            contract_certificate_chain: cm::ContractCertificateChainType {
                certificate: Base64Binary(self.contract.certificate.clone()),
                sub_certificates: cm::SubCertificatesType {
                    certificate: self
                        .contract
                        .sub_cas
                        .iter()
                        .cloned()
                        .map(Base64Binary)
                        .collect(),
                },
            },
            ecdh_curve: cm::EcdhCurveType::SECP521,
            dh_public_key: Base64Binary(enc.dh_public_key),
            secp521_encrypted_private_key: Some(Base64Binary(enc.encrypted_private_key)),
            x448_encrypted_private_key: None,
            tpm_encrypted_private_key: None,
        };
        let fragment = iso20_installation_fragment(&data)?;
        let signature = pki::sign(&self.cps_key, &[(fragment.0.as_str(), &fragment.1)])?;
        Ok(Iso20CertificateInstallation {
            cps_chain: cm::CertificateChainType {
                certificate: Base64Binary(self.cps_certificate.clone()),
                sub_certificates: (!self.cps_sub_cas.is_empty()).then(|| cm::SubCertificatesType {
                    certificate: self.cps_sub_cas.iter().cloned().map(Base64Binary).collect(),
                }),
            },
            data,
            remaining: 0,
            signature,
        })
    }

    /// The CertificateUpdateRes for the car whose contract is
    /// `old_contract_cert` (the certificate CertificateUpdateReq carried,
    /// which the caller has checked): the contract of this provisioning
    /// (normally the same eMAID with a new key and validity), its key
    /// encrypted for the old contract's public key ([V2G2-818]);
    /// `ephemeral_key` (a secp256r1 scalar) and `iv` must be fresh random
    /// values, drawn by the caller.
    pub fn update(
        &self,
        old_contract_cert: &[u8],
        ephemeral_key: &[u8],
        iv: [u8; 16],
    ) -> Result<CertificateUpdate, InstallError> {
        let d = self.deliver(old_contract_cert, ephemeral_key, iv)?;
        Ok(CertificateUpdate {
            response: m::CertificateUpdateResType {
                response_code: m::ResponseCodeType::OK,
                sa_provisioning_certificate_chain: d.sa_chain,
                contract_signature_cert_chain: d.contract_chain,
                contract_signature_encrypted_private_key: d.encrypted_key,
                d_hpublickey: d.dh_public_key,
                e_maid: d.emaid,
                retry_counter: None,
            },
            signature: d.signature,
        })
    }

    /// The contract with its key encrypted for the public key of
    /// `receiver_cert`, signed.
    fn deliver(
        &self,
        receiver_cert: &[u8],
        ephemeral_key: &[u8],
        iv: [u8; 16],
    ) -> Result<Delivery, InstallError> {
        let receiver = Cert::from_der(receiver_cert)?.public_key()?;
        let enc = pki::encrypt_contract_key(&self.contract.key, &receiver, ephemeral_key, iv)?;
        let contract_chain = chain(
            Some(IDS[0]),
            &self.contract.certificate,
            &self.contract.sub_cas,
        );
        let encrypted_key = m::ContractSignatureEncryptedPrivateKeyType {
            id: IDS[1].into(),
            value: Base64Binary(enc.encrypted_private_key),
        };
        let dh_public_key = m::DiffieHellmanPublickeyType {
            id: IDS[2].into(),
            value: Base64Binary(enc.dh_public_key),
        };
        let emaid = m::EMAIDType {
            id: IDS[3].into(),
            value: self.contract.emaid.clone(),
        };
        let frags = signed_fragments(&contract_chain, &encrypted_key, &dh_public_key, &emaid)?;
        Ok(Delivery {
            sa_chain: chain(None, &self.cps_certificate, &self.cps_sub_cas),
            signature: pki::sign(&self.cps_key, &as_refs(&frags))?,
            contract_chain,
            encrypted_key,
            dh_public_key,
            emaid,
        })
    }
}

/// A signed -2 body element as a fragment: `(Id, bytes)`.
pub(crate) fn fragment(id: &str, f: m::Fragment) -> Result<(String, Vec<u8>), String> {
    let mut out = Vec::new();
    f.encode(&mut out).map_err(|e| e.to_string())?;
    Ok((id.to_string(), out))
}

/// Encodes a -2 `V2G_Message` with a header signature.
pub(crate) fn encode_signed(
    session_id: &[u8],
    body: m::BodyType,
    signature: Option<xmldsig::SignatureType>,
) -> Result<Vec<u8>, String> {
    let msg = m::Message::V2gMessage(Box::new(m::V2gMessage {
        header: m::MessageHeaderType {
            session_id: HexBinary(session_id.to_vec()),
            notification: None,
            signature,
        },
        body,
    }));
    let mut out = Vec::new();
    msg.encode(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
