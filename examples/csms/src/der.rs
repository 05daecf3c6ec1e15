//! DER control (OCPP 2.1 block R) from the operator API.
//!
//! - `POST /api/stations/{id}/der-controls`: the body is a 2.1
//!   `SetDERControlRequest` (typed at the edge: a body that is not one is a
//!   400); it goes to the station as `SetDERControl`, and a control the
//!   station accepts is kept per station and control id (the controls it
//!   says it superseded are dropped). The station's answer is returned.
//! - `GET /api/stations/{id}/der-controls`: the controls kept, and the
//!   station's own reports of what it holds (`ReportDERControl`, kept as
//!   they arrive, newest first).
//! - `POST /api/stations/{id}/der-controls/report`: asks the station
//!   (`GetDERControl`, optionally of one type or id); its answer now, its
//!   `ReportDERControl` later (then in the GET).
//! - `DELETE /api/stations/{id}/der-controls/{control_id}`: `ClearDERControl`
//!   of that control; a control the station cleared (or does not know) is
//!   no longer kept.
//!
//! A station that is not connected with 2.1 gets none of them (409).
//! `NotifyDERAlarm` from stations raises a `der_alarm` alert until an
//! alarm says it ended (`ocpp.rs`).
//!
//! **The site's policy** ([`DerPolicy`]): the controls every 2.1 station of
//! the site (or those it names) must hold, e.g. a volt-watt curve and a
//! `LimitMaxDischarge`. `PUT /api/der-policy` sets it (kept as the
//! `der_policy` setting) and installs it at once on the connected 2.1
//! stations it applies to; a 2.1 station whose boot is accepted gets it
//! after the boot's answer ([`station_booted`]); `GET /api/der-policy`
//! shows it with the result per station and control (migration 25,
//! `der_policy_results`: the station's status, or why the call failed);
//! `DELETE` drops it (the controls stay at the stations: clear them with
//! the per-station route). A control the station accepted is kept as one
//! set from the API. A station that did not accept every control (or did
//! not answer) has a `der_policy` alert naming them, cleared once a later
//! application succeeds. A station without a DER function answers
//! `NotSupported`: name the stations in the policy to leave it out.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::v21;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ApiResult};
use crate::App;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/api/der-policy",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route(
            "/api/stations/{id}/der-controls",
            get(list_controls).post(set_control),
        )
        .route("/api/stations/{id}/der-controls/report", post(get_controls))
        .route(
            "/api/stations/{id}/der-controls/{control_id}",
            delete(clear_control),
        )
}

/// A DER control as kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerControl {
    /// Its id.
    pub control_id: String,
    /// Its type (`LimitMaxDischarge`, `VoltVar`, ...).
    pub control_type: String,
    /// A default control (else scheduled).
    pub is_default: bool,
    /// The request as sent.
    pub request: v21::SetDERControlRequest,
    /// The station's answer.
    pub status: String,
    /// When it was set.
    pub updated_at: String,
}

/// That `id` is connected with 2.1: 404 when not connected, 409 with an
/// earlier version.
pub(crate) async fn connected_21(app: &App, id: &str) -> Result<(), ApiError> {
    match app.gateway.version(id).await {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} is not connected"),
        )),
        Some(ProtocolVersion::V16 | ProtocolVersion::V201) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "DER control is OCPP 2.1: this station is connected with an earlier version",
        )),
        Some(_) => Ok(()),
    }
}

/// Sends a control; keeps it when accepted.
async fn set_control(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let request: v21::SetDERControlRequest = evproto_ocpp_types::from_str(
        std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the body is not UTF-8"))?,
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("not a 2.1 SetDERControlRequest: {e}"),
        )
    })?;
    connected_21(&app, &id).await?;
    let answer = app
        .gateway
        .call::<v21::action::SetDERControl>(&id, request.clone())
        .await?;
    if answer.status == v21::DERControlStatusEnumType::Accepted {
        for gone in answer.superseded_ids.iter().flatten() {
            app.store.delete_der_control(&id, gone.as_str()).await?;
        }
        app.store
            .put_der_control(&id, &request, answer.status.as_str())
            .await?;
    }
    Ok(Json(answer).into_response())
}

