//! The operator API of Plug & Charge: the CSMS's roots, revocations in the
//! lab's OCSP responder, and a station's certificates (OCPP 2.0.1 M03
//! GetInstalledCertificateIds, M04 DeleteCertificate, M05
//! InstallCertificate, A02/A03 renewal by TriggerMessage), each a typed
//! call to the station in its version: 2.0.1 or 2.1, and for a 1.6 station
//! the 2.0.1 message inside the OCA application note's `DataTransfer`
//! (`Oca`; its CSMS and manufacturer roots by the security extensions'
//! own InstallCertificate).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21};
use serde::{Deserialize, Serialize};

use super::ca::{pem, CertificateUse};
use super::ocsp::CertId;
use super::Pnc;
use crate::api::{ApiError, ApiResult};
use crate::gateway::{StationCallError, StationGateway};
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/pnc", get(overview))
        .route("/api/pnc/revocations", post(revoke))
        .route(
            "/api/stations/{id}/certificates",
            get(installed).post(install),
        )
        .route("/api/stations/{id}/certificates/delete", post(delete))
        .route("/api/stations/{id}/certificates/renew", post(renew))
        .route("/api/stations/{id}/certificates/signed", get(signed))
}

fn pnc(app: &App) -> Result<&Pnc, ApiError> {
    app.pnc.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "Plug & Charge is off (start the CSMS with --pnc)",
        )
    })
}

fn bad(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("{what}: {e}"))
}

/// The built-in PKI's roots (PEM), for stations, cars and partners.
#[derive(Debug, Serialize)]
struct Overview {
    v2g_root: String,
    mo_root: String,
    oem_root: String,
    station_ca: String,
    /// ISO 15118-20's V2G root (secp521r1): -20 cars trust it to check the
    /// contract installations the CSMS makes.
    iso20_v2g_root: String,
    /// ISO 15118-20's MO root, above the -20 contracts the CSMS issues.
    iso20_mo_root: String,
    /// ISO 15118-20's OEM root (a lab's cars' provisioning certificates).
    iso20_oem_root: String,
    /// The MO roots contracts are checked against (the built-in -2 and -20
    /// ones first).
    trusted_mo_roots: Vec<String>,
    organisation: String,
}

/// `GET /api/pnc`.
async fn overview(State(app): State<Arc<App>>) -> ApiResult {
    let p = pnc(&app)?;
    let v2g = &p.pki.v2g;
    Ok(Json(Overview {
        v2g_root: pem(v2g.v2g_root.cert.der()),
        mo_root: pem(v2g.mo_root.cert.der()),
        oem_root: pem(v2g.oem_root.cert.der()),
        station_ca: pem(p.pki.station_issuer().cert.der()),
        iso20_v2g_root: pem(p.pki.iso20.v2g_root.cert.der()),
        iso20_mo_root: pem(p.pki.iso20_mo.mo_root.cert.der()),
        iso20_oem_root: pem(p.pki.iso20.oem_root.cert.der()),
        trusted_mo_roots: p.mo_roots().roots().iter().map(|c| pem(c.der())).collect(),
        organisation: p.config.organisation.clone(),
    })
    .into_response())
}

/// A certificate named as OCSP and OCPP name it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HashData {
    /// `SHA256` (the only one served).
    hash_algorithm: String,
    issuer_name_hash: String,
    issuer_key_hash: String,
    serial_number: String,
}

/// `POST /api/pnc/revocations`: the lab's responder says revoked from now on.
async fn revoke(State(app): State<Arc<App>>, h_bytes: axum::body::Bytes) -> ApiResult {
    let h: HashData = crate::api::body(&h_bytes)?;
    let p = pnc(&app)?;
    let id = CertId::from_ocpp(
        &h.hash_algorithm,
        &h.issuer_name_hash,
        &h.issuer_key_hash,
        &h.serial_number,
    )
    .map_err(|e| bad("hash_algorithm", e))?;
    p.revoke(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A station's version, or why the call is not made.
async fn version_of(gateway: &StationGateway, station: &str) -> Result<ProtocolVersion, ApiError> {
    gateway.version(station).await.ok_or_else(|| {
        StationCallError::NotConnected {
            station: station.to_owned(),
        }
        .into()
    })
}

/// A 1.6 station's Plug & Charge calls: the 2.0.1 request inside a
/// `DataTransfer` (vendorId `org.openchargealliance.iso15118pnc`,
/// messageId the 2.0.1 action), the 2.0.1 answer in the answer's `data`
/// (OCA, "Using ISO 15118 Plug & Charge with OCPP 1.6").
pub(crate) struct Oca<'a>(pub(crate) &'a StationGateway);

impl Oca<'_> {
    /// Sends `request` (a 2.0.1 action's) to 1.6 `station`: the 2.0.1
    /// answer. A `DataTransfer` not `Accepted`, or an answer that is not
    /// the action's, is a [`StationCallError::BadAnswer`].
    pub(crate) async fn call<A: evproto_ocpp_types::Action>(
        &self,
        station: &str,
        request: A::Request,
    ) -> Result<A::Response, StationCallError> {
        let bad = |reason: String| StationCallError::BadAnswer {
            station: station.to_owned(),
            reason,
        };
        let wrapped = v16::DataTransferRequest {
            vendor_id: super::oca16::VENDOR_ID
                .parse()
                .map_err(|e| StationCallError::rejected(station, e))?,
            message_id: Some(
                A::NAME
                    .parse()
                    .map_err(|e| StationCallError::rejected(station, e))?,
            ),
            data: Some(evproto_ocpp_types::to_json(&request)),
        };
        let r = self
            .0
            .call::<v16::action::DataTransfer>(station, wrapped)
            .await?;
        if r.status != v16::DataTransferStatus::Accepted {
            return Err(bad(format!(
                "the DataTransfer of {} was answered {}",
                A::NAME,
                r.status.as_str()
            )));
        }
        let data = r
            .data
            .ok_or_else(|| bad(format!("the DataTransfer of {} carried no answer", A::NAME)))?;
        evproto_ocpp_types::from_str::<A::Response>(&data).map_err(|e| {
            bad(format!(
                "the answer to {} inside the DataTransfer: {e}",
                A::NAME
            ))
        })
    }
}

