//! The OCPP handlers of Plug & Charge, one module per version (the same
//! code for 2.0.1 and 2.1; 1.6's SignCertificate beside them): called by
//! `crate::ocpp`'s handlers when Plug & Charge is on.
//!
//! - `SignCertificate` (A02/A03): the CSR checked and signed, answered
//!   `Accepted`, and the chain sent with `CertificateSigned` right after
//!   (a station that does not get it sends its CSR again after its
//!   `CertSigningWaitMinimum`, so the call needs no outbox); a CSR that
//!   breaks a rule is `Rejected` with the reason.
//! - `Get15118EVCertificate` (M01/M02): the provider's EXI answer.
//! - `GetCertificateStatus` (M06): the OCSP answer, DER, base64.
//! - `Authorize` with a contract (C07): see [`authorize_contract`].

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use evproto_csms_core::authorization::{Decision, Status};
use evproto_ocpp_proto::CallError;
use evproto_ocpp_types::{v16, Action};

use super::ca::CertificateUse;
use super::contract::{CertificateAction, EvCertificateRequest, Verdict, ISO20_SCHEMA};
use super::ocsp::{CertId, OcspError};
use crate::App;

fn internal(station: &str, action: &str, e: impl std::fmt::Display) -> CallError {
    tracing::error!(station, action, "not answered: {e}");
    CallError::new("InternalError", e.to_string())
}

