//! Periodic event streams (OCPP 2.1 block N, N08 with streams).
//!
//! - A station opens a stream of a variable monitor's values
//!   (`OpenPeriodicEventStream`): it is accepted and kept per station and
//!   stream id with its parameters ([`crate::store::streams`]).
//! - The values come as `NotifyPeriodicEventStream`, a 2.1 SEND (no
//!   answer): the CSMS decodes it typed and keeps each value at its time,
//!   `basetime` plus its offset `t` in seconds ([`samples`]); values of a
//!   stream that is not open are dropped. A SEND reaches the CSMS outside
//!   the typed routes (the server's `Send` event), see [`received`].
//! - A station closes it (`ClosePeriodicEventStream`, a station's message
//!   in 2.1); the operator ends it by clearing its variable monitor
//!   (`ClearVariableMonitoring`), after which the station closes it.
//! - Operator routes (behind the API key): `GET /api/stations/{id}/event-streams`
//!   (the streams kept), `GET .../event-streams/{stream}/values` (the
//!   series, oldest first, from `since`), `POST .../event-streams/query`
//!   (`GetPeriodicEventStream`: the station's own list),
//!   `POST .../event-streams/{stream}/adjust` (`AdjustPeriodicEventStream`
//!   with `interval` and `values`; kept when the station accepts) and
//!   `DELETE .../event-streams/{stream}` (`ClearVariableMonitoring` of the
//!   stream's monitor; closed when the station closes it). Only 2.1
//!   stations have streams (409 for others).
//! - In cluster mode the node that holds the station's connection receives
//!   its SENDs and keeps their values in the shared store, as a single node
//!   does; any node's routes read them. The console's Streams page plots a
//!   stream's series (`console/js/pages/streams.js`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use evproto_ocpp_types::v21;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::api::{ApiError, ApiQuery, ApiResult};
use crate::store::streams::StreamValue;
use crate::App;

/// The values of a stream message at their times: `basetime` plus `t`
/// seconds (to the millisecond; an offset that does not fit is dropped).
pub fn samples(req: &v21::NotifyPeriodicEventStreamRequest) -> Vec<StreamValue> {
    req.data
        .iter()
        .filter_map(|d| {
            let ms = (d.t * Decimal::from(1000)).round().to_i64()?;
            Some(StreamValue {
                at: req
                    .basetime
                    .checked_add_signed(chrono::Duration::try_milliseconds(ms)?)?,
                value: d.v.as_str().to_owned(),
            })
        })
        .collect()
}

/// A station opened a stream: kept, open.
///
/// # Errors
///
/// The store failed.
pub async fn opened(
    app: &App,
    station: &str,
    req: &v21::OpenPeriodicEventStreamRequest,
) -> crate::store::Result<()> {
    let c = &req.constant_stream_data;
    app.store
        .open_event_stream(
            station,
            c.id,
            c.variable_monitoring_id,
            c.params.interval,
            c.params.values,
        )
        .await
}

/// A SEND from `station` (its action and payload): a
/// `NotifyPeriodicEventStream` is decoded and its values kept; other SENDs
/// and payloads that are not one are logged and dropped (a SEND has no
/// answer to refuse it with).
pub async fn received(app: &App, station: &str, action: &str, payload: &str) {
    use evproto_ocpp_types::SendAction;
    if action != v21::action::NotifyPeriodicEventStream::NAME {
        tracing::debug!(station, action, "SEND not consumed");
        return;
    }
    let req: v21::NotifyPeriodicEventStreamRequest = match evproto_ocpp_types::from_str(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(station, "NotifyPeriodicEventStream dropped: {e}");
            return;
        }
    };
    if let Err(e) = app
        .store
        .put_stream_values(station, req.id, &samples(&req))
        .await
    {
        tracing::warn!(station, stream = req.id, "stream values not kept: {e}");
    }
}

// ---- the operator API ----

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/stations/{id}/event-streams", get(list_streams))
        .route(
            "/api/stations/{id}/event-streams/query",
            post(query_streams),
        )
        .route(
            "/api/stations/{id}/event-streams/{stream}",
            axum::routing::delete(close_stream),
        )
        .route(
            "/api/stations/{id}/event-streams/{stream}/values",
            get(stream_values),
        )
        .route(
            "/api/stations/{id}/event-streams/{stream}/adjust",
            post(adjust_stream),
        )
}

async fn known_station(app: &App, id: &str) -> Result<(), ApiError> {
    match app.store.station(id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no station {id}"),
        )),
    }
}

