//! Pricing and CDRs: every completed session is priced with the OCPI tariff
//! engine (`evproto_ocpi::tariff`) under the tariff `default` (set with
//! `PUT /api/tariffs/default`), in the CSMS's time zone, and gets one CDR.
//! Charging periods come from the stored energy register readings: a
//! period per reading, with the energy since the last.
//!
//! The CDR is built once, here, as a typed OCPI 2.2.1 [`Cdr`]: the
//! station's registered Location ([`crate::roaming::station_location`], the
//! one published to partners), the tariff's currency, the session's token
//! as the store knows it, the charging periods as generated
//! `v221::ChargingPeriod`s (the engine prices those same periods, converted)
//! and the engine's totals. Its JSON is what the `cdrs` table keeps, what
//! the operator API serves and what roaming pushes (converted per partner
//! version); nothing builds a second one.
//!
//! Money (the rule of `evproto_csms_core::money`): the engine prices
//! exactly; the CDR's prices carry at most 4 decimals, each total rounded
//! on its own half away from zero (`Amount::to_v221`); what is charged,
//! held, captured and printed on receipts, and what stations are told as
//! `totalCost` (running and final), is the total incl. VAT rounded once to
//! the currency's minor unit, half away from zero ([`Money`]).
//!
//! Running cost ([`RunningCosts`]): the `default` tariff is parsed once
//! (cached by its body) and each active session keeps its priced periods
//! (`evproto_ocpi::tariff::Pricer`), fed the register readings of each
//! message as it commits; an update prices one open period on top, never
//! the whole session again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use evproto_csms_core::money::{Currency, Money};
use evproto_ocpi::tariff::{price, Priced, Pricer, Session as TariffSession, Tariff, Zone};
use evproto_ocpi::types::{CiString, Str};
use evproto_ocpi::v221;
use evproto_ocpi::v221::Cdr;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

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

/// An energy register reading: when, and the register in Wh.
pub type Reading = (DateTime<Utc>, Decimal);

/// A stored meter value (`Store::session_meter_values`), typed.
#[derive(Debug, serde::Deserialize)]
struct StoredSample {
    timestamp: String,
    measurand: String,
    value: String,
    unit: Option<String>,
}

const REGISTER: &str = "Energy.Active.Import.Register";

/// The energy register readings among stored meter values (other
/// measurands, phases and unreadable values are no readings).
fn readings(meter_values: &[Value]) -> Vec<Reading> {
    meter_values
        .iter()
        .filter_map(|m| StoredSample::deserialize(m).ok())
        .filter(|s| s.measurand == REGISTER)
        .filter_map(|s| {
            Some((
                time(&s.timestamp)?,
                crate::store::to_wh(&s.value, s.unit.as_deref())?,
            ))
        })
        .collect()
}

/// The energy register readings among a message's samples
/// (`TxMessage::samples`: timestamp, measurand, value, unit).
pub fn sample_readings(samples: &[(String, String, String, Option<String>)]) -> Vec<Reading> {
    samples
        .iter()
        .filter(|s| s.1 == REGISTER)
        .filter_map(|s| Some((time(&s.0)?, crate::store::to_wh(&s.2, s.3.as_deref())?)))
        .collect()
}

/// The points a session's periods run between: the start register at the
/// start, the readings strictly inside the session in time order (the
/// first of equal times), the stop register at the stop.
fn points(
    (start, stop): (DateTime<Utc>, DateTime<Utc>),
    (meter_start, meter_stop): (Option<Decimal>, Option<Decimal>),
    readings: &[Reading],
) -> Vec<Reading> {
    let mut points: Vec<Reading> = Vec::new();
    if let Some(wh) = meter_start {
        points.push((start, wh));
    }
    points.extend(readings.iter().filter(|r| r.0 > start && r.0 < stop));
    if let Some(wh) = meter_stop {
        points.push((stop, wh));
    }
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    points
}

fn dimension(kind: v221::CdrDimensionType, volume: Decimal) -> v221::CdrDimension {
    v221::CdrDimension {
        r#type: kind,
        volume,
        extra: Default::default(),
    }
}

