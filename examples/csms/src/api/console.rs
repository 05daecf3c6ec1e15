//! The operator API routes the console needs beyond the resource lists:
//! the OCPP actions a CSMS may send with their request schemas (for forms
//! generated from them), the overview counters and live power, energy and
//! revenue per day, payments, deleting a tariff, and a tariff's price for a
//! sample session. Typed in and out; the JSON schemas are passed through as
//! the generated tables hold them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::api::{body, page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams};
use crate::App;

/// `?version=` of [`actions`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionQuery {
    version: String,
}

/// One action a CSMS may send, with its request schema.
#[derive(Serialize)]
struct ActionSchema {
    action: &'static str,
    schema: &'static RawValue,
}

/// The answer of [`actions`].
#[derive(Serialize)]
struct Actions {
    version: &'static str,
    items: Vec<ActionSchema>,
}

/// `GET /api/ocpp/actions?version=1.6|2.0.1|2.1`: the CSMS-initiated
/// actions of a version, sorted by name, each with its request's JSON
/// schema (the official OCA schema the payload is validated against).
pub(crate) async fn actions(ApiQuery(q): ApiQuery<VersionQuery>) -> ApiResult {
    let (version, table) = match q.version.as_str() {
        "1.6" => ("1.6", evproto_ocpp_types::v16::ACTIONS),
        "2.0.1" => ("2.0.1", evproto_ocpp_types::v201::ACTIONS),
        "2.1" => ("2.1", evproto_ocpp_types::v21::ACTIONS),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "version: 1.6, 2.0.1 or 2.1",
            ))
        }
    };
    let mut items = Vec::new();
    for a in table.iter().filter(|a| a.direction.from_csms()) {
        let schema: &'static RawValue =
            serde_json::from_str(a.request_schema_json).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("schema of {}: {e}", a.name),
                )
            })?;
        items.push(ActionSchema {
            action: a.name,
            schema,
        });
    }
    Ok(Json(Actions { version, items }).into_response())
}

/// Money per currency.
#[derive(Serialize)]
struct Amount {
    currency: String,
    amount: String,
}

/// The answer of [`overview`].
#[derive(Serialize)]
struct Overview {
    stations_total: i64,
    stations_online: usize,
    sessions_active: i64,
    /// Sum of the active sessions' latest power readings, W.
    power_w: Decimal,
    /// Energy of the sessions priced today (UTC), Wh.
    energy_today_wh: Decimal,
    revenue_today: Vec<Amount>,
}

/// Active sessions whose power the overview sums (a bound, not a limit
/// any network here reaches: one reading each).
const MAX_LIVE: i64 = 100_000;

/// `GET /api/overview`: what the console's first page shows.
pub(crate) async fn overview(State(app): State<Arc<App>>) -> ApiResult {
    let counts = app.store.network_counts().await?;
    let online = app.gateway.connected().await.len();
    let power_w = app
        .store
        .live_power(None, MAX_LIVE)
        .await?
        .iter()
        .map(|p| p.power_w)
        .sum::<Decimal>();
    let today = Utc::now().date_naive();
    let midnight = crate::store::ts(today.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    let days = app.store.daily(&midnight).await?;
    let mut energy_today_wh = Decimal::ZERO;
    let mut revenue_today = Vec::new();
    for d in days {
        energy_today_wh +=
            d.energy_kwh.parse::<Decimal>().unwrap_or_default() * Decimal::from(1000);
        revenue_today.push(Amount {
            currency: d.currency,
            amount: d.revenue_incl_vat,
        });
    }
    Ok(Json(Overview {
        stations_total: counts.stations,
        stations_online: online,
        sessions_active: counts.active_sessions,
        power_w: power_w.normalize(),
        energy_today_wh: energy_today_wh.normalize(),
        revenue_today,
    })
    .into_response())
}

/// `?station=` of [`live`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiveQuery {
    station: Option<String>,
}

/// An active session as the console shows it live.
#[derive(Serialize)]
struct Live {
    session_id: String,
    station: String,
    power_w: Option<Decimal>,
    energy_wh: Decimal,
    started_at: Option<String>,
    /// Incl. VAT under the default tariff, `None` without one.
    running_cost: Option<Decimal>,
}