fn stream_id(text: &str) -> Result<i32, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "stream: an integer (the stream's id on the station)",
        )
    })
}

/// A stream of station `id` that is open, the station connected with 2.1:
/// else 404 (409 for an earlier version).
async fn open_stream(
    app: &App,
    id: &str,
    stream: i32,
) -> Result<crate::store::streams::EventStream, ApiError> {
    let Some(open) = app
        .store
        .event_streams(id)
        .await?
        .into_iter()
        .find(|s| s.stream_id == stream && s.closed_at.is_none())
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no open event stream {stream} of station {id}"),
        ));
    };
    crate::der::connected_21(app, id).await?;
    Ok(open)
}

async fn list_streams(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    known_station(&app, &id).await?;
    let items = app.store.event_streams(&id).await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// The query of `GET .../event-streams/{stream}/values`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValuesQuery {
    since: Option<DateTime<Utc>>,
    limit: Option<i64>,
}

async fn stream_values(
    State(app): State<Arc<App>>,
    Path((id, stream)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ValuesQuery>,
) -> ApiResult {
    let stream = stream_id(&stream)?;
    let limit = q.limit.unwrap_or(1_000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "limit: 1 to 10000"));
    }
    let Some(kept) = app
        .store
        .event_streams(&id)
        .await?
        .into_iter()
        .find(|s| s.stream_id == stream)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no event stream {stream} of station {id}"),
        ));
    };
    let values = app.store.stream_values(&id, stream, q.since, limit).await?;
    Ok(Json(serde_json::json!({ "stream": kept, "values": values })).into_response())
}

async fn query_streams(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    crate::der::connected_21(&app, &id).await?;
    let answer = app
        .gateway
        .call::<v21::action::GetPeriodicEventStream>(
            &id,
            v21::GetPeriodicEventStreamRequest { custom_data: None },
        )
        .await?;
    Ok(Json(answer).into_response())
}

/// The body of `POST .../event-streams/{stream}/adjust`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    /// Seconds between messages.
    #[serde(default)]
    interval: Option<i32>,
    /// Values per message.
    #[serde(default)]
    values: Option<i32>,
}

async fn adjust_stream(
    State(app): State<Arc<App>>,
    Path((id, stream)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let stream = stream_id(&stream)?;
    let b: AdjustBody = crate::api::body(&bytes)?;
    if b.interval.is_some_and(|i| i < 0) || b.values.is_some_and(|v| v < 0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "interval, values: 0 or more",
        ));
    }
    open_stream(&app, &id, stream).await?;
    let answer = app
        .gateway
        .call::<v21::action::AdjustPeriodicEventStream>(
            &id,
            v21::AdjustPeriodicEventStreamRequest {
                id: stream,
                params: v21::PeriodicEventStreamParamsType {
                    interval: b.interval,
                    values: b.values,
                    custom_data: None,
                },
                custom_data: None,
            },
        )
        .await?;
    if answer.status == v21::GenericStatusEnumType::Accepted {
        app.store
            .adjust_event_stream(&id, stream, b.interval, b.values)
            .await?;
    }
    Ok(Json(answer).into_response())
}

async fn close_stream(
    State(app): State<Arc<App>>,
    Path((id, stream)): Path<(String, String)>,
) -> ApiResult {
    let stream = stream_id(&stream)?;
    let open = open_stream(&app, &id, stream).await?;
    let answer = app
        .gateway
        .call::<v21::action::ClearVariableMonitoring>(
            &id,
            v21::ClearVariableMonitoringRequest {
                id: vec![open.monitor_id],
                custom_data: None,
            },
        )
        .await?;
    Ok(Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_at_basetime_plus_their_offset() {
        let req: v21::NotifyPeriodicEventStreamRequest = evproto_ocpp_types::from_str(
            r#"{"id":3,"pending":0,"basetime":"2026-06-01T17:00:00Z",
                "data":[{"t":0,"v":"11000.0"},{"t":1.5,"v":"10990"},{"t":-0.25,"v":"x"}]}"#,
        )
        .unwrap();
        let s = samples(&req);
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        assert_eq!(
            s,
            vec![
                StreamValue {
                    at: at("2026-06-01T17:00:00Z"),
                    value: "11000.0".into()
                },
                StreamValue {
                    at: at("2026-06-01T17:00:01.500Z"),
                    value: "10990".into()
                },
                StreamValue {
                    at: at("2026-06-01T16:59:59.750Z"),
                    value: "x".into()
                },
            ]
        );
    }
}