/// What `GET /api/stations/{id}/der-controls` answers.
#[derive(Debug, Serialize)]
struct Controls {
    /// Kept, by id.
    controls: Vec<DerControl>,
    /// The station's reports (`ReportDERControl`), newest first.
    reports: Vec<serde_json::Value>,
}

async fn list_controls(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let controls = app.store.der_controls(&id).await?;
    let reports = app
        .store
        .station_reports(&id, Some(crate::ocpp::ReportKind::DerControl.as_str()), 100)
        .await?
        .into_iter()
        .map(|r| r.body)
        .collect();
    Ok(Json(Controls { controls, reports }).into_response())
}

/// The body of `POST /api/stations/{id}/der-controls/report`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    #[serde(default)]
    control_type: Option<v21::DERControlEnumType>,
    #[serde(default)]
    control_id: Option<String>,
    #[serde(default)]
    is_default: Option<bool>,
}

async fn get_controls(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: ReportBody = if bytes.is_empty() {
        ReportBody::default()
    } else {
        crate::api::body(&bytes)?
    };
    connected_21(&app, &id).await?;
    let request = v21::GetDERControlRequest {
        request_id: i32::try_from(chrono::Utc::now().timestamp() % 1_000_000_000).unwrap_or(1),
        is_default: b.is_default,
        control_type: b.control_type,
        control_id: b.control_id.map(|c| c.parse()).transpose().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "control_id: 1 to 36 characters")
        })?,
        custom_data: None,
    };
    let request_id = request.request_id;
    let answer = app
        .gateway
        .call::<v21::action::GetDERControl>(&id, request)
        .await?;
    Ok(Json(serde_json::json!({"request_id": request_id, "answer": answer})).into_response())
}

async fn clear_control(
    State(app): State<Arc<App>>,
    Path((id, control)): Path<(String, String)>,
) -> ApiResult {
    let Some(kept) = app
        .store
        .der_controls(&id)
        .await?
        .into_iter()
        .find(|c| c.control_id == control)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no DER control {control} kept for station {id}"),
        ));
    };
    connected_21(&app, &id).await?;
    let answer = app
        .gateway
        .call::<v21::action::ClearDERControl>(
            &id,
            v21::ClearDERControlRequest {
                is_default: kept.is_default,
                control_type: None,
                control_id: Some(kept.request.control_id.clone()),
                custom_data: None,
            },
        )
        .await?;
    if matches!(
        answer.status,
        v21::DERControlStatusEnumType::Accepted | v21::DERControlStatusEnumType::NotFound
    ) {
        app.store.delete_der_control(&id, &control).await?;
    }
    Ok(Json(answer).into_response())
}

// ---- the site's policy ----

/// The setting the policy is kept under.
const POLICY_KEY: &str = "der_policy";

/// Most controls a policy holds.
pub const MAX_POLICY_CONTROLS: usize = 20;

/// The site's DER policy: the controls to install on its 2.1 stations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerPolicy {
    /// The stations it applies to: identities, or prefixes ending in `*`
    /// (`SITE-A-*`); absent: every 2.1 station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stations: Option<Vec<String>>,
    /// The controls, 2.1 `SetDERControlRequest`s, sent in this order.
    pub controls: Vec<v21::SetDERControlRequest>,
}