/// The station's answer as the API returns it.
fn answer(v: impl Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

/// `$call` for the station's version, the version's types as `$t` and
/// what carries the call as `$gw`: 2.0.1 and 2.1 directly, 1.6 the 2.0.1
/// message through [`Oca`]; the station's answer.
macro_rules! on_version {
    ($app:expr, $id:expr, |$t:ident, $gw:ident| $call:expr) => {
        match version_of(&$app.gateway, &$id).await? {
            ProtocolVersion::V16 => {
                use evproto_ocpp_types::v201 as $t;
                let $gw = Oca(&$app.gateway);
                answer($call)
            }
            ProtocolVersion::V201 => {
                use evproto_ocpp_types::v201 as $t;
                let $gw = &$app.gateway;
                answer($call)
            }
            _ => {
                use evproto_ocpp_types::v21 as $t;
                let $gw = &$app.gateway;
                answer($call)
            }
        }
    };
}

/// `GET /api/stations/{id}/certificates`: GetInstalledCertificateIds (all types).
async fn installed(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    on_version!(app, id, |t, gw| gw
        .call::<t::action::GetInstalledCertificateIds>(
            &id,
            t::GetInstalledCertificateIdsRequest {
                certificate_type: None,
                custom_data: None,
            },
        )
        .await?)
}

/// What to install: a root of a type, PEM (for V2G and MO roots it may be
/// left out: the built-in PKI's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    /// `V2GRootCertificate`, `MORootCertificate`, `CSMSRootCertificate`
    /// or `ManufacturerRootCertificate`.
    certificate_type: String,
    certificate: Option<String>,
}

/// `POST /api/stations/{id}/certificates`: InstallCertificate.
async fn install(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body_bytes: axum::body::Bytes,
) -> ApiResult {
    let body: InstallBody = crate::api::body(&body_bytes)?;
    let certificate = match (&body.certificate, body.certificate_type.as_str()) {
        (Some(c), _) => c.clone(),
        (None, "V2GRootCertificate") => pem(pnc(&app)?.pki.v2g.v2g_root.cert.der()),
        (None, "MORootCertificate") => pem(pnc(&app)?.pki.v2g.mo_root.cert.der()),
        (None, other) => {
            return Err(bad(
                "certificate",
                format!(
                    "required for {other} (only the ISO 15118-2 V2G and MO roots are built in; \
                     the -20 ones are at GET /api/pnc)"
                ),
            ))
        }
    };
    if let Some(answer) = install_16_root(&app, &id, &body.certificate_type, &certificate).await? {
        return Ok(answer);
    }
    on_version!(app, id, |t, gw| gw
        .call::<t::action::InstallCertificate>(
            &id,
            t::InstallCertificateRequest {
                certificate_type: body
                    .certificate_type
                    .parse()
                    .map_err(|e| bad("certificate_type", e))?,
                certificate: certificate.parse().map_err(|e| bad("certificate", e))?,
                custom_data: None,
            },
        )
        .await?)
}

/// A 1.6 station's CSMS or manufacturer root: the security extensions' own
/// InstallCertificate (`CentralSystemRootCertificate`,
/// `ManufacturerRootCertificate`); `None` for anything else.
async fn install_16_root(
    app: &App,
    id: &str,
    certificate_type: &str,
    certificate: &str,
) -> Result<Option<axum::response::Response>, ApiError> {
    let kind = match certificate_type {
        "CSMSRootCertificate" => v16::CertificateUseEnumType::CentralSystemRootCertificate,
        "ManufacturerRootCertificate" => v16::CertificateUseEnumType::ManufacturerRootCertificate,
        _ => return Ok(None),
    };
    if version_of(&app.gateway, id).await? != ProtocolVersion::V16 {
        return Ok(None);
    }
    let r = app
        .gateway
        .call::<v16::action::InstallCertificate>(
            id,
            v16::InstallCertificateRequest {
                certificate_type: kind,
                certificate: certificate.parse().map_err(|e| bad("certificate", e))?,
            },
        )
        .await?;
    Ok(Some(answer(r)?))
}

