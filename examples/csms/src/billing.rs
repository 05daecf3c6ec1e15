//! Pricing and CDRs: every completed session is priced with the OCPI tariff
//! engine (`evproto_ocpi::tariff`) under the tariff `default` (set with
//! `PUT /api/tariffs/default`), in the CSMS's time zone, and gets one CDR
//! in the OCPI 2.2.1 shape. Charging periods come from the stored energy
//! register readings: a period per reading, with the energy since the last.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use evproto_ocpi::tariff::{
    price, CdrDimension, ChargingPeriod, Session as TariffSession, Tariff, Version,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::store::{Session, Store};

/// Why a session could not be priced (it keeps no CDR then; the reason is
/// logged and published).
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The tariff engine refused.
    #[error("tariff: {0}")]
    Tariff(#[from] evproto_ocpi::tariff::TariffError),
    /// The stored tariff is not a tariff.
    #[error("stored tariff: {0}")]
    BadTariff(String),
    /// The session lacks a start or stop time.
    #[error("session {0} has no start or stop time")]
    Incomplete(String),
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The charging periods of a session from its register readings.
pub fn periods(
    session: &Session,
    meter_values: &[Value],
) -> Result<(TariffSession, Vec<Value>), BillingError> {
    let start = session
        .started_at
        .as_deref()
        .and_then(time)
        .ok_or_else(|| BillingError::Incomplete(session.id.clone()))?;
    let stop = session
        .stopped_at
        .as_deref()
        .and_then(time)
        .ok_or_else(|| BillingError::Incomplete(session.id.clone()))?;
    let stop = stop.max(start);
    let mut points: Vec<(DateTime<Utc>, Decimal)> = Vec::new();
    if let Some(wh) = session.meter_start_wh {
        points.push((start, wh));
    }
    for m in meter_values
        .iter()
        .filter(|m| m["measurand"] == "Energy.Active.Import.Register")
    {
        let (Some(t), Some(wh)) = (
            m["timestamp"].as_str().and_then(time),
            crate::store::to_wh(m["value"].as_str().unwrap_or_default(), m["unit"].as_str()),
        ) else {
            continue;
        };
        if t > start && t < stop {
            points.push((t, wh));
        }
    }
    if let Some(wh) = session.meter_stop_wh {
        points.push((stop, wh));
    }
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    let mut out = Vec::new();
    let mut json_periods = Vec::new();
    let hours = |a: DateTime<Utc>, b: DateTime<Utc>| {
        Decimal::from((b - a).num_milliseconds().max(0)) / Decimal::from(3_600_000)
    };
    if points.len() < 2 {
        let h = hours(start, stop);
        out.push(ChargingPeriod {
            start_date_time: start,
            dimensions: vec![CdrDimension {
                kind: "TIME".into(),
                volume: h,
            }],
        });
        json_periods.push(json!({"start_date_time": start, "dimensions": [{"type": "TIME", "volume": h.round_dp(6).normalize()}]}));
    } else {
        if points[0].0 > start {
            points.insert(0, (start, points[0].1));
        }
        for w in points.windows(2) {
            let kwh = ((w[1].1 - w[0].1).max(Decimal::ZERO) / Decimal::from(1000)).normalize();
            let h = hours(w[0].0, w[1].0);
            out.push(ChargingPeriod {
                start_date_time: w[0].0,
                dimensions: vec![
                    CdrDimension {
                        kind: "ENERGY".into(),
                        volume: kwh,
                    },
                    CdrDimension {
                        kind: "TIME".into(),
                        volume: h,
                    },
                ],
            });
            json_periods.push(json!({"start_date_time": w[0].0, "dimensions": [
                {"type": "ENERGY", "volume": kwh.to_string()}, {"type": "TIME", "volume": h.round_dp(6).normalize().to_string()}]}));
        }
    }
    Ok((
        TariffSession {
            start_date_time: start,
            end_date_time: stop,
            charging_periods: out,
        },
        json_periods,
    ))
}

/// Prices a completed session under the `default` tariff and stores its
/// CDR (once). Returns the CDR, or `None` when no tariff is set.
///
/// # Errors
///
/// [`BillingError`].
pub async fn bill(
    store: &Store,
    session: &Session,
    time_zone: &str,
) -> Result<Option<Value>, BillingError> {
    if let Some(existing) = store.cdr(&session.id).await? {
        return Ok(Some(existing));
    }
    let Some(tariff_json) = store.tariff("default").await? else {
        return Ok(None);
    };
    let tariff: Tariff = serde_json::from_value(tariff_json.clone())
        .map_err(|e| BillingError::BadTariff(e.to_string()))?;
    let meter_values = store.session_meter_values(&session.id).await?;
    let (ts, json_periods) = periods(session, &meter_values)?;
    let priced = price(&tariff, &ts, Some(time_zone))?;
    let totals = priced.to_json(Version::V221);
    let currency = if tariff.currency.is_empty() {
        "EUR".to_owned()
    } else {
        tariff.currency.clone()
    };
    let mut cdr = json!({
        "id": session.id,
        "start_date_time": ts.start_date_time,
        "end_date_time": ts.end_date_time,
        "session_id": session.id,
        "cdr_token": {"uid": session.id_token, "type": "RFID"},
        "auth_method": "WHITELIST",
        "station_id": session.station_id,
        "evse_uid": session.evse_id,
        "currency": currency,
        "tariffs": [tariff_json],
        "charging_periods": json_periods,
        "last_updated": crate::store::now(),
    });
    if let (Some(o), Some(t)) = (cdr.as_object_mut(), totals.as_object()) {
        for (k, v) in t {
            o.insert(k.clone(), v.clone());
        }
    }
    let excl = priced.total_cost.excl;
    let incl = priced.total_cost.incl();
    store
        .insert_cdr(&session.id, &currency, excl, incl, &cdr)
        .await?;
    Ok(store.cdr(&session.id).await?)
}

/// The running cost (incl. VAT) of an active session as of `now`, under the
/// `default` tariff: what 2.x stations get as `totalCost` in the
/// TransactionEvent answers (OCPP 2.0.1 E01/I03 "running cost"). `None`
/// without a tariff.
///
/// # Errors
///
/// [`BillingError`].
pub async fn running_cost(
    store: &Store,
    session: &Session,
    time_zone: &str,
    now: &str,
) -> Result<Option<Decimal>, BillingError> {
    let Some(tariff_json) = store.tariff("default").await? else {
        return Ok(None);
    };
    let tariff: Tariff =
        serde_json::from_value(tariff_json).map_err(|e| BillingError::BadTariff(e.to_string()))?;
    let mut s = session.clone();
    if s.stopped_at.is_none() {
        s.stopped_at = Some(now.to_owned());
    }
    if s.meter_stop_wh.is_none() {
        s.meter_stop_wh = s.meter_start_wh.map(|m| m + s.energy_wh);
    }
    let meter_values = store.session_meter_values(&s.id).await?;
    let (ts, _) = periods(&s, &meter_values)?;
    let priced = price(&tariff, &ts, Some(time_zone))?;
    Ok(Some(priced.total_cost.incl().round_dp(2)))
}

/// Checks a tariff body for `PUT /api/tariffs/{id}`.
///
/// # Errors
///
/// The reason it is not an OCPI tariff the engine can use.
pub fn check_tariff(v: &Value) -> Result<(), String> {
    let t: Tariff = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if t.elements.is_empty() {
        return Err("elements: at least one".into());
    }
    if t.currency.len() != 3 {
        return Err("currency: ISO 4217 code".into());
    }
    Ok(())
}

/// Decimal text of a JSON value, for display.
pub fn dec(v: &Value) -> Option<Decimal> {
    v.as_str().and_then(|s| Decimal::from_str(s).ok())
}
