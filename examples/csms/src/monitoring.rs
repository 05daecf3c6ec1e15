//! The operator's views of what a station reported after the operator's
//! monitoring, customer-information and firmware-publishing requests
//! (2.0.1 N02, N09/N10, L05): read from the station's kept reports
//! (`station_reports`, one row per message part), each parsed as the typed
//! request of the version that sent it and assembled:
//!
//! - `GET /api/stations/{id}/monitors`: the monitors of the newest
//!   NotifyMonitoringReport, its parts in order (`complete` once the last
//!   part, `tbc` false, arrived), each with the value it last reported in a
//!   NotifyEvent (`last_event`: alerting, delta and periodic events, N07,
//!   N08);
//! - `GET /api/stations/{id}/customer-information`: per request, newest
//!   first, the NotifyCustomerInformation parts' data joined in order;
//! - `GET /api/stations/{id}/published-firmware`: per PublishFirmware
//!   request, newest first, its latest status and the local controller's
//!   locations.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use evproto_ocpp_types::{v201, v21};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::api::ApiResult;
use crate::App;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/stations/{id}/monitors", get(monitors))
        .route(
            "/api/stations/{id}/customer-information",
            get(customer_information),
        )
        .route(
            "/api/stations/{id}/published-firmware",
            get(published_firmware),
        )
}

/// How many parts of one kind a view reads at most.
const MAX_PARTS: i64 = 1_000;

/// A kept message parsed as the 2.0.1 request, else as the 2.1 one (the
/// fields read here are the same in both), `$r` then mapped by `$view`.
macro_rules! parsed {
    ($body:expr, $ty:ident, |$r:ident| $view:expr) => {
        match serde_json::from_value::<v201::$ty>($body.clone()) {
            Ok($r) => Some($view),
            Err(_) => serde_json::from_value::<v21::$ty>($body.clone())
                .ok()
                .map(|$r| $view),
        }
    };
}

/// One variable monitor as the station reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct MonitorView {
    /// The monitor's id on the station.
    id: i32,
    /// The component (`name`, `name[instance]`).
    component: String,
    /// The component's EVSE, when it has one.
    evse: Option<i32>,
    /// The variable (`name`, `name[instance]`).
    variable: String,
    /// `UpperThreshold`, `LowerThreshold`, `Delta`, `Periodic`, `PeriodicClockAligned`.
    #[serde(rename = "type")]
    kind: String,
    /// The threshold, delta or interval.
    value: Decimal,
    /// 0 (danger) to 9 (debug).
    severity: i32,
    /// Active only during a transaction.
    transaction: bool,
    /// The value it last reported (NotifyEvent), when it did.
    last_event: Option<LastEvent>,
}

/// A monitor's latest reported value.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct LastEvent {
    value: String,
    /// `Alerting`, `Delta` or `Periodic`.
    trigger: String,
    at: chrono::DateTime<chrono::Utc>,
}

/// One part of a monitoring report: (request id, seqNo, last part, monitors).
type MonitorPart = (i32, i32, bool, Vec<MonitorView>);

fn named(name: &str, instance: Option<&str>) -> String {
    match instance {
        Some(i) => format!("{name}[{i}]"),
        None => name.to_owned(),
    }
}

macro_rules! monitor_part {
    ($r:ident) => {{
        let r = $r;
        let monitors = r
            .monitor
            .into_iter()
            .flatten()
            .flat_map(|m| {
                let component = named(
                    m.component.name.as_str(),
                    m.component.instance.as_ref().map(|i| i.as_str()),
                );
                let evse = m.component.evse.as_ref().map(|e| e.id);
                let variable = named(
                    m.variable.name.as_str(),
                    m.variable.instance.as_ref().map(|i| i.as_str()),
                );
                m.variable_monitoring.into_iter().map(move |v| MonitorView {
                    id: v.id,
                    component: component.clone(),
                    evse,
                    variable: variable.clone(),
                    kind: v.r#type.as_str().to_owned(),
                    value: v.value,
                    severity: v.severity,
                    transaction: v.transaction,
                    last_event: None,
                })
            })
            .collect();
        let part: MonitorPart = (r.request_id, r.seq_no, !r.tbc.unwrap_or(false), monitors);
        part
    }};
}

/// The station's monitors in its newest monitoring report.
#[derive(Debug, Serialize)]
struct MonitorsOut {
    /// The report's request id (`None`: the station reported none).
    request_id: Option<i32>,
    /// Whether its last part arrived.
    complete: bool,
    monitors: Vec<MonitorView>,
}