/// Active sessions listed live, at most.
const MAX_LIVE_LIST: i64 = 1000;

/// `GET /api/sessions/live[?station=]`: the active sessions (at most
/// 1,000) with their power now, energy so far and running cost.
pub(crate) async fn live(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> ApiResult {
    let power = app
        .store
        .live_power(q.station.as_deref(), MAX_LIVE_LIST)
        .await?;
    let page = app
        .store
        .sessions_page(&crate::store::ListQuery {
            limit: MAX_LIVE_LIST,
            after: None,
            station: q.station.clone(),
            status: Some("Active".into()),
            since: None,
            until: None,
            search: None,
        })
        .await?;
    let mut out = Vec::with_capacity(page.items.len());
    for s in page.items {
        let running_cost = app
            .sessions
            .running()
            .cost(
                &app.store,
                &s,
                &crate::billing::Operator::of(&app.config),
                chrono::Utc::now(),
            )
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(session = %s.id, "running cost: {e}");
                None
            })
            .map(|m| m.to_decimal());
        out.push(Live {
            power_w: power
                .iter()
                .find(|p| p.session_id == s.id)
                .map(|p| p.power_w),
            session_id: s.id,
            station: s.station_id,
            energy_wh: s.energy_wh,
            started_at: s.started_at.map(crate::store::ts),
            running_cost,
        });
    }
    Ok(Json(out).into_response())
}

/// `?days=` of [`daily_stats`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaysQuery {
    days: Option<i64>,
}

/// `GET /api/stats/daily[?days=30]`: energy and revenue per day and
/// currency of the sessions priced over the last `days` (1 to 366, default
/// 30), newest first.
pub(crate) async fn daily_stats(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<DaysQuery>,
) -> ApiResult {
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "days: 1 to 366"));
    }
    let first = (Utc::now() - Duration::days(days - 1)).date_naive();
    let since = crate::store::ts(first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    Ok(Json(app.store.daily(&since).await?).into_response())
}

/// The payment statuses a list filters by.
const PAYMENT_STATUSES: &[&str] = &["Held", "Refused", "Captured", "Released"];

/// `GET /api/payments`: payments, latest change first.
pub(crate) async fn list_payments(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        station: true,
        statuses: PAYMENT_STATUSES,
        time: true,
        search: false,
    })?;
    let page = app.store.payments_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

/// `DELETE /api/tariffs/{id}`: 204, or 404. Sessions priced under it keep
/// their CDRs; a session that ends later is priced under what is left.
pub(crate) async fn delete_tariff(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    if app.store.delete_tariff(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown tariff {id}"),
        ))
    }
}

/// A sample session to price (`POST /api/tariffs/preview`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SampleSession {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    energy_wh: Decimal,
}

/// The body of `POST /api/tariffs/preview`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewBody {
    /// The tariff as `PUT /api/tariffs/{id}` takes it.
    tariff: Box<RawValue>,
    session: SampleSession,
}

