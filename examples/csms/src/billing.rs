//! Pricing and CDRs: every completed session is priced with the OCPI tariff
//! engine (`evproto_ocpi::tariff`) under the tariff `default` (set with
//! `PUT /api/tariffs/default`), in the CSMS's time zone, and gets one CDR.
//! Charging periods come from the stored energy register readings: a
//! period per reading, with the energy since the last.
//!
//! The CDR is built once, here, as a typed OCPI 2.2.1 [`Cdr`]: the
//! station's registered Location ([`crate::roaming::station_location`], the
//! one published to partners), the tariff's currency, the session's token
//! as the store knows it, the engine's totals (prices at most 4 decimals,
//! [`Priced::to_json`]). Its JSON is what the `cdrs` table keeps, what the
//! operator API serves and what roaming pushes (converted per partner
//! version); nothing builds a second one.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use evproto_ocpi::tariff::{
    price, CdrDimension, ChargingPeriod, Priced, Session as TariffSession, Tariff, Version,
};
use evproto_ocpi::types::{CiString, Str};
use evproto_ocpi::v221;
use evproto_ocpi::v221::Cdr;
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
    /// The station is not registered, or its Location is no OCPI Location.
    #[error("location of station {0}: {1}")]
    Location(String, String),
    /// The CDR cannot be written as OCPI 2.2.1 (a field out of bounds), or
    /// a stored one cannot be read back.
    #[error("CDR: {0}")]
    Cdr(String),
}

/// Who issues the CDRs: our OCPI party and the zone tariffs are judged in.
#[derive(Debug, Clone, Copy)]
pub struct Operator<'a> {
    /// ISO 3166 alpha-2 country code of the CPO.
    pub country_code: &'a str,
    /// The CPO's party id.
    pub party_id: &'a str,
    /// IANA zone of tariff restrictions.
    pub time_zone: &'a str,
}