/// At most `n` bytes of `s`, cut at a character boundary.
fn cut(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Sends `request` (a `CertificateSigned`) to `station` once this handler
/// has answered.
fn deliver<A: Action>(app: Arc<App>, station: String, request: A::Request)
where
    A::Request: Send + 'static,
{
    tokio::spawn(async move {
        match app.gateway.call::<A>(&station, request).await {
            Ok(_) => tracing::info!(station, "certificate sent"),
            Err(e) => tracing::warn!(station, "certificate not delivered: {e}"),
        }
    });
}

/// What a contract `Authorize` carries, in either version.
pub trait ContractRequest {
    /// The idToken and whether its type is `eMAID`.
    fn emaid(&self) -> Option<&str>;
    /// The contract chain (PEM), if sent.
    fn certificate(&self) -> Option<&str>;
    /// The OCSP ids of `iso15118CertificateHashData`.
    fn hashes(&self) -> Vec<Result<CertId, OcspError>>;
}

/// Contracts accepted by their certificate, by eMAID, until their OCSP
/// answer's end: the transaction that follows the `Authorize` starts with
/// the eMAID (kept per CSMS: a station's messages reach one node).
#[derive(Debug, Default)]
pub struct AcceptedContracts(std::sync::Mutex<HashMap<String, u64>>);

fn emaid_key(e: &str) -> String {
    e.chars()
        .filter(|c| *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// `Authorize` with a contract: the verdict on its certificate (chain to
/// the MO roots, OCSP) answered as `certificateStatus`, and the token's
/// decision made by it (see [`super::with_contract`]). Without Plug &
/// Charge, for another token type or without a certificate or hashes:
/// the decision as it was and no certificate status.
pub async fn authorize_contract(
    app: &App,
    req: &impl ContractRequest,
    decision: Decision,
) -> (Decision, Option<Verdict>) {
    let (Some(p), Some(emaid)) = (app.pnc.as_deref(), req.emaid()) else {
        return (decision, None);
    };
    let hashes = req.hashes();
    if req.certificate().is_none() && hashes.is_empty() {
        return (decision, None);
    }
    let verdict = p.contract_verdict(emaid, req.certificate(), &hashes).await;
    let decision = super::with_contract(decision, verdict);
    if decision.status == Status::Accepted {
        let until = super::unix_now() + p.config.ocsp_validity.as_secs();
        p.accepted
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(emaid_key(emaid), until);
    }
    (decision, Some(verdict))
}

/// A transaction's token: an eMAID whose contract was accepted by its
/// certificate (and not since refused) is `Accepted` where nobody knows
/// it (`Unknown`); a status somebody gave (the registry, the eMSP of a
/// partner's token, a reservation for another token) stands.
pub fn with_known_contract(app: &App, token: &str, decision: Decision) -> Decision {
    let Some(p) = app.pnc.as_deref() else {
        return decision;
    };
    if decision.status != Status::Unknown {
        return decision;
    }
    let known = p
        .accepted
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&emaid_key(token))
        .is_some_and(|until| *until > super::unix_now());
    if known {
        Decision {
            status: Status::Accepted,
            ..decision
        }
    } else {
        decision
    }
}

/// 1.6 SignCertificate (security extension): the charge point's certificate.
pub async fn sign_certificate_16(
    app: &Arc<App>,
    station: &str,
    req: &v16::SignCertificateRequest,
) -> Result<v16::SignCertificateResponse, CallError> {
    type A = v16::action::SignCertificate;
    let Some(p) = app.pnc.as_deref() else {
        return Err(internal(station, A::NAME, "Plug & Charge is off"));
    };
    let status = match p
        .sign(station, req.csr.as_str(), CertificateUse::ChargingStation)
        .await
    {
        Ok(signed) => {
            let request = v16::CertificateSignedRequest {
                certificate_chain: signed
                    .pem_chain
                    .parse()
                    .map_err(|e| internal(station, A::NAME, e))?,
            };
            deliver::<v16::action::CertificateSigned>(app.clone(), station.to_owned(), request);
            v16::GenericStatusEnumType::Accepted
        }
        Err(e) => {
            tracing::warn!(station, "CSR refused: {e}");
            v16::GenericStatusEnumType::Rejected
        }
    };
    Ok(v16::SignCertificateResponse { status })
}

macro_rules! handlers_2x {
    ($ver:ident, [$($signed_extra:ident: $signed_value:ident),*], [$($ev_extra:ident),*]) => {
        /// The Plug & Charge handlers of this version.
        pub mod $ver {
            use super::*;
            use evproto_ocpp_types::$ver as t;

            impl ContractRequest for t::AuthorizeRequest {
                fn emaid(&self) -> Option<&str> {
                    (self.id_token.r#type.as_str() == "eMAID").then(|| self.id_token.id_token.as_str())
                }
                fn certificate(&self) -> Option<&str> {
                    self.certificate.as_ref().map(|c| c.as_str())
                }
                fn hashes(&self) -> Vec<Result<CertId, OcspError>> {
                    self.iso15118certificate_hash_data
                        .iter()
                        .flatten()
                        .map(|d| {
                            CertId::from_ocpp(
                                d.hash_algorithm.as_str(),
                                d.issuer_name_hash.as_str(),
                                d.issuer_key_hash.as_str(),
                                d.serial_number.as_str(),
                            )
                        })
                        .collect()
                }
            }

            fn status_info(reason: &str, info: &str) -> Option<t::StatusInfoType> {
                Some(t::StatusInfoType {
                    reason_code: reason.parse().ok()?,
                    additional_info: cut(info, 512).parse().ok(),
                    custom_data: None,
                })
            }

            fn pnc<'a>(app: &'a App, station: &str, action: &str) -> Result<&'a super::super::Pnc, CallError> {
                app.pnc
                    .as_deref()
                    .ok_or_else(|| internal(station, action, "Plug & Charge is off"))
            }

            /// SignCertificate: checked, signed, `CertificateSigned` after the answer.
            pub async fn sign_certificate(
                app: &Arc<App>,
                station: &str,
                req: t::SignCertificateRequest,
            ) -> Result<t::SignCertificateResponse, CallError> {
                type A = t::action::SignCertificate;
                let p = pnc(app, station, A::NAME)?;
                let usage = match req.certificate_type {
                    Some(t::CertificateSigningUseEnumType::V2GCertificate) => CertificateUse::V2g,
                    _ => CertificateUse::ChargingStation,
                };
                Ok(match p.sign(station, req.csr.as_str(), usage).await {
                    Ok(signed) => {
                        let request = t::CertificateSignedRequest {
                            certificate_chain: signed
                                .pem_chain
                                .parse()
                                .map_err(|e| internal(station, A::NAME, e))?,
                            certificate_type: req.certificate_type,
                            custom_data: None,
                            $($signed_extra: req.$signed_value,)*
                        };
                        deliver::<t::action::CertificateSigned>(app.clone(), station.to_owned(), request);
                        t::SignCertificateResponse {
                            status: t::GenericStatusEnumType::Accepted,
                            status_info: None,
                            custom_data: None,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(station, "CSR refused: {e}");
                        t::SignCertificateResponse {
                            status: t::GenericStatusEnumType::Rejected,
                            status_info: status_info("InvalidCSR", &e.to_string()),
                            custom_data: None,
                        }
                    }
                })
            }

            /// Get15118EVCertificate: the provider's EXI answer.
            pub async fn get_15118_ev_certificate(
                app: &Arc<App>,
                station: &str,
                req: t::Get15118EVCertificateRequest,
            ) -> Result<t::Get15118EVCertificateResponse, CallError> {
                type A = t::action::Get15118EVCertificate;
                let p = pnc(app, station, A::NAME)?;
                let b64 = base64::engine::general_purpose::STANDARD;
                let answer = match b64.decode(req.exi_request.as_str().trim()) {
                    Ok(exi) => {
                        let request = EvCertificateRequest {
                            schema_version: req.iso15118schema_version.as_str().to_owned(),
                            action: match req.action {
                                t::CertificateActionEnumType::Update => CertificateAction::Update,
                                _ => CertificateAction::Install,
                            },
                            exi,
                        };
                        p.ev_certificate(&request).await.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(format!("exiRequest is not base64: {e}")),
                };
                // -20 (2.1's `remainingContracts`): one contract per car,
                // none left to fetch
                let iso20 = req.iso15118schema_version.as_str() == ISO20_SCHEMA;
                #[allow(unused_variables)] // 2.0.1 has no such field
                let remaining = (iso20 && answer.is_ok()).then_some(0);
                let (status, exi, info) = match answer {
                    Ok(exi) => (t::Iso15118EVCertificateStatusEnumType::Accepted, b64.encode(exi), None),
                    Err(e) => {
                        tracing::warn!(station, "no contract certificate: {e}");
                        (t::Iso15118EVCertificateStatusEnumType::Failed, String::new(), status_info("NoCertificate", &e))
                    }
                };
                Ok(t::Get15118EVCertificateResponse {
                    status,
                    status_info: info,
                    exi_response: exi.parse().map_err(|e| internal(station, A::NAME, e))?,
                    custom_data: None,
                    $($ev_extra: remaining,)*
                })
            }

            /// GetCertificateStatus: the OCSP answer.
            pub async fn get_certificate_status(
                app: &Arc<App>,
                station: &str,
                req: t::GetCertificateStatusRequest,
            ) -> Result<t::GetCertificateStatusResponse, CallError> {
                type A = t::action::GetCertificateStatus;
                let p = pnc(app, station, A::NAME)?;
                let d = &req.ocsp_request_data;
                let id = CertId::from_ocpp(
                    d.hash_algorithm.as_str(),
                    d.issuer_name_hash.as_str(),
                    d.issuer_key_hash.as_str(),
                    d.serial_number.as_str(),
                );
                let answer = match id {
                    Ok(id) => p.status(&id).await,
                    Err(e) => Err(e),
                };
                Ok(match answer {
                    Ok(a) => t::GetCertificateStatusResponse {
                        status: t::GetCertificateStatusEnumType::Accepted,
                        status_info: None,
                        ocsp_result: Some(
                            base64::engine::general_purpose::STANDARD
                                .encode(&a.response)
                                .parse()
                                .map_err(|e| internal(station, A::NAME, e))?,
                        ),
                        custom_data: None,
                    },
                    Err(e) => t::GetCertificateStatusResponse {
                        status: t::GetCertificateStatusEnumType::Failed,
                        status_info: status_info("OCSPFailed", &e.to_string()),
                        ocsp_result: None,
                        custom_data: None,
                    },
                })
            }
        }
    };
}
handlers_2x!(v201, [], []);
handlers_2x!(v21, [request_id: request_id], [remaining_contracts]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("éé", 3), "é");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn emaids_compare_without_dashes_and_case() {
        assert_eq!(emaid_key("de-8eo-c12345678-x"), "DE8EOC12345678X");
    }
}