/// `POST /api/tariffs/preview`: the price of a sample session (one charging
/// period from `start` to `end` with `energy_wh`) under a tariff not yet
/// stored, in the server's time zone; 400 with the reason for a tariff or
/// session that cannot be priced.
pub(crate) async fn preview(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let b: PreviewBody = body(&bytes)?;
    let bad = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    if b.session.end < b.session.start {
        return Err(bad("session.end: not before session.start".into()));
    }
    if b.session.energy_wh < Decimal::ZERO {
        return Err(bad("session.energy_wh: not negative".into()));
    }
    use evproto_ocpi::tariff::{cdr_number, price, ChargingPeriod, Session, Tariff};
    // the same checks as a stored tariff gets (`PUT /api/tariffs/{id}`)
    let tariff = Tariff::from_json(
        &serde_json::from_str(b.tariff.get()).map_err(|e| bad(format!("tariff: {e}")))?,
    )
    .map_err(|e| bad(format!("not a usable OCPI tariff: {e}")))?;
    within_bounds(&tariff).map_err(bad)?;
    if b.session.energy_wh > Decimal::from(MAX_PREVIEW_WH) {
        return Err(bad(format!("session.energy_wh: at most {MAX_PREVIEW_WH}")));
    }
    if b.session.end - b.session.start > Duration::days(MAX_PREVIEW_DAYS) {
        return Err(bad(format!(
            "session: at most {MAX_PREVIEW_DAYS} days long"
        )));
    }
    let session = Session {
        start_date_time: b.session.start,
        end_date_time: b.session.end,
        charging_periods: vec![ChargingPeriod {
            start_date_time: b.session.start,
            energy: Some(b.session.energy_wh / Decimal::from(1000)),
            ..ChargingPeriod::default()
        }],
    };
    let priced = price(&tariff, &session, Some(&app.config.time_zone))
        .map_err(|e| bad(format!("not priced: {e}")))?;
    let incl = priced.total_cost.incl();
    let total_minor = evproto_csms_core::money::Money::parse(incl, &tariff.currency)
        .map_err(|e| bad(format!("currency: {e}")))?
        .minor();
    Ok(Json(Preview {
        currency: tariff.currency,
        total_excl_vat: cdr_number(priced.total_cost.excl),
        total_incl_vat: cdr_number(incl),
        total_minor,
        energy_kwh: priced.total_energy.normalize(),
        energy_cost_excl_vat: cdr_number(priced.total_energy_cost.excl),
        time_h: priced.total_time.round_dp(4).normalize(),
        time_cost_excl_vat: cdr_number(priced.total_time_cost.excl),
        fixed_cost_excl_vat: cdr_number(priced.total_fixed_cost.excl),
    })
    .into_response())
}

/// The answer of [`preview`]: CDR-style totals (at most 4 decimals) and
/// what a driver pays in the currency's minor units.
#[derive(Serialize)]
struct Preview {
    currency: String,
    total_excl_vat: Decimal,
    total_incl_vat: Decimal,
    /// `total_incl_vat` rounded to the currency's minor unit (half away
    /// from zero), as receipts and captures carry it.
    total_minor: i64,
    energy_kwh: Decimal,
    energy_cost_excl_vat: Decimal,
    time_h: Decimal,
    time_cost_excl_vat: Decimal,
    fixed_cost_excl_vat: Decimal,
}

/// Largest sample session priced: 1 GWh.
const MAX_PREVIEW_WH: i64 = 1_000_000_000_000;
/// Longest sample session priced.
const MAX_PREVIEW_DAYS: i64 = 366;
/// Largest price per unit a tariff may set (per kWh, hour or session).
const MAX_UNIT_PRICE: i64 = 1_000_000;
/// Largest `min_price`/`max_price`.
const MAX_TOTAL_PRICE: i64 = 1_000_000_000;

/// Whether a tariff's amounts are within what the CSMS prices: a price per
/// unit up to 1,000,000, VAT up to 100 %, min/max totals up to
/// 1,000,000,000. Far beyond any real tariff, and small enough that no
/// session the CSMS prices can overflow a decimal (28 digits); the reason
/// when not, naming the field.
pub(crate) fn within_bounds(t: &evproto_ocpi::tariff::Tariff) -> Result<(), String> {
    for (i, e) in t.elements.iter().enumerate() {
        for (j, c) in e.price_components.iter().enumerate() {
            if c.price > Decimal::from(MAX_UNIT_PRICE) {
                return Err(format!(
                    "elements[{i}].price_components[{j}].price: at most {MAX_UNIT_PRICE}"
                ));
            }
            if c.vat.is_some_and(|v| v > Decimal::from(100)) {
                return Err(format!(
                    "elements[{i}].price_components[{j}].vat: a percentage, at most 100"
                ));
            }
        }
    }
    for (name, limit) in [("min_price", t.min_price), ("max_price", t.max_price)] {
        if let Some(l) = limit {
            if l.excl > Decimal::from(MAX_TOTAL_PRICE)
                || l.incl.is_some_and(|v| v > Decimal::from(MAX_TOTAL_PRICE))
            {
                return Err(format!("{name}: at most {MAX_TOTAL_PRICE}"));
            }
        }
    }
    Ok(())
}