/// `POST /api/stations/{id}/certificates/delete`: DeleteCertificate.
async fn delete(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    h_bytes: axum::body::Bytes,
) -> ApiResult {
    let h: HashData = crate::api::body(&h_bytes)?;
    on_version!(app, id, |t, gw| gw
        .call::<t::action::DeleteCertificate>(
            &id,
            t::DeleteCertificateRequest {
                certificate_hash_data: t::CertificateHashDataType {
                    hash_algorithm: h
                        .hash_algorithm
                        .parse()
                        .map_err(|e| bad("hash_algorithm", e))?,
                    issuer_name_hash: h
                        .issuer_name_hash
                        .parse()
                        .map_err(|e| bad("issuer_name_hash", e))?,
                    issuer_key_hash: h
                        .issuer_key_hash
                        .parse()
                        .map_err(|e| bad("issuer_key_hash", e))?,
                    serial_number: h
                        .serial_number
                        .parse()
                        .map_err(|e| bad("serial_number", e))?,
                    custom_data: None,
                },
                custom_data: None,
            },
        )
        .await?)
}

/// Which certificate to renew.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    /// `ChargingStationCertificate` or `V2GCertificate`.
    certificate_type: String,
}

/// Whether the renewal trigger was accepted.
#[derive(Debug, Serialize)]
struct Renewal {
    accepted: bool,
}

/// `POST /api/stations/{id}/certificates/renew`: the station is asked to
/// send a new CSR now.
async fn renew(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body_bytes: axum::body::Bytes,
) -> ApiResult {
    let body: RenewBody = crate::api::body(&body_bytes)?;
    let usage = CertificateUse::parse(&body.certificate_type).ok_or_else(|| {
        bad(
            "certificate_type",
            "ChargingStationCertificate or V2GCertificate",
        )
    })?;
    let accepted = trigger_renewal(&app.gateway, &id, usage).await?;
    if accepted {
        app.store
            .certificate_renewal_requested(&id, usage.as_str())
            .await?;
    }
    answer(Renewal { accepted })
}

/// `GET /api/stations/{id}/certificates/signed`: what the CA signed for it.
async fn signed(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    pnc(&app)?;
    answer(app.store.station_certificates(&id).await?)
}

/// Asks `station` to sign a new certificate of `usage` (2.x
/// TriggerMessage, 1.6 ExtendedTriggerMessage for its one certificate):
/// whether it accepted.
///
/// # Errors
///
/// The station could not be called, or is 1.6 and `usage` is V2G.
pub(crate) async fn trigger_renewal(
    gateway: &StationGateway,
    station: &str,
    usage: CertificateUse,
) -> Result<bool, StationCallError> {
    macro_rules! trigger {
        ($ver:ident, $($extra:ident),*) => {{
            let requested_message = match usage {
                CertificateUse::ChargingStation => {
                    $ver::MessageTriggerEnumType::SignChargingStationCertificate
                }
                CertificateUse::V2g => $ver::MessageTriggerEnumType::SignV2GCertificate,
            };
            let r = gateway
                .call::<$ver::action::TriggerMessage>(
                    station,
                    $ver::TriggerMessageRequest {
                        requested_message,
                        evse: None,
                        custom_data: None,
                        $($extra: None,)*
                    },
                )
                .await?;
            Ok(r.status == $ver::TriggerMessageStatusEnumType::Accepted)
        }};
    }
    match gateway.version(station).await {
        Some(ProtocolVersion::V201) => trigger!(v201,),
        Some(ProtocolVersion::V21) => trigger!(v21, custom_trigger),
        Some(_) if usage == CertificateUse::ChargingStation => {
            let r = gateway
                .call::<v16::action::ExtendedTriggerMessage>(
                    station,
                    v16::ExtendedTriggerMessageRequest {
                        requested_message: v16::MessageTriggerEnumType::SignChargePointCertificate,
                        connector_id: None,
                    },
                )
                .await?;
            Ok(r.status == v16::TriggerMessageStatusEnumType::Accepted)
        }
        Some(_) => {
            // the V2G certificate of a 1.6 station: TriggerMessage inside the OCA DataTransfer
            let r = Oca(gateway)
                .call::<v201::action::TriggerMessage>(
                    station,
                    v201::TriggerMessageRequest {
                        requested_message: v201::MessageTriggerEnumType::SignV2GCertificate,
                        evse: None,
                        custom_data: None,
                    },
                )
                .await?;
            Ok(r.status == v201::TriggerMessageStatusEnumType::Accepted)
        }
        None => Err(StationCallError::NotConnected {
            station: station.to_owned(),
        }),
    }
}