impl<'a> Operator<'a> {
    /// From the configuration in force.
    pub fn of(config: &'a crate::config::Config) -> Operator<'a> {
        Operator {
            country_code: &config.ocpi_country_code,
            party_id: &config.ocpi_party_id,
            time_zone: &config.time_zone,
        }
    }
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Hours in a CDR: to the microhour (3.6 ms), so the stored JSON number
/// reads back as the same value.
fn hours_dp(h: Decimal) -> Decimal {
    h.round_dp(6).normalize()
}

/// The charging periods of a session from its register readings.
///
/// # Errors
///
/// [`BillingError::Incomplete`] without a start or stop time.
pub fn periods(session: &Session, meter_values: &[Value]) -> Result<TariffSession, BillingError> {
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
    let hours = |a: DateTime<Utc>, b: DateTime<Utc>| {
        hours_dp(Decimal::from((b - a).num_milliseconds().max(0)) / Decimal::from(3_600_000))
    };
    if points.len() < 2 {
        out.push(ChargingPeriod {
            start_date_time: start,
            dimensions: vec![CdrDimension {
                kind: "TIME".into(),
                volume: hours(start, stop),
            }],
        });
    } else {
        if points[0].0 > start {
            points.insert(0, (start, points[0].1));
        }
        for w in points.windows(2) {
            let kwh = ((w[1].1 - w[0].1).max(Decimal::ZERO) / Decimal::from(1000)).normalize();
            out.push(ChargingPeriod {
                start_date_time: w[0].0,
                dimensions: vec![
                    CdrDimension {
                        kind: "ENERGY".into(),
                        volume: kwh,
                    },
                    CdrDimension {
                        kind: "TIME".into(),
                        volume: hours(w[0].0, w[1].0),
                    },
                ],
            });
        }
    }
    Ok(TariffSession {
        start_date_time: start,
        end_date_time: stop,
        charging_periods: out,
    })
}

/// The CDR `id` of a session: its id when OCPI's 36 characters hold it,
/// else the first 36 hex digits of its SHA-256 (stable, so a retried bill
/// names the same CDR).
pub fn cdr_id(session_id: &str) -> String {
    if session_id.len() <= 36 && session_id.chars().all(|c| (' '..='~').contains(&c)) {
        return session_id.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(session_id.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(36)
        .collect()
}

fn ci<const N: usize>(field: &str, s: &str) -> Result<CiString<N>, BillingError> {
    CiString::new(s).map_err(|e| BillingError::Cdr(format!("{field}: {e}")))
}

fn wire<T: serde::de::DeserializeOwned>(field: &str, v: Value) -> Result<T, BillingError> {
    serde_json::from_value(v).map_err(|e| BillingError::Cdr(format!("{field}: {e}")))
}

/// The session's token as the store knows it, and how it was authorized:
/// a token an eMSP pushed is copied from its Token object (`AUTH_REQUEST`
/// when its whitelist is `NEVER`, i.e. it was asked for in real time);
/// one of ours (`/api/tokens`) is issued by us, its contract id its uid
/// (ISO 14443/15693 cards are `RFID`, `Central` ones `APP_USER`, other or
/// unknown types `OTHER`); a session without a token has `#NA` ids.
///
/// # Errors
///
/// The store failed, or a field is out of OCPI's bounds.
pub async fn cdr_token(
    store: &Store,
    session: &Session,
    op: &Operator<'_>,
) -> Result<(v221::CdrToken, v221::AuthMethod), BillingError> {
    let ours = |uid: &str, ty: v221::TokenType| -> Result<v221::CdrToken, BillingError> {
        Ok(v221::CdrToken {
            country_code: ci(
                "cdr_token.country_code",
                &op.country_code.to_ascii_uppercase(),
            )?,
            party_id: ci("cdr_token.party_id", &op.party_id.to_ascii_uppercase())?,
            uid: ci("cdr_token.uid", uid)?,
            r#type: ty,
            contract_id: ci("cdr_token.contract_id", uid)?,
            extra: Default::default(),
        })
    };
    let Some(uid) = session.id_token.as_deref() else {
        return Ok((
            ours("#NA", v221::TokenType::Other)?,
            v221::AuthMethod::Whitelist,
        ));
    };
    if let Some((_, t)) = crate::roaming::session_token(store, session).await? {
        let token = wire("cdr_token", crate::roaming::Roaming::cdr_token(&t))?;
        let auth = if t["whitelist"] == "NEVER" {
            v221::AuthMethod::AuthRequest
        } else {
            v221::AuthMethod::Whitelist
        };
        return Ok((token, auth));
    }
    let known = store.tokens().await?;
    let ty = known
        .iter()
        .find(|t| t["id_token"] == uid)
        .and_then(|t| t["type"].as_str())
        .map_or(v221::TokenType::Other, |t| match t {
            "ISO14443" | "ISO15693" | "RFID" => v221::TokenType::Rfid,
            "Central" => v221::TokenType::AppUser,
            _ => v221::TokenType::Other,
        });
    Ok((ours(uid, ty)?, v221::AuthMethod::Whitelist))
}

/// The `CdrLocation` of a session: the station's Location with the
/// session's EVSE and connector (an EVSE the registry has no status for
/// yet is described the way the registry would).
///
/// # Errors
///
/// [`BillingError::Location`].
fn cdr_location(
    location: &v221::Location,
    session: &Session,
    op: &Operator<'_>,
) -> Result<v221::CdrLocation, BillingError> {
    let bad = |e: String| BillingError::Location(session.station_id.clone(), e);
    let evse_no = session.evse_id.unwrap_or(1).max(1);
    let connector_no = session.connector_id.unwrap_or(1).max(1);
    let uid = crate::roaming::evse_uid(&session.station_id, evse_no);
    let evse = match location.evses.iter().find(|e| e.uid == uid.as_str()) {
        Some(e) => e.clone(),
        None => serde_json::from_value(crate::roaming::evse_json(
            (
                &op.country_code.to_ascii_uppercase(),
                &op.party_id.to_ascii_uppercase(),
            ),
            &session.station_id,
            (evse_no, connector_no),
            "UNKNOWN",
            &crate::store::now(),
        ))
        .map_err(|e| bad(e.to_string()))?,
    };
    let connector = evse
        .connectors
        .iter()
        .find(|c| c.id == connector_no.to_string().as_str())
        .or(evse.connectors.first())
        .ok_or_else(|| bad(format!("EVSE {uid} has no connector")))?;
    Ok(v221::CdrLocation {
        id: location.id.clone(),
        name: location.name.clone(),
        address: location.address.clone(),
        city: location.city.clone(),
        postal_code: location.postal_code.clone(),
        state: location.state.clone(),
        country: location.country.clone(),
        coordinates: location.coordinates.clone(),
        evse_uid: evse.uid.clone(),
        evse_id: match &evse.evse_id {
            Some(id) => id.clone(),
            None => ci("cdr_location.evse_id", "#NA")?,
        },
        connector_id: connector.id.clone(),
        connector_standard: connector.standard.clone(),
        connector_format: connector.format.clone(),
        connector_power_type: connector.power_type.clone(),
        extra: Default::default(),
    })
}

/// What a CDR is made of, besides the session.
#[derive(Debug)]
pub struct CdrParts {
    /// The tariff as stored (`/api/tariffs/default` body).
    pub tariff: Value,
    /// The station's Location (2.2.1 JSON, [`crate::roaming::station_location`]).
    pub location: Value,
    /// The token and how it was authorized ([`cdr_token`]).
    pub token: (v221::CdrToken, v221::AuthMethod),
    /// When the CDR is made.
    pub now: DateTime<Utc>,
}

/// Builds the CDR of a priced session (pure: no store).
///
/// # Errors
///
/// [`BillingError::Cdr`], [`BillingError::BadTariff`],
/// [`BillingError::Location`].
pub fn build_cdr(
    op: &Operator<'_>,
    session: &Session,
    ts: &TariffSession,
    priced: &Priced,
    parts: CdrParts,
) -> Result<Cdr, BillingError> {
    let (cc, pid) = (
        op.country_code.to_ascii_uppercase(),
        op.party_id.to_ascii_uppercase(),
    );
    let now = evproto_ocpi::types::DateTime::from(parts.now);
    let mut tariff = parts.tariff;
    tariff["country_code"] = json!(cc);
    tariff["party_id"] = json!(pid);
    tariff["id"] = json!("default");
    if tariff.get("last_updated").is_none() {
        tariff["last_updated"] = json!(now);
    }
    let tariff: v221::Tariff =
        serde_json::from_value(tariff).map_err(|e| BillingError::BadTariff(e.to_string()))?;
    let location: v221::Location = serde_json::from_value(parts.location)
        .map_err(|e| BillingError::Location(session.station_id.clone(), e.to_string()))?;
    let charging_periods = ts
        .charging_periods
        .iter()
        .map(|p| {
            Ok(v221::ChargingPeriod {
                start_date_time: p.start_date_time.into(),
                dimensions: p
                    .dimensions
                    .iter()
                    .map(|d| {
                        Ok(v221::CdrDimension {
                            r#type: v221::CdrDimensionType::from_wire(&d.kind).ok_or_else(
                                || BillingError::Cdr(format!("dimension {}", d.kind)),
                            )?,
                            volume: d.volume,
                            extra: Default::default(),
                        })
                    })
                    .collect::<Result<_, BillingError>>()?,
                tariff_id: Some(tariff.id.clone()),
                extra: Default::default(),
            })
        })
        .collect::<Result<Vec<_>, BillingError>>()?;
    // the engine's totals, prices as a CDR carries them (≤ 4 decimals)
    let totals = priced.to_json(Version::V221);
    let price = |k: &str| -> Result<v221::Price, BillingError> { wire(k, totals[k].clone()) };
    let (cdr_token, auth_method) = parts.token;
    let id = cdr_id(&session.id);
    Ok(Cdr {
        country_code: ci("country_code", &cc)?,
        party_id: ci("party_id", &pid)?,
        id: ci("id", &id)?,
        start_date_time: ts.start_date_time.into(),
        end_date_time: ts.end_date_time.into(),
        session_id: CiString::new(session.id.as_str()).ok(),
        cdr_token,
        auth_method,
        authorization_reference: None,
        cdr_location: cdr_location(&location, session, op)?,
        meter_id: None,
        currency: Str::new(tariff.currency.as_str())
            .map_err(|e| BillingError::Cdr(format!("currency: {e}")))?,
        tariffs: vec![tariff],
        charging_periods,
        signed_data: None,
        total_cost: price("total_cost")?,
        total_fixed_cost: Some(price("total_fixed_cost")?),
        total_energy: priced.total_energy.normalize(),
        total_energy_cost: Some(price("total_energy_cost")?),
        total_time: hours_dp(priced.total_time),
        total_time_cost: Some(price("total_time_cost")?),
        total_parking_time: Some(hours_dp(priced.total_parking_time)),
        total_parking_cost: Some(price("total_parking_cost")?),
        total_reservation_cost: Some(price("total_reservation_cost")?),
        remark: None,
        invoice_reference_id: None,
        credit: None,
        credit_reference_id: None,
        home_charging_compensation: None,
        last_updated: now,
        extra: Default::default(),
    })
}

/// A stored CDR body read back.
///
/// # Errors
///
/// [`BillingError::Cdr`] when it is no 2.2.1 CDR.
pub fn decode_cdr(body: Value) -> Result<Cdr, BillingError> {
    serde_json::from_value(body).map_err(|e| BillingError::Cdr(format!("stored: {e}")))
}

/// Prices a completed session under the `default` tariff and stores its
/// CDR (once): the typed CDR, as stored. `None` when no tariff is set.
///
/// # Errors
///
/// [`BillingError`].
pub async fn bill(
    store: &Store,
    session: &Session,
    op: &Operator<'_>,
) -> Result<Option<Cdr>, BillingError> {
    if let Some(existing) = store.cdr(&session.id).await? {
        return decode_cdr(existing).map(Some);
    }
    let Some(tariff_json) = store.tariff("default").await? else {
        return Ok(None);
    };
    let tariff = parsed_tariff(&tariff_json)?;
    let meter_values = store.session_meter_values(&session.id).await?;
    let ts = periods(session, &meter_values)?;
    let priced = price(&tariff, &ts, Some(op.time_zone))?;
    let location =
        crate::roaming::station_location(store, op.country_code, op.party_id, &session.station_id)
            .await?
            .ok_or_else(|| {
                BillingError::Location(session.station_id.clone(), "not registered".into())
            })?;
    let token = cdr_token(store, session, op).await?;
    let parts = CdrParts {
        tariff: tariff_json,
        location,
        token,
        now: Utc::now(),
    };
    let cdr = build_cdr(op, session, &ts, &priced, parts)?;
    let body = serde_json::to_value(&cdr).map_err(|e| BillingError::Cdr(e.to_string()))?;
    let excl = priced.total_cost.excl;
    let incl = priced.total_cost.incl();
    store
        .insert_cdr(&session.id, cdr.currency.as_str(), excl, incl, &body)
        .await?;
    // what is stored (a concurrent bill of the same session may have won)
    match store.cdr(&session.id).await? {
        Some(stored) => decode_cdr(stored).map(Some),
        None => Ok(Some(cdr)),
    }
}

/// The last tariff parsed, by its stored body: a running cost is asked for
/// on every `TransactionEvent(Updated)`, and the tariff rarely changes.
/// Keyed by the body itself (the store's tariff row has no version the
/// store API gives out), so a changed tariff is parsed again and a cached
/// one is always the tariff in force.
static TARIFF_CACHE: Mutex<Option<(String, Arc<Tariff>)>> = Mutex::new(None);

fn parsed_tariff(body: &Value) -> Result<Arc<Tariff>, BillingError> {
    let key = body.to_string();
    let mut cache = TARIFF_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, t)) = cache.as_ref() {
        if *k == key {
            return Ok(t.clone());
        }
    }
    let t: Arc<Tariff> = Arc::new(
        serde_json::from_value(body.clone()).map_err(|e| BillingError::BadTariff(e.to_string()))?,
    );
    *cache = Some((key, t.clone()));
    Ok(t)
}

/// Whether a tariff prices every charging period alike wherever it falls
/// in the session: no element is restricted by local time, date, day,
/// energy or duration so far (the restrictions that judge a period by its
/// place in the session). Power and current restrictions never match our
/// periods (they report neither), reservation ones never match a charging
/// period: both are the same for every period too. Then the price of the
/// periods is the price of their sum, one period from start to now.
fn position_free(tariff: &Tariff) -> bool {
    tariff
        .elements
        .iter()
        .filter_map(|e| e.restrictions.as_ref())
        .all(|r| {
            r.start_time.is_none()
                && r.end_time.is_none()
                && r.start_date.is_none()
                && r.end_date.is_none()
                && r.min_kwh.is_none()
                && r.max_kwh.is_none()
                && r.min_duration.is_none()
                && r.max_duration.is_none()
                && r.day_of_week.is_empty()
        })
}

/// The running cost (incl. VAT) of an active session as of `now`, under the
/// `default` tariff: what 2.x stations get as `totalCost` in the
/// TransactionEvent answers (OCPP 2.0.1 E01/I03 "running cost"). `None`
/// without a tariff.
///
/// Bounded per call: the parsed tariff is cached (by its body); under a
/// tariff whose elements do not depend on a period's place in the session
/// (`position_free`) the session is priced from its aggregate alone (the
/// start register and the energy so far, one period start → now), with no
/// meter value read: every such period is priced by the same elements,
/// FLAT is charged once, step_size and min/max apply to totals, so the sum
/// of the periods costs what the periods cost (see the test
/// `running_cost_equals_final_price`). Under time, date, energy or
/// duration restrictions the periods are needed and the readings are read.
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
    let tariff = parsed_tariff(&tariff_json)?;
    let mut s = session.clone();
    if s.stopped_at.is_none() {
        s.stopped_at = Some(now.to_owned());
    }
    if s.meter_stop_wh.is_none() {
        s.meter_stop_wh = s.meter_start_wh.map(|m| m + s.energy_wh);
    }
    let meter_values = if position_free(&tariff) {
        Vec::new()
    } else {
        store.session_meter_values(&s.id).await?
    };
    let ts = periods(&s, &meter_values)?;
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

/// The decimal of a JSON number or numeric string (CDR amounts are
/// numbers; older stored ones are strings).
pub fn dec(v: &Value) -> Option<Decimal> {
    evproto_ocpi::tariff::to_decimal(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: Operator<'static> = Operator {
        country_code: "nl",
        party_id: "evp",
        time_zone: "Europe/Amsterdam",
    };

    async fn temp_store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("csms-billing-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&format!("sqlite://{}?mode=rwc", dir.join("b.db").display()))
            .await
            .unwrap()
    }

    /// A registered station `CS1` with EVSE 1 and its place, a `default`
    /// tariff in GBP (1.00 flat, 0.30/kWh + 20 % VAT, 1.20/h), token TAG1.
    async fn registry(store: &Store) {
        store.upsert_station("CS1", None).await.unwrap();
        store
            .set_status("CS1", 1, 1, "Available", None)
            .await
            .unwrap();
        let place = json!({"name": "Depot", "address": "Stationsplein 1", "city": "Utrecht",
            "postal_code": "3511 AA", "country": "NLD", "time_zone": "Europe/Amsterdam",
            "coordinates": {"latitude": "52.089444", "longitude": "5.110278"}});
        store
            .put_setting("station_location:CS1", &place.to_string())
            .await
            .unwrap();
        store.put_tariff("default", &tariff()).await.unwrap();
        store
            .upsert_token("TAG1", "ISO14443", "Accepted")
            .await
            .unwrap();
    }

    fn tariff() -> Value {
        json!({"currency": "GBP", "elements": [{"price_components": [
            {"type": "FLAT", "price": 1, "step_size": 1},
            {"type": "ENERGY", "price": 0.30, "vat": 20, "step_size": 1},
            {"type": "TIME", "price": 1.20, "step_size": 60}]}]})
    }

    fn session(id: &str, token: Option<&str>, stop: Option<(&str, &str)>) -> Session {
        Session {
            id: id.into(),
            station_id: "CS1".into(),
            ocpp_tx_id: "1".into(),
            evse_id: Some(1),
            connector_id: Some(1),
            id_token: token.map(str::to_owned),
            status: if stop.is_some() {
                "Completed"
            } else {
                "Active"
            }
            .into(),
            started_at: Some("2026-03-02T08:00:00Z".into()),
            stopped_at: stop.map(|s| s.0.to_owned()),
            meter_start_wh: Some(Decimal::from(1000)),
            meter_stop_wh: stop.map(|s| Decimal::from_str_exact(s.1).unwrap()),
            energy_wh: stop.map_or(Decimal::ZERO, |s| {
                Decimal::from_str_exact(s.1).unwrap() - Decimal::from(1000)
            }),
            stop_reason: None,
        }
    }

    async fn reading(store: &Store, session: &str, at: &str, wh: &str) {
        store
            .meter_values(
                session,
                &[(
                    at.into(),
                    "Energy.Active.Import.Register".into(),
                    wh.into(),
                    Some("Wh".into()),
                )],
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn typed_cdr_from_tariff_registry_and_engine() {
        let store = temp_store("typed").await;
        registry(&store).await;
        reading(&store, "CS1:1", "2026-03-02T08:20:00Z", "4000").await;
        let s = session(
            "CS1:1",
            Some("TAG1"),
            Some(("2026-03-02T08:45:00Z", "8500")),
        );
        let cdr = bill(&store, &s, &OP)
            .await
            .unwrap()
            .expect("a tariff is set");

        // currency: the tariff's
        assert_eq!(cdr.currency.as_str(), "GBP");
        assert_eq!(cdr.tariffs[0].currency.as_str(), "GBP");
        // location: the station's registered one, the one roaming publishes
        let loc = crate::roaming::station_location(&store, "NL", "EVP", "CS1")
            .await
            .unwrap()
            .unwrap();
        let l = &cdr.cdr_location;
        assert_eq!(l.id.as_str(), "CS1");
        assert_eq!(l.address.as_str(), "Stationsplein 1");
        assert_eq!(l.address.as_str(), loc["address"]);
        assert_eq!(l.city.as_str(), "Utrecht");
        assert_eq!(l.postal_code.as_ref().unwrap().as_str(), "3511 AA");
        assert_eq!(l.coordinates.latitude.as_str(), "52.089444");
        assert_eq!(l.evse_uid.as_str(), loc["evses"][0]["uid"]);
        assert_eq!(l.evse_id.as_str(), "NL*EVP*ECS11");
        assert_eq!(l.connector_id.as_str(), "1");
        assert_eq!(
            (cdr.country_code.as_str(), cdr.party_id.as_str()),
            ("NL", "EVP")
        );
        // the token as the store knows it: ours, an ISO 14443 card
        assert_eq!(cdr.cdr_token.uid.as_str(), "TAG1");
        assert_eq!(cdr.cdr_token.r#type, v221::TokenType::Rfid);
        assert_eq!(cdr.cdr_token.contract_id.as_str(), "TAG1");
        assert_eq!(cdr.auth_method, v221::AuthMethod::Whitelist);

        // totals: the engine's, on the same periods
        let t: Tariff = serde_json::from_value(tariff()).unwrap();
        let ts = periods(&s, &store.session_meter_values("CS1:1").await.unwrap()).unwrap();
        assert_eq!(ts.charging_periods.len(), 2);
        let p = price(&t, &ts, Some("Europe/Amsterdam")).unwrap();
        // 7.5 kWh × 0.30 = 2.25 (+ 0.45 VAT), 45 min × 1.20/h = 0.90, flat 1
        assert_eq!(p.total_cost.excl, Decimal::from_str_exact("4.15").unwrap());
        assert_eq!(cdr.total_cost.excl_vat, p.total_cost.excl);
        assert_eq!(cdr.total_cost.incl_vat, Some(p.total_cost.incl()));
        assert_eq!(cdr.total_energy, p.total_energy);
        assert_eq!(cdr.total_time, Decimal::from_str_exact("0.75").unwrap());
        assert_eq!(
            cdr.total_energy_cost.as_ref().unwrap().excl_vat,
            p.total_energy_cost.excl
        );
        assert_eq!(cdr.charging_periods.len(), 2);

        // stored once, and the stored body is that CDR, valid OCPI 2.2.1
        let body = store.cdr("CS1:1").await.unwrap().unwrap();
        assert_eq!(
            body["total_cost"],
            json!({"excl_vat": 4.15, "incl_vat": 4.6})
        );
        evproto_ocpi::validate::validate(evproto_ocpi::Version::V221, "Cdr", &body.to_string())
            .unwrap();
        let decoded: Cdr = serde_json::from_value(body).unwrap();
        assert_eq!(decoded, cdr);
        let again = bill(&store, &s, &OP).await.unwrap().unwrap();
        assert_eq!(again, cdr);
    }

    #[tokio::test]
    async fn cdr_token_of_a_roaming_driver_and_no_tariff_no_cdr() {
        let store = temp_store("roam").await;
        registry(&store).await;
        let token = json!({"country_code": "DE", "party_id": "EMS", "uid": "ROAM1", "type": "APP_USER",
            "contract_id": "DE-EMS-C0001", "issuer": "e", "valid": true, "whitelist": "NEVER"});
        store
            .ocpi_put_object("tokens", "DE/EMS/ROAM1", &token)
            .await
            .unwrap();
        let s = session(
            "CS1:2",
            Some("ROAM1"),
            Some(("2026-03-02T09:00:00Z", "3000")),
        );
        let cdr = bill(&store, &s, &OP).await.unwrap().unwrap();
        assert_eq!(cdr.cdr_token.country_code.as_str(), "DE");
        assert_eq!(cdr.cdr_token.party_id.as_str(), "EMS");
        assert_eq!(cdr.cdr_token.contract_id.as_str(), "DE-EMS-C0001");
        assert_eq!(cdr.cdr_token.r#type, v221::TokenType::AppUser);
        assert_eq!(cdr.auth_method, v221::AuthMethod::AuthRequest);
        // an EVSE the registry has no status for is still described
        let mut other = session("CS1:3", None, Some(("2026-03-02T09:00:00Z", "1000")));
        other.evse_id = Some(2);
        let cdr = bill(&store, &other, &OP).await.unwrap().unwrap();
        assert_eq!(cdr.cdr_location.evse_uid.as_str(), "CS1-2");
        assert_eq!(cdr.cdr_token.uid.as_str(), "#NA");
        // no station: no CDR
        let mut lost = session("X:1", None, Some(("2026-03-02T09:00:00Z", "1000")));
        lost.station_id = "NOPE".into();
        assert!(matches!(
            bill(&store, &lost, &OP).await,
            Err(BillingError::Location(..))
        ));
        assert!(store.cdr("X:1").await.unwrap().is_none());
        // a long session id gets a stable 36-character CDR id
        let long = format!("CS1:{}", "a".repeat(40));
        assert_eq!(cdr_id(&long).len(), 36);
        assert_eq!(cdr_id(&long), cdr_id(&long));
        assert_eq!(cdr_id("CS1:1"), "CS1:1");
        // no tariff: nothing priced, no CDR
        let bare = temp_store("bare").await;
        let s = session(
            "CS1:9",
            Some("TAG1"),
            Some(("2026-03-02T09:00:00Z", "3000")),
        );
        assert!(bill(&bare, &s, &OP).await.unwrap().is_none());
        assert!(bare.cdr("CS1:9").await.unwrap().is_none());
    }

    /// Running cost after each of N updates equals the price of the
    /// session's periods so far (the final bill's computation), under a
    /// tariff the aggregate prices alone and under one with time and
    /// energy restrictions (periods needed).
    #[tokio::test]
    async fn running_cost_equals_final_price() {
        let restricted = json!({"currency": "EUR", "elements": [
            {"price_components": [{"type": "ENERGY", "price": 0.50, "vat": 21, "step_size": 1}],
             "restrictions": {"start_time": "09:20", "end_time": "09:50", "min_kwh": 2}},
            {"price_components": [{"type": "FLAT", "price": 0.25, "step_size": 1},
                {"type": "ENERGY", "price": 0.25, "vat": 21, "step_size": 1},
                {"type": "TIME", "price": 2.00, "step_size": 300}]}]});
        for (name, t) in [("free", tariff()), ("restricted", restricted)] {
            let store = temp_store(&format!("running-{name}")).await;
            registry(&store).await;
            store.put_tariff("default", &t).await.unwrap();
            let engine: Tariff = serde_json::from_value(t).unwrap();
            let id = format!("CS1:{name}");
            let mut s = session(&id, Some("TAG1"), None);
            let mut register = Decimal::from(1000);
            let mut last = None;
            for i in 1..=40i64 {
                let at = (time("2026-03-02T08:00:00Z").unwrap()
                    + chrono::Duration::seconds(97 * i))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                register += Decimal::from(37 + (i * 53) % 211);
                reading(&store, &id, &at, &register.to_string()).await;
                s.energy_wh = register - Decimal::from(1000);
                let running = running_cost(&store, &s, "Europe/Amsterdam", &at)
                    .await
                    .unwrap()
                    .unwrap();
                let mut done = s.clone();
                done.stopped_at = Some(at.clone());
                done.meter_stop_wh = Some(register);
                let ts = periods(&done, &store.session_meter_values(&id).await.unwrap()).unwrap();
                let fin = price(&engine, &ts, Some("Europe/Amsterdam")).unwrap();
                assert_eq!(
                    running,
                    fin.total_cost.incl().round_dp(2),
                    "{name} update {i}"
                );
                last = Some((done, running));
            }
            let (done, running) = last.unwrap();
            let cdr = bill(&store, &done, &OP).await.unwrap().unwrap();
            assert_eq!(
                cdr.total_cost.incl_vat.unwrap().round_dp(2),
                running,
                "{name}: final CDR"
            );
            assert!(running > Decimal::ONE, "{name}: {running}");
        }
    }

    #[test]
    fn position_free_tariffs() {
        let t = |r: Value| -> Tariff {
            serde_json::from_value(json!({"currency": "EUR", "elements": [
                {"price_components": [{"type": "ENERGY", "price": 1, "step_size": 1}], "restrictions": r}]}))
            .unwrap()
        };
        assert!(position_free(&t(json!({}))));
        assert!(position_free(&t(json!({"min_power": 11}))));
        assert!(!position_free(&t(json!({"start_time": "08:00"}))));
        assert!(!position_free(&t(json!({"max_kwh": 10}))));
        assert!(!position_free(&t(json!({"min_duration": 600}))));
        assert!(!position_free(&t(json!({"day_of_week": ["MONDAY"]}))));
    }
}