fn hours_between(a: DateTime<Utc>, b: DateTime<Utc>) -> Decimal {
    hours_dp(Decimal::from((b - a).num_milliseconds().max(0)) / Decimal::from(3_600_000))
}

/// The charging period between two points: the energy between them (never
/// negative) and the time.
fn period_between(a: Reading, b: Reading) -> v221::ChargingPeriod {
    let kwh = ((b.1 - a.1).max(Decimal::ZERO) / Decimal::from(1000)).normalize();
    v221::ChargingPeriod {
        start_date_time: a.0.into(),
        dimensions: vec![
            dimension(v221::CdrDimensionType::Energy, kwh),
            dimension(v221::CdrDimensionType::Time, hours_between(a.0, b.0)),
        ],
        tariff_id: None,
        extra: Default::default(),
    }
}

/// The charging periods between `points`: one per pair of neighbours, the
/// first from the start (with the first reading's register when there is
/// no start register); with fewer than two points, one period of time.
fn periods_between(
    start: DateTime<Utc>,
    stop: DateTime<Utc>,
    mut points: Vec<Reading>,
) -> Vec<v221::ChargingPeriod> {
    if points.len() < 2 {
        return vec![v221::ChargingPeriod {
            start_date_time: start.into(),
            dimensions: vec![dimension(
                v221::CdrDimensionType::Time,
                hours_between(start, stop),
            )],
            tariff_id: None,
            extra: Default::default(),
        }];
    }
    if points[0].0 > start {
        points.insert(0, (start, points[0].1));
    }
    points
        .windows(2)
        .map(|w| period_between(w[0], w[1]))
        .collect()
}

/// A session's times and charging periods, as its CDR carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrPeriods {
    /// Session start.
    pub start: DateTime<Utc>,
    /// Session end (not before the start).
    pub stop: DateTime<Utc>,
    /// The CDR's charging periods (without `tariff_id`).
    pub periods: Vec<v221::ChargingPeriod>,
}

impl CdrPeriods {
    /// The session the tariff engine prices.
    pub fn session(&self) -> TariffSession {
        TariffSession {
            start_date_time: self.start,
            end_date_time: self.stop,
            charging_periods: self.periods.iter().map(Into::into).collect(),
        }
    }
}