impl DerPolicy {
    /// Whether it applies to `station`.
    pub fn applies_to(&self, station: &str) -> bool {
        self.stations.as_ref().is_none_or(|list| {
            list.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => station.starts_with(prefix),
                None => p == station,
            })
        })
    }

    /// Why it cannot be a policy: no controls or too many, two with one
    /// id, an empty station list or pattern.
    pub fn check(&self) -> Result<(), String> {
        if self.controls.is_empty() || self.controls.len() > MAX_POLICY_CONTROLS {
            return Err(format!("controls: 1 to {MAX_POLICY_CONTROLS}"));
        }
        let mut ids: Vec<&str> = self
            .controls
            .iter()
            .map(|c| c.control_id.as_str())
            .collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("controls: control id {} twice", w[0]));
        }
        match &self.stations {
            Some(list) if list.is_empty() || list.iter().any(|p| p.is_empty() || p == "*") => Err(
                "stations: identities or prefixes ending in * (leave it out for every station)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

/// The result of a policy's control at a station.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyResult {
    /// The station.
    pub station: String,
    /// The control's id.
    pub control_id: String,
    /// Its type.
    pub control_type: String,
    /// The station's answer (`Accepted`, `Rejected`, `NotSupported`, ...),
    /// or `Failed` when the call failed.
    pub status: String,
    /// Why it was not accepted: the station's reason code, or the call's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When.
    pub applied_at: String,
}

impl PolicyResult {
    fn accepted(&self) -> bool {
        self.status == v21::DERControlStatusEnumType::Accepted.as_str()
    }
}

/// The detail of a `der_policy` alert.
#[derive(Debug, Serialize)]
struct PolicyAlert<'a> {
    /// The controls the station did not accept.
    failed: Vec<&'a PolicyResult>,
}

/// The policy in force, if any.
///
/// # Errors
///
/// The store failed, or the stored policy is not readable.
pub async fn policy(app: &App) -> crate::store::Result<Option<DerPolicy>> {
    match app.store.setting(POLICY_KEY).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| crate::store::StoreError::Corrupt("der_policy")),
    }
}