async fn reports(app: &App, station: &str, kind: &str) -> crate::store::Result<Vec<Value>> {
    Ok(app
        .store
        .station_reports(station, Some(kind), MAX_PARTS)
        .await?
        .into_iter()
        .map(|r| r.body)
        .collect())
}

/// `GET /api/stations/{id}/monitors`.
async fn monitors(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    // newest first: the first part read names the newest request
    let parts: Vec<MonitorPart> = reports(&app, &id, "monitoring_report")
        .await?
        .iter()
        .filter_map(|b| parsed!(b, NotifyMonitoringReportRequest, |r| monitor_part!(r)))
        .collect();
    let newest = parts.first().map(|p| p.0);
    let mut mine: Vec<_> = parts.into_iter().filter(|p| Some(p.0) == newest).collect();
    mine.sort_by_key(|p| p.1);
    let last: BTreeMap<i32, LastEvent> = app
        .store
        .monitor_values(&id)
        .await?
        .into_iter()
        .map(|v| {
            let e = LastEvent {
                value: v.value,
                trigger: v.trigger,
                at: v.at,
            };
            (v.monitor_id, e)
        })
        .collect();
    let out = MonitorsOut {
        request_id: newest,
        complete: mine.iter().any(|p| p.2),
        monitors: mine
            .into_iter()
            .flat_map(|p| p.3)
            .map(|m| MonitorView {
                last_event: last.get(&m.id).cloned(),
                ..m
            })
            .collect(),
    };
    Ok(Json(out).into_response())
}

/// What a station reported for one CustomerInformation request.
#[derive(Debug, Serialize)]
struct CustomerInformationOut {
    request_id: i32,
    /// Whether its last part arrived.
    complete: bool,
    /// How many parts arrived.
    parts: usize,
    /// The parts' data joined in order.
    data: String,
    /// When the station generated the last part it sent.
    generated_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /api/stations/{id}/customer-information`.
async fn customer_information(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let mut by_request: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    for b in reports(&app, &id, "customer_information").await? {
        let p = parsed!(b, NotifyCustomerInformationRequest, |r| {
            let last = !r.tbc.unwrap_or(false);
            (
                r.request_id,
                r.seq_no,
                last,
                r.generated_at,
                r.data.as_str().to_owned(),
            )
        });
        if let Some(p) = p {
            by_request.entry(p.0).or_default().push(p);
        }
    }
    let mut out: Vec<CustomerInformationOut> = by_request
        .into_iter()
        .map(|(request_id, mut parts)| {
            parts.sort_by_key(|p| p.1);
            CustomerInformationOut {
                request_id,
                complete: parts.iter().any(|p| p.2),
                parts: parts.len(),
                generated_at: parts.iter().map(|p| p.3).max().unwrap_or_default(),
                data: parts.into_iter().map(|p| p.4).collect(),
            }
        })
        .collect();
    out.sort_by_key(|o| std::cmp::Reverse(o.generated_at));
    Ok(Json(out).into_response())
}

/// A PublishFirmware request as its status notifications left it.
#[derive(Debug, Serialize)]
struct PublishedOut {
    /// The request id (`None`: notifications that named none).
    request_id: Option<i32>,
    /// The latest status.
    status: String,
    /// Where the local controller publishes the image (with `Published`).
    locations: Vec<String>,
    /// When the CSMS received the latest status.
    at: String,
}

/// `GET /api/stations/{id}/published-firmware`.
async fn published_firmware(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let rows = app
        .store
        .station_reports(&id, Some("publish_firmware"), MAX_PARTS)
        .await?;
    let mut out: Vec<PublishedOut> = Vec::new();
    // newest first: the first row of a request id is its latest status
    for row in rows {
        macro_rules! view {
            ($ver:ident) => {
                serde_json::from_value::<$ver::PublishFirmwareStatusNotificationRequest>(
                    row.body.clone(),
                )
                .ok()
                .map(|r| PublishedOut {
                    request_id: r.request_id,
                    status: r.status.as_str().to_owned(),
                    locations: r
                        .location
                        .into_iter()
                        .flatten()
                        .map(|l| l.as_str().to_owned())
                        .collect(),
                    at: row.received_at.clone(),
                })
            };
        }
        let Some(v) = view!(v201).or_else(|| view!(v21)) else {
            continue;
        };
        if !out.iter().any(|o| o.request_id == v.request_id) {
            out.push(v);
        }
    }
    Ok(Json(out).into_response())
}
