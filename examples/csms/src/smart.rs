//! Smart charging: a site power limit shared by the active sessions.
//!
//! With `site_limit_w` set, every session start and end recomputes the
//! share (the limit divided evenly over the active sessions) and sends each
//! session's station a `TxDefaultProfile` for its EVSE/connector with
//! `SetChargingProfile`, in the station's OCPP version. Stations that refuse
//! or do not answer are reported as events; the next recomputation tries
//! again.

use std::sync::Arc;

use evproto_ocpp_proto::ProtocolVersion;
use serde_json::{json, Value};

use crate::App;

/// The charging profile id the CSMS uses for the site share.
pub const PROFILE_ID: i64 = 900;

/// A `SetChargingProfile` payload limiting `evse` to `limit_w`.
pub fn profile(version: ProtocolVersion, evse: i64, limit_w: u32) -> Value {
    let schedule = json!({"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_w}]});
    if version == ProtocolVersion::V16 {
        json!({"connectorId": evse, "csChargingProfiles": {"chargingProfileId": PROFILE_ID, "stackLevel": 1,
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": schedule}})
    } else {
        let mut s = schedule;
        s["id"] = json!(PROFILE_ID);
        json!({"evseId": evse, "chargingProfile": {"id": PROFILE_ID, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": [s]}})
    }
}

/// Recomputes the shares and sends them, in the background.
pub fn rebalance(app: &Arc<App>) {
    let Some(limit) = app.config.site_limit_w else {
        return;
    };
    let app = app.clone();
    tokio::spawn(async move {
        let sessions = match app.store.sessions(None, 10_000).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("smart charging: {e}");
                return;
            }
        };
        let active: Vec<_> = sessions
            .into_iter()
            .filter(|s| s.status == "Active")
            .collect();
        if active.is_empty() {
            return;
        }
        let share = limit / u32::try_from(active.len()).unwrap_or(u32::MAX).max(1);
        let mut sent = Vec::new();
        for s in &active {
            let Some(version) = app.station_version(&s.station_id) else {
                continue;
            };
            let evse = s.evse_id.or(s.connector_id).unwrap_or(1).max(1);
            let answer = app
                .call_station(
                    &s.station_id,
                    "SetChargingProfile",
                    profile(version, evse, share),
                )
                .await;
            sent.push(crate::events::SentProfile {
                station: s.station_id.clone(),
                session: s.id.clone(),
                limit_w: share,
                status: match &answer {
                    Ok(a) => a["status"].as_str().unwrap_or("?").to_owned(),
                    Err(e) => e.to_string(),
                },
            });
        }
        app.notify(crate::events::LiveEvent::SmartCharging {
            site_limit_w: limit,
            active_sessions: active.len(),
            share_w: share,
            sent,
        });
    });
}