/// Installs `policy` on `station` (connected with 2.1): each control in
/// turn, the accepted ones kept as the station's controls, the results
/// stored, a `der_policy` alert raised for what failed (cleared when all
/// succeeded).
///
/// # Errors
///
/// The store failed.
pub async fn apply(
    app: &App,
    station: &str,
    policy: &DerPolicy,
) -> crate::store::Result<Vec<PolicyResult>> {
    let mut results = Vec::with_capacity(policy.controls.len());
    for control in &policy.controls {
        let (status, error) = match app
            .gateway
            .call::<v21::action::SetDERControl>(station, control.clone())
            .await
        {
            Ok(answer) => {
                if answer.status == v21::DERControlStatusEnumType::Accepted {
                    for gone in answer.superseded_ids.iter().flatten() {
                        app.store.delete_der_control(station, gone.as_str()).await?;
                    }
                    app.store
                        .put_der_control(station, control, answer.status.as_str())
                        .await?;
                }
                let reason = answer
                    .status_info
                    .map(|i| i.reason_code.as_str().to_owned());
                (answer.status.as_str().to_owned(), reason)
            }
            Err(e) => ("Failed".to_owned(), Some(e.to_string())),
        };
        results.push(PolicyResult {
            station: station.to_owned(),
            control_id: control.control_id.as_str().to_owned(),
            control_type: control.control_type.as_str().to_owned(),
            status,
            error,
            applied_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
    }
    app.store.put_der_policy_results(station, &results).await?;
    let failed: Vec<&PolicyResult> = results.iter().filter(|r| !r.accepted()).collect();
    if failed.is_empty() {
        if app.store.clear_alerts(station, POLICY_KEY).await? > 0 {
            app.notify(crate::events::LiveEvent::AlertCleared {
                id: None,
                station: Some(station.to_owned()),
                kind: Some(POLICY_KEY.to_owned()),
            });
        }
    } else {
        let detail = serde_json::to_value(PolicyAlert { failed })
            .map_err(|_| crate::store::StoreError::Corrupt("der_policy"))?;
        if app
            .store
            .raise_alert(Some(station), POLICY_KEY, &detail)
            .await?
            .is_some()
        {
            app.notify(crate::events::LiveEvent::alert(
                station, POLICY_KEY, &detail,
            ));
        }
    }
    Ok(results)
}

/// [`apply`] in the background, logged.
fn apply_later(app: &Arc<App>, station: String, policy: DerPolicy) {
    let app = app.clone();
    tokio::spawn(async move {
        match apply(&app, &station, &policy).await {
            Ok(r) => {
                let accepted = r.iter().filter(|r| r.accepted()).count();
                tracing::info!(station, accepted, of = r.len(), "DER policy applied");
            }
            Err(e) => tracing::warn!(station, "DER policy not applied: {e}"),
        }
    });
}

/// After a 2.1 station's boot was accepted: the site's policy, if it
/// applies, in the background (the boot's answer goes first).
pub fn station_booted(app: &Arc<App>, station: &str) {
    let (app, station) = (app.clone(), station.to_owned());
    tokio::spawn(async move {
        match policy(&app).await {
            Ok(Some(p)) if p.applies_to(&station) => apply_later(&app, station, p),
            Ok(_) => {}
            Err(e) => tracing::warn!(station, "DER policy not read: {e}"),
        }
    });
}

/// What `GET /api/der-policy` answers.
#[derive(Debug, Serialize)]
struct PolicyView {
    /// The policy (`null`: none).
    policy: Option<DerPolicy>,
    /// The latest result per station and control.
    results: Vec<PolicyResult>,
}

async fn get_policy(State(app): State<Arc<App>>) -> ApiResult {
    let policy = policy(&app).await?;
    let results = app.store.der_policy_results().await?;
    Ok(Json(PolicyView { policy, results }).into_response())
}

/// What `PUT /api/der-policy` answers.
#[derive(Debug, Serialize)]
struct PolicySet {
    /// The policy now in force.
    policy: DerPolicy,
    /// The connected 2.1 stations it is being installed on.
    applying_to: Vec<String>,
}

async fn put_policy(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let policy: DerPolicy = crate::api::body(&bytes)?;
    policy
        .check()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let text = serde_json::to_string(&policy)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    app.store.put_setting(POLICY_KEY, &text).await?;
    let mut applying_to = Vec::new();
    for station in app.gateway.connected().await {
        if policy.applies_to(&station)
            && app.gateway.version(&station).await == Some(ProtocolVersion::V21)
        {
            applying_to.push(station.clone());
            apply_later(&app, station, policy.clone());
        }
    }
    applying_to.sort();
    Ok(Json(PolicySet {
        policy,
        applying_to,
    })
    .into_response())
}

async fn delete_policy(State(app): State<Arc<App>>) -> ApiResult {
    if !app.store.delete_setting(POLICY_KEY).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no DER policy is set"));
    }
    app.store.delete_der_policy_results().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(stations: Option<Vec<&str>>, ids: &[&str]) -> DerPolicy {
        let controls = ids
            .iter()
            .map(|id| {
                evproto_ocpp_types::from_str(&format!(
                    r#"{{"isDefault": true, "controlId": "{id}", "controlType": "LimitMaxDischarge",
                        "limitMaxDischarge": {{"priority": 1, "pctMaxDischargePower": 50}}}}"#
                ))
                .unwrap()
            })
            .collect();
        DerPolicy {
            stations: stations.map(|l| l.into_iter().map(str::to_owned).collect()),
            controls,
        }
    }

    #[test]
    fn a_policy_applies_to_the_stations_it_names() {
        let all = policy(None, &["a"]);
        assert!(all.applies_to("ANY"));
        let some = policy(Some(vec!["SITE-A-*", "CS9"]), &["a"]);
        assert!(some.applies_to("SITE-A-01"));
        assert!(some.applies_to("CS9"));
        assert!(!some.applies_to("CS90"));
        assert!(!some.applies_to("SITE-B-01"));
    }

    #[test]
    fn a_policy_is_checked() {
        assert!(policy(None, &["a", "b"]).check().is_ok());
        assert!(policy(None, &[]).check().is_err());
        assert!(policy(None, &["a", "a"])
            .check()
            .unwrap_err()
            .contains("twice"));
        assert!(policy(Some(vec![]), &["a"]).check().is_err());
        assert!(policy(Some(vec!["*"]), &["a"]).check().is_err());
        let many: Vec<String> = (0..=MAX_POLICY_CONTROLS).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(policy(None, &many).check().is_err());
        // it round-trips as kept
        let p = policy(Some(vec!["CS*"]), &["a"]);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<DerPolicy>(&text).unwrap(), p);
    }
}
