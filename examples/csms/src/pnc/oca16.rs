//! Plug & Charge for OCPP 1.6 stations, as the OCA application note
//! "Using ISO 15118 Plug & Charge with OCPP 1.6" carries it: the 2.0.1
//! messages inside `DataTransfer` (vendorId
//! `org.openchargealliance.iso15118pnc`, messageId the 2.0.1 action, data
//! its JSON payload), answered `Accepted` with the 2.0.1 response as data.
//! The station sends `Authorize`, `Get15118EVCertificate`,
//! `GetCertificateStatus` and `SignCertificate` (its V2G certificate,
//! whose chain goes back as a `DataTransfer` `CertificateSigned`); each is
//! parsed as its typed 2.0.1 request and answered by the 2.0.1 handlers.

use std::sync::Arc;

use evproto_csms_core::authorization::{Decision, Status};
use evproto_ocpp_proto::CallError;
use evproto_ocpp_types::{v16, v201, Action, BoundedString};

use super::ocpp::authorize_contract;
use crate::App;

/// The application note's vendorId.
pub const VENDOR_ID: &str = "org.openchargealliance.iso15118pnc";

fn reply(status: v16::DataTransferStatus, data: Option<String>) -> v16::DataTransferResponse {
    v16::DataTransferResponse { status, data }
}

/// The answer to a 1.6 `DataTransfer` of the note, `None` when it is not
/// one (another vendor) or Plug & Charge is off.
pub async fn data_transfer(
    app: &Arc<App>,
    station: &str,
    req: &v16::DataTransferRequest,
) -> Option<Result<v16::DataTransferResponse, CallError>> {
    if req.vendor_id.as_str() != VENDOR_ID || app.pnc.is_none() {
        return None;
    }
    let message = req.message_id.as_ref().map_or("", |m| m.as_str());
    let data = req.data.as_deref().unwrap_or_default();
    Some(answer(app, station, message, data).await)
}

/// The 2.0.1 request `data` of `A`, or the `Rejected` it gets.
fn parse<A: Action>(data: &str) -> Result<A::Request, v16::DataTransferResponse> {
    evproto_ocpp_types::from_str::<A::Request>(data).map_err(|e| {
        tracing::warn!("{} in a DataTransfer: {e}", A::NAME);
        reply(v16::DataTransferStatus::Rejected, None)
    })
}

fn accepted(v: &impl serde::Serialize) -> v16::DataTransferResponse {
    reply(
        v16::DataTransferStatus::Accepted,
        Some(evproto_ocpp_types::to_json(v)),
    )
}

async fn answer(
    app: &Arc<App>,
    station: &str,
    message: &str,
    data: &str,
) -> Result<v16::DataTransferResponse, CallError> {
    use v201::action as a;
    macro_rules! parsed {
        ($a:ty) => {
            match parse::<$a>(data) {
                Ok(r) => r,
                Err(refused) => return Ok(refused),
            }
        };
    }
    if message == a::Authorize::NAME {
        let r = parsed!(a::Authorize);
        let decision = registered(app, r.id_token.id_token.as_str()).await;
        let (decision, verdict) = authorize_contract(app, &r, decision).await;
        return Ok(accepted(&v201::AuthorizeResponse {
            id_token_info: decision.to_v201(),
            certificate_status: verdict.and_then(|v| v.as_str().parse().ok()),
            custom_data: None,
        }));
    }
    if message == a::Get15118EVCertificate::NAME {
        let r = parsed!(a::Get15118EVCertificate);
        return Ok(accepted(
            &super::ocpp::v201::get_15118_ev_certificate(app, station, r).await?,
        ));
    }
    if message == a::GetCertificateStatus::NAME {
        let r = parsed!(a::GetCertificateStatus);
        return Ok(accepted(
            &super::ocpp::v201::get_certificate_status(app, station, r).await?,
        ));
    }
    if message == a::SignCertificate::NAME {
        let r = parsed!(a::SignCertificate);
        return Ok(accepted(&sign(app, station, r).await?));
    }
    Ok(reply(v16::DataTransferStatus::UnknownMessageId, None))
}

/// The registry's word on a token (1.6: no group or master pass here):
/// `Unknown` when it has none.
async fn registered(app: &App, token: &str) -> Decision {
    let status = match app.store.token_record(token).await {
        Ok(Some(t)) => match t.status.as_str() {
            "Accepted" => Status::Accepted,
            "Blocked" => Status::Blocked,
            "Expired" => Status::Expired,
            _ => Status::Invalid,
        },
        Ok(None) => Status::Unknown,
        Err(e) => {
            tracing::warn!("token registry: {e}");
            Status::Invalid
        }
    };
    Decision {
        status,
        group: None,
        expires_at: None,
    }
}

/// A bounded OCPP string of `s` (too long: an internal error).
fn bounded<const N: usize>(s: &str) -> Result<BoundedString<N>, CallError> {
    s.parse::<BoundedString<N>>()
        .map_err(|e| CallError::new("InternalError", e.to_string()))
}

/// SignCertificate (the V2G certificate): signed, the chain sent back as a
/// `DataTransfer` `CertificateSigned` once answered.
async fn sign(
    app: &Arc<App>,
    station: &str,
    r: v201::SignCertificateRequest,
) -> Result<v201::SignCertificateResponse, CallError> {
    let Some(p) = app.pnc.as_deref() else {
        return Err(CallError::new("InternalError", "Plug & Charge is off"));
    };
    let usage = match r.certificate_type {
        Some(v201::CertificateSigningUseEnumType::ChargingStationCertificate) => {
            super::ca::CertificateUse::ChargingStation
        }
        _ => super::ca::CertificateUse::V2g,
    };
    match p.sign(station, r.csr.as_str(), usage).await {
        Ok(signed) => {
            let inner = v201::CertificateSignedRequest {
                certificate_chain: bounded(&signed.pem_chain)?,
                certificate_type: r.certificate_type,
                custom_data: None,
            };
            let request = v16::DataTransferRequest {
                vendor_id: bounded(VENDOR_ID)?,
                message_id: v201::action::CertificateSigned::NAME.parse().ok(),
                data: Some(evproto_ocpp_types::to_json(&inner)),
            };
            let (app, station) = (app.clone(), station.to_owned());
            tokio::spawn(async move {
                if let Err(e) = app
                    .gateway
                    .call::<v16::action::DataTransfer>(&station, request)
                    .await
                {
                    tracing::warn!(station, "certificate not delivered: {e}");
                }
            });
            Ok(v201::SignCertificateResponse {
                status: v201::GenericStatusEnumType::Accepted,
                status_info: None,
                custom_data: None,
            })
        }
        Err(e) => {
            tracing::warn!(station, "CSR refused: {e}");
            Ok(v201::SignCertificateResponse {
                status: v201::GenericStatusEnumType::Rejected,
                status_info: Some(v201::StatusInfoType {
                    reason_code: bounded("InvalidCSR")?,
                    additional_info: None,
                    custom_data: None,
                }),
                custom_data: None,
            })
        }
    }
}