/// The charging periods of a session from its register readings: a period
/// per reading, with the energy since the last.
///
/// # Errors
///
/// [`BillingError::Incomplete`] without a start or stop time.
pub fn periods(session: &Session, meter_values: &[Value]) -> Result<CdrPeriods, BillingError> {
    let start = session
        .started_at
        .ok_or_else(|| BillingError::Incomplete(session.id.clone()))?;
    let stop = session
        .stopped_at
        .ok_or_else(|| BillingError::Incomplete(session.id.clone()))?
        .max(start);
    let points = points(
        (start, stop),
        (session.meter_start_wh, session.meter_stop_wh),
        &readings(meter_values),
    );
    Ok(CdrPeriods {
        start,
        stop,
        periods: periods_between(start, stop, points),
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
        let token = crate::roaming::Roaming::cdr_token(&t);
        let auth = if t.whitelist == evproto_ocpi::v230::WhitelistType::Never {
            v221::AuthMethod::AuthRequest
        } else {
            v221::AuthMethod::Whitelist
        };
        return Ok((token, auth));
    }
    let ty =
        store
            .token(uid)
            .await?
            .map_or(v221::TokenType::Other, |t| match t.token_type.as_str() {
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
        None => crate::roaming::ocpi_evse(
            (
                &op.country_code.to_ascii_uppercase(),
                &op.party_id.to_ascii_uppercase(),
            ),
            &session.station_id,
            (evse_no, connector_no),
            v221::Status::Unknown,
            &evproto_ocpi::types::DateTime(Utc::now()),
        )
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
    /// The tariff in force ([`DefaultTariff::ocpi`]).
    pub tariff: v221::Tariff,
    /// The station's Location ([`crate::roaming::station_location`]).
    pub location: v221::Location,
    /// The token and how it was authorized ([`cdr_token`]).
    pub token: (v221::CdrToken, v221::AuthMethod),
    /// When the CDR is made.
    pub now: DateTime<Utc>,
}

/// Builds the CDR of a priced session (pure: no store).
///
/// # Errors
///
/// [`BillingError::Cdr`], [`BillingError::Location`].
pub fn build_cdr(
    op: &Operator<'_>,
    session: &Session,
    cp: &CdrPeriods,
    priced: &Priced,
    parts: CdrParts,
) -> Result<Cdr, BillingError> {
    let (cc, pid) = (
        op.country_code.to_ascii_uppercase(),
        op.party_id.to_ascii_uppercase(),
    );
    let now = evproto_ocpi::types::DateTime::from(parts.now);
    let tariff = parts.tariff;
    let location = parts.location;
    let charging_periods = cp
        .periods
        .iter()
        .map(|p| v221::ChargingPeriod {
            tariff_id: Some(tariff.id.clone()),
            ..p.clone()
        })
        .collect();
    // the engine's totals, prices as a CDR carries them (≤ 4 decimals)
    let (cdr_token, auth_method) = parts.token;
    let id = cdr_id(&session.id);
    Ok(Cdr {
        country_code: ci("country_code", &cc)?,
        party_id: ci("party_id", &pid)?,
        id: ci("id", &id)?,
        start_date_time: cp.start.into(),
        end_date_time: cp.stop.into(),
        session_id: CiString::new(session.id.as_str()).ok(),
        cdr_token,
        auth_method,
        authorization_reference: None,
        cdr_location: cdr_location(&location, session, op)?,
        meter_id: None,
        currency: tariff.currency.clone(),
        tariffs: vec![tariff],
        charging_periods,
        signed_data: None,
        total_cost: priced.total_cost.to_v221(),
        total_fixed_cost: Some(priced.total_fixed_cost.to_v221()),
        total_energy: priced.total_energy.normalize(),
        total_energy_cost: Some(priced.total_energy_cost.to_v221()),
        total_time: hours_dp(priced.total_time),
        total_time_cost: Some(priced.total_time_cost.to_v221()),
        total_parking_time: Some(hours_dp(priced.total_parking_time)),
        total_parking_cost: Some(priced.total_parking_cost.to_v221()),
        total_reservation_cost: Some(priced.total_reservation_cost.to_v221()),
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
    let tariff = DefaultTariff::parse(&tariff_json, op)?;
    let meter_values = store.session_meter_values(&session.id).await?;
    let cp = periods(session, &meter_values)?;
    let priced = price(&tariff.engine, &cp.session(), Some(op.time_zone))?;
    let location =
        crate::roaming::station_location(store, op.country_code, op.party_id, &session.station_id)
            .await
            .map_err(|e| match e {
                crate::roaming::LocationError::Store(e) => BillingError::Store(e),
                e => BillingError::Location(session.station_id.clone(), e.to_string()),
            })?
            .ok_or_else(|| {
                BillingError::Location(session.station_id.clone(), "not registered".into())
            })?;
    let token = cdr_token(store, session, op).await?;
    let parts = CdrParts {
        tariff: tariff.ocpi.clone(),
        location,
        token,
        now: Utc::now(),
    };
    let cdr = build_cdr(op, session, &cp, &priced, parts)?;
    let body = serde_json::to_value(&cdr).map_err(|e| BillingError::Cdr(e.to_string()))?;
    let excl = priced.total_cost.excl;
    let incl = priced.total_cost.incl();
    if store
        .insert_cdr(&session.id, cdr.currency.as_str(), excl, incl, &body)
        .await?
    {
        // stored as built: the body read back would be this one
        return decode_cdr(body).map(Some);
    }
    // a concurrent bill of the same session won: what it stored
    match store.cdr(&session.id).await? {
        Some(stored) => decode_cdr(stored).map(Some),
        None => Ok(Some(cdr)),
    }
}

/// A tariff as `PUT /api/tariffs/{id}` stores it: an OCPI 2.2.1 Tariff
/// whose envelope (`country_code`, `party_id`, `id`, `last_updated`) the
/// CSMS fills in.
#[derive(Debug, serde::Deserialize)]
struct StoredTariff {
    currency: Str<3>,
    #[serde(default)]
    r#type: Option<v221::TariffType>,
    #[serde(default)]
    tariff_alt_text: Vec<v221::DisplayText>,
    #[serde(default)]
    tariff_alt_url: Option<evproto_ocpi::types::Url>,
    #[serde(default)]
    min_price: Option<v221::Price>,
    #[serde(default)]
    max_price: Option<v221::Price>,
    elements: Vec<v221::TariffElement>,
    #[serde(default)]
    start_date_time: Option<evproto_ocpi::types::DateTime>,
    #[serde(default)]
    end_date_time: Option<evproto_ocpi::types::DateTime>,
    #[serde(default)]
    energy_mix: Option<v221::EnergyMix>,
    #[serde(default)]
    last_updated: Option<evproto_ocpi::types::DateTime>,
}

/// The `default` tariff: the OCPI 2.2.1 Tariff CDRs carry, and the
/// engine's model converted from it.
#[derive(Debug)]
pub struct DefaultTariff {
    /// As CDRs carry it (our party, id `default`).
    pub ocpi: v221::Tariff,
    /// As the engine prices it.
    pub engine: Arc<Tariff>,
    /// ISO 4217 currency: what amounts are rounded to.
    pub currency: Currency,
}

/// The last tariff parsed, by its stored body and party: a running cost is
/// asked for on every `TransactionEvent(Updated)`, and the tariff rarely
/// changes. Keyed by the body itself (the store's tariff row has no version
/// the store API gives out), so a changed tariff is parsed again and a
/// cached one is always the tariff in force.
static TARIFF_CACHE: Mutex<Option<(String, Arc<DefaultTariff>)>> = Mutex::new(None);

impl DefaultTariff {
    /// Reads a stored tariff body (cached by body and party).
    ///
    /// # Errors
    ///
    /// [`BillingError::BadTariff`]: not an OCPI 2.2.1 tariff the engine can
    /// use, or no ISO 4217 currency with minor units.
    pub fn parse(body: &Value, op: &Operator<'_>) -> Result<Arc<DefaultTariff>, BillingError> {
        let key = format!("{}/{}/{body}", op.country_code, op.party_id);
        let mut cache = TARIFF_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, t)) = cache.as_ref() {
            if *k == key {
                return Ok(t.clone());
            }
        }
        let bad = |e: String| BillingError::BadTariff(e);
        let s = StoredTariff::deserialize(body).map_err(|e| bad(e.to_string()))?;
        if s.elements.is_empty() {
            return Err(bad("elements: at least one".into()));
        }
        let currency = Currency::from_code(s.currency.as_str())
            .filter(|c| evproto_csms_core::money::exponent(*c).is_ok())
            .ok_or_else(|| {
                bad(format!(
                    "currency: {} is no ISO 4217 code",
                    s.currency.as_str()
                ))
            })?;
        let ocpi = v221::Tariff {
            country_code: CiString::new(op.country_code.to_ascii_uppercase())
                .map_err(|e| bad(format!("country_code: {e}")))?,
            party_id: CiString::new(op.party_id.to_ascii_uppercase())
                .map_err(|e| bad(format!("party_id: {e}")))?,
            id: CiString::new("default").map_err(|e| bad(e.to_string()))?,
            currency: s.currency,
            r#type: s.r#type,
            tariff_alt_text: s.tariff_alt_text,
            tariff_alt_url: s.tariff_alt_url,
            min_price: s.min_price,
            max_price: s.max_price,
            elements: s.elements,
            start_date_time: s.start_date_time,
            end_date_time: s.end_date_time,
            energy_mix: s.energy_mix,
            last_updated: s.last_updated.unwrap_or_else(|| Utc::now().into()),
            extra: Default::default(),
        };
        let engine = Arc::new(Tariff::try_from(&ocpi).map_err(|e| bad(e.to_string()))?);
        let t = Arc::new(DefaultTariff {
            ocpi,
            engine,
            currency,
        });
        *cache = Some((key, t.clone()));
        Ok(t)
    }
}

/// The running price of one active session: the readings so far and the
/// engine's [`Pricer`] fed the periods between them as they arrive, so a
/// running cost costs the same at the first update and the thousandth.
#[derive(Debug)]
struct Running {
    /// The tariff it prices under (a changed tariff re-prices the readings).
    tariff: Arc<DefaultTariff>,
    start: DateTime<Utc>,
    meter_start: Option<Decimal>,
    /// Readings strictly after the start, in time order, one per time (the
    /// first seen).
    readings: Vec<Reading>,
    /// The periods between the points so far (the start, the readings).
    pricer: Pricer<Arc<Tariff>>,
    /// The last point a period was pushed up to.
    last: Option<Reading>,
    zone: Zone,
}

impl Running {
    fn new(
        tariff: Arc<DefaultTariff>,
        start: DateTime<Utc>,
        meter_start: Option<Decimal>,
        zone: Zone,
        readings: Vec<Reading>,
    ) -> Result<Running, BillingError> {
        let mut r = Running {
            pricer: Pricer::new(vec![tariff.engine.clone()], start, &zone)?.without_lines(),
            tariff,
            start,
            meter_start,
            readings: Vec::new(),
            last: meter_start.map(|wh| (start, wh)),
            zone,
        };
        for reading in readings {
            r.observe(reading)?;
        }
        Ok(r)
    }

    /// Prices the readings again from the start (a reading older than the
    /// last, or another tariff).
    fn rebuild(&mut self, tariff: Arc<DefaultTariff>) -> Result<(), BillingError> {
        let readings = std::mem::take(&mut self.readings);
        *self = Running::new(
            tariff,
            self.start,
            self.meter_start,
            self.zone.clone(),
            readings,
        )?;
        Ok(())
    }

    /// Takes one more reading: appended (a period pushed) when it is the
    /// newest, else the readings are priced again.
    fn observe(&mut self, reading: Reading) -> Result<(), BillingError> {
        if reading.0 <= self.start {
            return Ok(()); // not inside the session
        }
        match self.readings.binary_search_by_key(&reading.0, |r| r.0) {
            Ok(_) => Ok(()), // the first reading of a time counts
            Err(i) if i == self.readings.len() => {
                self.readings.push(reading);
                let from = match self.last {
                    Some(p) => p,
                    // no start register: the first reading stands for it
                    None => (self.start, reading.1),
                };
                self.pricer
                    .push((&period_between(from, reading)).into(), Some(0))?;
                self.last = Some(reading);
                Ok(())
            }
            Err(i) => {
                self.readings.insert(i, reading);
                let tariff = self.tariff.clone();
                self.rebuild(tariff)
            }
        }
    }

    /// The price if the session ended at `end` with the register at
    /// `end_wh`: the pricer's total with one open period to `end`.
    fn price_at(
        &self,
        end: DateTime<Utc>,
        end_wh: Option<Decimal>,
    ) -> Result<Priced, BillingError> {
        let end = end.max(self.start);
        let count = usize::from(self.meter_start.is_some())
            + self.readings.len()
            + usize::from(end_wh.is_some());
        let newest = self.readings.last().map_or(self.start, |r| r.0);
        if count < 2 || newest >= end {
            // one period of time, or readings at or after the end: the
            // periods as the bill makes them
            let pts = points(
                (self.start, end),
                (self.meter_start, end_wh),
                &self.readings,
            );
            let cp = CdrPeriods {
                start: self.start,
                stop: end,
                periods: periods_between(self.start, end, pts),
            };
            return Ok(price(
                &self.tariff.engine,
                &cp.session(),
                zone_name(&self.zone),
            )?);
        }
        let open = match (self.last, end_wh) {
            (Some(from), Some(wh)) => Some((&period_between(from, (end, wh))).into()),
            _ => None,
        };
        Ok(self.pricer.total_at(open, end)?)
    }
}

fn zone_name(z: &Zone) -> Option<&str> {
    match z {
        Zone::Named(n) => Some(n),
        _ => None,
    }
}

/// The running prices of active sessions (held by
/// [`crate::sessions::Sessions`]): built once per session from the stored
/// readings, then fed the readings of each message as it is committed
/// ([`RunningCosts::observe`]), dropped when the session completes.
#[derive(Debug, Default)]
pub struct RunningCosts {
    sessions: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
}

/// A session's running price, or the readings seen while it is loaded.
#[derive(Debug, Default)]
struct Slot {
    running: Option<Running>,
    pending: Vec<Reading>,
}

impl RunningCosts {
    /// How many sessions have a running price held.
    pub fn held(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Feeds committed samples of a session (`TxMessage::samples`) to its
    /// running price, when one is held.
    pub fn observe(&self, session_id: &str, samples: &[(String, String, String, Option<String>)]) {
        let slot = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session_id)
            .cloned();
        let Some(slot) = slot else { return };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        for r in sample_readings(samples) {
            let failed = match slot.running.as_mut() {
                Some(running) => running.observe(r).is_err(),
                None => {
                    slot.pending.push(r);
                    false
                }
            };
            if failed {
                // priced again from the store at the next update
                slot.running = None;
            }
        }
    }

    /// Drops a session's running price (it completed).
    pub fn forget(&self, session_id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
    }

    /// Drops every running price of a station's sessions (`{station}:`).
    pub fn forget_station(&self, station: &str) {
        let prefix = format!("{station}:");
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// The running cost of an active session as of `now`, under the
    /// `default` tariff: the total incl. VAT rounded once to the currency's
    /// minor unit, what 2.x stations get as `totalCost` in the
    /// TransactionEvent answers (OCPP 2.0.1 E01/I03 "running cost"). `None`
    /// without a tariff.
    ///
    /// The session's readings are read from the store once (its first
    /// update, or after the tariff changed); afterwards each update prices
    /// one open period on top of the periods priced so far
    /// ([`Pricer::total_at`]), the same price as the whole session priced
    /// at once (tested).
    ///
    /// # Errors
    ///
    /// [`BillingError`].
    pub async fn cost(
        &self,
        store: &Store,
        session: &Session,
        op: &Operator<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Money>, BillingError> {
        let Some(tariff_json) = store.tariff("default").await? else {
            return Ok(None);
        };
        let tariff = DefaultTariff::parse(&tariff_json, op)?;
        let start = session
            .started_at
            .ok_or_else(|| BillingError::Incomplete(session.id.clone()))?;
        let end = session.stopped_at.unwrap_or(now);
        let end_wh = session
            .meter_stop_wh
            .or(session.meter_start_wh.map(|m| m + session.energy_wh));
        let slot = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(session.id.clone())
            .or_default()
            .clone();
        let loaded = {
            let mut g = slot.lock().unwrap_or_else(|e| e.into_inner());
            match g.running.as_mut() {
                Some(r) if r.start == start && r.meter_start == session.meter_start_wh => {
                    if r.tariff.engine != tariff.engine || r.tariff.currency != tariff.currency {
                        r.rebuild(tariff.clone())?;
                    }
                    Some(r.price_at(end, end_wh)?)
                }
                _ => {
                    g.running = None;
                    None
                }
            }
        };
        let priced = match loaded {
            Some(p) => p,
            None => {
                // first update here: the readings so far, once
                let stored = readings(&store.session_meter_values(&session.id).await?);
                let mut g = slot.lock().unwrap_or_else(|e| e.into_inner());
                let mut all = stored;
                all.append(&mut g.pending);
                let zone = Zone::Named(op.time_zone.to_owned());
                let mut running = Running::new(
                    tariff.clone(),
                    start,
                    session.meter_start_wh,
                    zone,
                    Vec::new(),
                )?;
                for r in all {
                    running.observe(r)?;
                }
                let p = running.price_at(end, end_wh)?;
                g.running = Some(running);
                p
            }
        };
        if session.stopped_at.is_some() {
            // ended already (its end came first): nothing more to follow
            self.forget(&session.id);
        }
        Ok(Some(
            Money::try_round(priced.total_cost.incl(), tariff.currency)
                .map_err(|e| BillingError::BadTariff(e.to_string()))?,
        ))
    }
}

/// Checks a tariff body for `PUT /api/tariffs/{id}`: the OCPI 2.2.1
/// Tariff it is (its owner and id are placeholders the publisher sets,
/// [`crate::roaming::Roaming::tariff_changed`]).
///
/// # Errors
///
/// The reason it is not an OCPI tariff the engine can use.
pub fn check_tariff(v: &Value) -> Result<v221::Tariff, String> {
    let op = Operator {
        country_code: "NL",
        party_id: "EVP",
        time_zone: "UTC",
    };
    DefaultTariff::parse(v, &op)
        .map(|t| t.ocpi.clone())
        .map_err(|e| match e {
            BillingError::BadTariff(e) => e,
            e => e.to_string(),
        })
}

/// The decimal of a JSON number or numeric string (CDR amounts are
/// numbers; older stored ones are strings).
pub fn dec(v: &Value) -> Option<Decimal> {
    evproto_ocpi::tariff::to_decimal(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let place: crate::roaming::Place = serde_json::from_value(place).unwrap();
        store.put_place("CS1", &place.to_stored()).await.unwrap();
        store.put_tariff("default", &tariff()).await.unwrap();
        store
            .upsert_token(&crate::store::TokenRecord {
                id_token: "TAG1".into(),
                token_type: "ISO14443".into(),
                status: "Accepted".into(),
                group_id: None,
                expires_at: None,
                allow_concurrent: false,
                language: None,
                created_at: String::new(),
            })
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
                crate::store::SessionStatus::Completed
            } else {
                crate::store::SessionStatus::Active
            },
            started_at: time("2026-03-02T08:00:00Z"),
            stopped_at: stop.and_then(|s| time(s.0)),
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
        assert_eq!(l.address, loc.address);
        assert_eq!(l.city.as_str(), "Utrecht");
        assert_eq!(l.postal_code.as_ref().unwrap().as_str(), "3511 AA");
        assert_eq!(l.coordinates.latitude.as_str(), "52.089444");
        assert_eq!(l.evse_uid, loc.evses[0].uid);
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
        let t = Tariff::from_json(&tariff()).unwrap();
        let cp = periods(&s, &store.session_meter_values("CS1:1").await.unwrap()).unwrap();
        assert_eq!(cp.periods.len(), 2);
        let p = price(&t, &cp.session(), Some("Europe/Amsterdam")).unwrap();
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
            "contract_id": "DE-EMS-C0001", "issuer": "e", "valid": true, "whitelist": "NEVER",
            "last_updated": "2026-03-01T00:00:00Z"});
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

    fn restricted() -> Value {
        json!({"currency": "EUR", "elements": [
            {"price_components": [{"type": "ENERGY", "price": 0.50, "vat": 21, "step_size": 1}],
             "restrictions": {"start_time": "09:20", "end_time": "09:50", "min_kwh": 2}},
            {"price_components": [{"type": "FLAT", "price": 0.25, "step_size": 1},
                {"type": "ENERGY", "price": 0.25, "vat": 21, "step_size": 1},
                {"type": "TIME", "price": 2.00, "step_size": 300}]}]})
    }

    /// Running cost after each of N updates (readings fed as the messages
    /// commit them, the store read once) equals the price of the session's
    /// periods so far priced at once (the final bill's computation), under
    /// a plain tariff and one with time and energy restrictions; the final
    /// CDR charges what the last running cost said.
    #[tokio::test]
    async fn running_cost_equals_final_price() {
        for (name, t) in [("free", tariff()), ("restricted", restricted())] {
            let store = temp_store(&format!("running-{name}")).await;
            registry(&store).await;
            store.put_tariff("default", &t).await.unwrap();
            let engine = Tariff::from_json(&t).unwrap();
            let running = RunningCosts::default();
            let id = format!("CS1:{name}");
            let mut s = session(&id, Some("TAG1"), None);
            let mut register = Decimal::from(1000);
            let mut last = None;
            for i in 1..=40i64 {
                let at = (time("2026-03-02T08:00:00Z").unwrap()
                    + chrono::Duration::seconds(97 * i))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                register += Decimal::from(37 + (i * 53) % 211);
                let sample = (
                    at.clone(),
                    REGISTER.to_owned(),
                    register.to_string(),
                    Some("Wh".to_owned()),
                );
                reading(&store, &id, &at, &register.to_string()).await;
                running.observe(&id, std::slice::from_ref(&sample));
                s.energy_wh = register - Decimal::from(1000);
                let now = time(&at).unwrap();
                let cost = running.cost(&store, &s, &OP, now).await.unwrap().unwrap();
                let mut done = s.clone();
                done.stopped_at = Some(now);
                done.meter_stop_wh = Some(register);
                let cp = periods(&done, &store.session_meter_values(&id).await.unwrap()).unwrap();
                let fin = price(&engine, &cp.session(), Some("Europe/Amsterdam")).unwrap();
                let eur = Currency::from_code("EUR").unwrap();
                let gbp = Currency::from_code("GBP").unwrap();
                let cur = if name == "free" { gbp } else { eur };
                assert_eq!(
                    cost,
                    Money::round(fin.total_cost.incl(), cur),
                    "{name} update {i}"
                );
                last = Some((done, cost));
            }
            assert_eq!(running.held(), 1);
            let (done, cost) = last.unwrap();
            let cdr = bill(&store, &done, &OP).await.unwrap().unwrap();
            let charged =
                Money::parse(cdr.total_cost.incl_vat.unwrap(), cdr.currency.as_str()).unwrap();
            assert_eq!(charged, cost, "{name}: final CDR");
            assert!(cost.minor() > 100, "{name}: {cost}");
            running.forget(&id);
            assert_eq!(running.held(), 0);
        }
    }

    /// Over random meter sequences (readings late, duplicated, out of
    /// order, at the same time, with and without a start register, under
    /// a restricted and a plain tariff): the running price after each
    /// reading is exactly the price of the session so far priced at once.
    #[test]
    fn incremental_price_is_the_price_at_once() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let start = time("2026-03-02T08:00:00Z").unwrap();
        for round in 0..300 {
            let body = if round % 2 == 0 {
                restricted()
            } else {
                tariff()
            };
            let t = DefaultTariff::parse(&body, &OP).unwrap();
            let meter_start = (next(4) != 0).then(|| Decimal::from(next(5000)));
            let zone = Zone::Named("Europe/Amsterdam".into());
            let mut running =
                Running::new(t.clone(), start, meter_start, zone, Vec::new()).unwrap();
            let mut seen: Vec<Reading> = Vec::new();
            let mut at = start;
            let mut register = meter_start.unwrap_or(Decimal::from(700));
            for _ in 0..(1 + next(30)) {
                let r = match next(10) {
                    // a duplicate of one seen, or a late one from before
                    0 if !seen.is_empty() => seen[next(seen.len() as u64) as usize],
                    1 => (
                        at - chrono::Duration::seconds(1 + next(900) as i64),
                        register,
                    ),
                    2 => (at, register + Decimal::from(next(50))), // same time, another value
                    _ => {
                        at += chrono::Duration::milliseconds(1 + next(1_800_000) as i64);
                        register += Decimal::new(next(40_000) as i64, 1);
                        (at, register)
                    }
                };
                seen.push(r);
                running.observe(r).unwrap();
                let end = at + chrono::Duration::seconds(next(600) as i64);
                let end_wh = meter_start.map(|_| register + Decimal::from(next(100)));
                let got = running.price_at(end, end_wh).unwrap();
                // at once: the readings in the order they came, first of a time kept
                let mut firsts: Vec<Reading> = Vec::new();
                for r in &seen {
                    if r.0 > start && !firsts.iter().any(|f| f.0 == r.0) {
                        firsts.push(*r);
                    }
                }
                let pts = points((start, end), (meter_start, end_wh), &firsts);
                let cp = CdrPeriods {
                    start,
                    stop: end,
                    periods: periods_between(start, end, pts),
                };
                let want = price(&t.engine, &cp.session(), Some("Europe/Amsterdam")).unwrap();
                assert_eq!(got.total_cost, want.total_cost, "round {round}");
                assert_eq!(got.total_energy, want.total_energy, "round {round}");
                assert_eq!(got.total_time, want.total_time, "round {round}");
            }
        }
    }
}
