//! Upgrading a station's security profile from the operator API (OCPP
//! 2.0.1 A05, the task's A19-A21; 1.6 security whitepaper "Upgrading the
//! security profile"): `POST /api/stations/{id}/security-profile`.
//!
//! - 2.x: `SetNetworkProfile` (the new connection data in a configuration
//!   slot: the CSMS's URL for the new profile, the profile), `SetVariables`
//!   `OCPPCommCtrlr.NetworkConfigurationPriority` (that slot first), then
//!   `Reset` `OnIdle`.
//! - 1.6: `ChangeConfiguration` `SecurityProfile` (the station reconnects
//!   with it by itself).
//!
//! Once every step is accepted the station's registered profile is the new
//! one: its connection under the old profile is closed and the old profile
//! is refused from then on (the handshake checks the registered profile).
//! A refusal at any step leaves the registered profile as it was (502); a
//! downgrade or the same profile is refused (409).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::v16;
use serde::{Deserialize, Serialize};

use crate::api::{body, ApiError, ApiResult};
use crate::gateway::{StationCallError, StationGateway};
use crate::provisioning::{accepted, change_network, NetworkChange, Step};
use crate::App;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/stations/{id}/security-profile", post(upgrade))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpgradeBody {
    /// The new profile (above the station's).
    profile: u8,
    /// The CSMS's URL under the new profile (2.x `ocppCsmsUrl`, e.g.
    /// `wss://csms.example:9443/ocpp/`); required for 2.x stations.
    #[serde(default)]
    url: Option<String>,
    /// The configuration slot for it (2.x; default 1).
    #[serde(default)]
    slot: Option<i32>,
}

#[derive(Debug, Serialize)]
struct Upgraded {
    station: String,
    from: u8,
    profile: u8,
    steps: Vec<Step>,
}

fn refused(status: StatusCode, why: impl Into<String>) -> ApiError {
    ApiError::new(status, why)
}

/// `POST /api/stations/{id}/security-profile`.
async fn upgrade(State(app): State<Arc<App>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let b: UpgradeBody = body(&bytes)?;
    app.config
        .serves_profile(b.profile)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, e))?;
    let Some(station) = app.store.station(&id).await? else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            format!("unknown station {id}"),
        ));
    };
    let from = station
        .security_profile
        .unwrap_or(app.config.security_profile);
    if b.profile <= from {
        return Err(refused(
            StatusCode::CONFLICT,
            format!("{id} is under profile {from}: an upgrade goes to a higher one"),
        ));
    }
    if b.profile == 2 && !station.has_password {
        return Err(refused(
            StatusCode::CONFLICT,
            format!("{id} has no password: profile 2 authenticates by one (set it first)"),
        ));
    }
    let version = app.gateway.connection(&id).await?;
    if let Err(why) = crate::ocpp::may_send(&app, &id, "SetNetworkProfile").await? {
        return Err(refused(StatusCode::CONFLICT, why));
    }
    let slot = b.slot.unwrap_or(1);
    let steps = match version {
        ProtocolVersion::V16 => vec![change_configuration(&app.gateway, &id, b.profile).await?],
        _ => {
            let url = b.url.as_deref().ok_or_else(|| {
                refused(
                    StatusCode::BAD_REQUEST,
                    "url: the CSMS's URL under the new profile (2.x ocppCsmsUrl)",
                )
            })?;
            if b.profile >= 2 && !url.starts_with("wss://") {
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    "url: a wss:// URL for profiles 2 and 3",
                ));
            }
            let change = NetworkChange {
                slot,
                url,
                security_profile: i32::from(b.profile),
                first: true,
                reset: true,
            };
            // the reboot that follows is a requested one (predictive maintenance)
            app.maintenance.reset_requested(&id, chrono::Utc::now());
            change_network(&app.gateway, &id, version, &change)
                .await?
                .unwrap_or_default()
        }
    };
    if let Some(s) = steps.iter().find(|s| !accepted(&s.status)) {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({"error": format!("{id} answered {} to {}: the profile stays {from}", s.status, s.action),
                "steps": steps}),
        ));
    }
    app.store
        .set_station_policy(&id, None, Some(b.profile))
        .await?;
    // the connection under the old profile is closed; the old one is refused from now on
    app.station_credentials_changed(&id).await?;
    tracing::info!(station = %id, from, to = b.profile, "security profile upgraded");
    Ok(Json(Upgraded {
        station: id,
        from,
        profile: b.profile,
        steps,
    })
    .into_response())
}

async fn change_configuration(
    gateway: &StationGateway,
    station: &str,
    profile: u8,
) -> Result<Step, StationCallError> {
    let bad = |e| StationCallError::rejected(station, e);
    let request = v16::ChangeConfigurationRequest {
        key: "SecurityProfile".parse().map_err(bad)?,
        value: profile.to_string().parse().map_err(bad)?,
    };
    type A = v16::action::ChangeConfiguration;
    let r = gateway.call::<A>(station, request).await?;
    Ok(Step {
        action: "ChangeConfiguration",
        status: r.status.as_str().to_owned(),
    })
}
