//! Local cost of a simulated 2.1 station (OCPP 2.1 block I, "local cost
//! calculation"): the tariffs the CSMS sets (`SetDefaultTariff` per EVSE,
//! `ChangeTransactionTariff` per transaction), read back with `GetTariffs`
//! and removed with `ClearTariffs`; at the end of a transaction the station
//! prices what it metered under the tariff it holds ([`price`]) and reports
//! it as `costDetails` in `TransactionEvent(Ended)`, and, with a payment
//! terminal ([`LocalCostBehaviour::settlement`]), settles that amount with
//! `NotifySettlement`.
//!
//! The pricing is the station's own reading of a 2.1 `TariffType`, written
//! from the 2.1 data types alone (it shares no code with the CSMS's OCPI
//! engine, so a CSMS can test its conversion against it):
//!
//! - a transaction's periods run between the energy register readings the
//!   station sent (start, each meter value, end); each period is charging
//!   time (the simulated car draws power the whole session, and the CSMS
//!   counts every period between readings as charging time too);
//! - per dimension (energy, charging time) a period is priced by the
//!   **first** price in list order whose conditions hold at the period's
//!   start; the fixed fee is charged once, the first price that holds at a
//!   period's start, in period order;
//! - conditions: time of day (`startTimeOfDay` inclusive, `endTimeOfDay`
//!   exclusive, wrapping past midnight, `00:00` as end = end of day, equal
//!   = the whole day), `dayOfWeek`, `validFromDate` (incl.) /
//!   `validToDate` (excl.), in the station's clock, which is UTC;
//!   `minEnergy` (incl.) / `maxEnergy` (excl.) on the Wh before the period;
//!   `minTime` (incl.) / `maxTime` (excl.) on the seconds of transaction
//!   before it. Any other condition (current, power, charging or idle
//!   time, EVSE kind, payment brand or recognition) and taxes stacked above
//!   0 are [`Unsupported`]: such a tariff is refused with
//!   `ConditionNotSupported`;
//! - taxes per dimension: the sum of its stack-0 rates, on that
//!   dimension's cost;
//! - `minCost` / `maxCost` clamp the total, excl. and incl. tax each (the
//!   incl. total never below the excl. one; without tax it is the excl.
//!   total);
//! - amounts are exact while priced; the report rounds each to cents,
//!   half away from zero.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};
use evproto_ocpp_types::v21;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

/// An energy register reading: when, and the register in Wh.
pub type Point = (DateTime<Utc>, Decimal);

/// How a simulated 2.1 station calculates and settles costs (off by
/// default: the station then answers the tariff calls `Rejected` and
/// reports no `costDetails`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalCostBehaviour {
    /// Local cost calculation enabled (`TariffCostCtrlr.Enabled` reads
    /// `true` in its device model, which is how a CSMS finds out).
    pub enabled: bool,
    /// Added to the total the station reports, incl. and excl. tax (a
    /// station that misreports; 0: it reports what it priced).
    pub misreport: Decimal,
    /// A payment terminal: each priced transaction is settled with
    /// `NotifySettlement` (its amount the reported total incl. tax).
    pub settlement: bool,
}

/// A tariff the station cannot apply (answered `ConditionNotSupported`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not supported: {}", self.0)
    }
}

impl std::error::Error for Unsupported {}

fn time_of_day(s: &str) -> Result<NaiveTime, Unsupported> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| Unsupported(format!("time of day {s}")))
}

fn date(s: &str) -> Result<NaiveDate, Unsupported> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| Unsupported(format!("date {s}")))
}

fn weekday(d: v21::DayOfWeekEnumType) -> Weekday {
    match d {
        v21::DayOfWeekEnumType::Monday => Weekday::Mon,
        v21::DayOfWeekEnumType::Tuesday => Weekday::Tue,
        v21::DayOfWeekEnumType::Wednesday => Weekday::Wed,
        v21::DayOfWeekEnumType::Thursday => Weekday::Thu,
        v21::DayOfWeekEnumType::Friday => Weekday::Fri,
        v21::DayOfWeekEnumType::Saturday => Weekday::Sat,
        _ => Weekday::Sun,
    }
}

/// Where a period stands when a condition is judged.
#[derive(Debug, Clone, Copy)]
struct At {
    when: DateTime<Utc>,
    wh_before: Decimal,
    secs_before: i64,
}

/// The calendar fields of a 2.1 condition, as sent.
struct Calendar<'a> {
    start: Option<&'a str>,
    end: Option<&'a str>,
    days: Option<&'a [v21::DayOfWeekEnumType]>,
    from: Option<&'a str>,
    to: Option<&'a str>,
}

/// The conditions this station understands, read from either 2.1 shape.
#[derive(Debug, Default)]
struct Conditions {
    start: Option<NaiveTime>,
    end: Option<NaiveTime>,
    days: Vec<Weekday>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    min_wh: Option<Decimal>,
    max_wh: Option<Decimal>,
    min_s: Option<i64>,
    max_s: Option<i64>,
}

impl Conditions {
    fn of(c: &v21::TariffConditionsType) -> Result<Conditions, Unsupported> {
        let unsupported = [
            ("minCurrent", c.min_current.is_some()),
            ("maxCurrent", c.max_current.is_some()),
            ("minPower", c.min_power.is_some()),
            ("maxPower", c.max_power.is_some()),
            ("minChargingTime", c.min_charging_time.is_some()),
            ("maxChargingTime", c.max_charging_time.is_some()),
            ("minIdleTime", c.min_idle_time.is_some()),
            ("maxIdleTime", c.max_idle_time.is_some()),
            ("evseKind", c.evse_kind.is_some()),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(Unsupported(format!("condition {name}")));
        }
        Ok(Conditions {
            min_wh: c.min_energy,
            max_wh: c.max_energy,
            min_s: c.min_time.map(i64::from),
            max_s: c.max_time.map(i64::from),
            ..Conditions::calendar(Calendar {
                start: c.start_time_of_day.as_deref(),
                end: c.end_time_of_day.as_deref(),
                days: c.day_of_week.as_deref(),
                from: c.valid_from_date.as_deref(),
                to: c.valid_to_date.as_deref(),
            })?
        })
    }

    fn of_fixed(c: &v21::TariffConditionsFixedType) -> Result<Conditions, Unsupported> {
        if c.evse_kind.is_some() || c.payment_brand.is_some() || c.payment_recognition.is_some() {
            return Err(Unsupported(
                "fixed-fee condition on EVSE kind or payment".into(),
            ));
        }
        Conditions::calendar(Calendar {
            start: c.start_time_of_day.as_deref(),
            end: c.end_time_of_day.as_deref(),
            days: c.day_of_week.as_deref(),
            from: c.valid_from_date.as_deref(),
            to: c.valid_to_date.as_deref(),
        })
    }

    /// The time-of-day, weekday and date conditions both shapes have.
    fn calendar(c: Calendar<'_>) -> Result<Conditions, Unsupported> {
        Ok(Conditions {
            start: c.start.map(time_of_day).transpose()?,
            end: c.end.map(time_of_day).transpose()?,
            days: c.days.into_iter().flatten().map(|d| weekday(*d)).collect(),
            from: c.from.map(date).transpose()?,
            to: c.to.map(date).transpose()?,
            ..Conditions::default()
        })
    }

    fn hold(&self, at: At) -> bool {
        let local = at.when.naive_utc();
        let t = local.time();
        let in_day = match (self.start, self.end) {
            (None, None) => true,
            (Some(s), None) => t >= s,
            (None, Some(e)) => e == NaiveTime::MIN || t < e,
            (Some(s), Some(e)) if s == e => true,
            (Some(s), Some(e)) if e == NaiveTime::MIN => t >= s,
            (Some(s), Some(e)) if s < e => t >= s && t < e,
            (Some(s), Some(e)) => t >= s || t < e,
        };
        in_day
            && (self.days.is_empty() || self.days.contains(&local.weekday()))
            && self.from.is_none_or(|d| local.date() >= d)
            && self.to.is_none_or(|d| local.date() < d)
            && self.min_wh.is_none_or(|w| at.wh_before >= w)
            && self.max_wh.is_none_or(|w| at.wh_before < w)
            && self.min_s.is_none_or(|s| at.secs_before >= s)
            && self.max_s.is_none_or(|s| at.secs_before < s)
    }
}

/// The sum of a dimension's tax rates (stack 0 only).
fn tax(rates: Option<&Vec<v21::TaxRateType>>) -> Result<Decimal, Unsupported> {
    let mut sum = Decimal::ZERO;
    for r in rates.into_iter().flatten() {
        if r.stack.unwrap_or(0) != 0 {
            return Err(Unsupported("stacked taxes".into()));
        }
        sum += r.tax;
    }
    Ok(sum)
}

/// A tariff read for pricing: per dimension its prices with conditions,
/// and its tax.
struct Readable {
    energy: Vec<(Decimal, Conditions)>,
    energy_tax: Decimal,
    time: Vec<(Decimal, Conditions)>,
    time_tax: Decimal,
    fixed: Vec<(Decimal, Conditions)>,
    fixed_tax: Decimal,
}

fn readable(t: &v21::TariffType) -> Result<Readable, Unsupported> {
    if t.reservation_time.is_some() || t.reservation_fixed.is_some() {
        return Err(Unsupported("reservation prices".into()));
    }
    let timed = |p: Option<&v21::TariffTimeType>| -> Result<_, Unsupported> {
        let Some(p) = p else {
            return Ok((Vec::new(), Decimal::ZERO));
        };
        let prices = p
            .prices
            .iter()
            .map(|x| {
                let c = x.conditions.as_ref().map(Conditions::of).transpose()?;
                Ok((x.price_minute, c.unwrap_or_default()))
            })
            .collect::<Result<_, Unsupported>>()?;
        Ok((prices, tax(p.tax_rates.as_ref())?))
    };
    let (time, time_tax) = timed(t.charging_time.as_ref())?;
    // idle time is read (so a tariff with it is accepted) but never priced:
    // every period is charging time
    timed(t.idle_time.as_ref())?;
    let (energy, energy_tax) = match &t.energy {
        Some(e) => (
            e.prices
                .iter()
                .map(|x| {
                    let c = x.conditions.as_ref().map(Conditions::of).transpose()?;
                    Ok((x.price_kwh, c.unwrap_or_default()))
                })
                .collect::<Result<_, Unsupported>>()?,
            tax(e.tax_rates.as_ref())?,
        ),
        None => (Vec::new(), Decimal::ZERO),
    };
    let (fixed, fixed_tax) = match &t.fixed_fee {
        Some(f) => (
            f.prices
                .iter()
                .map(|x| {
                    let c = x
                        .conditions
                        .as_ref()
                        .map(Conditions::of_fixed)
                        .transpose()?;
                    Ok((x.price_fixed, c.unwrap_or_default()))
                })
                .collect::<Result<_, Unsupported>>()?,
            tax(f.tax_rates.as_ref())?,
        ),
        None => (Vec::new(), Decimal::ZERO),
    };
    Ok(Readable {
        energy,
        energy_tax,
        time,
        time_tax,
        fixed,
        fixed_tax,
    })
}

/// Whether this station can apply `tariff`.
///
/// # Errors
///
/// [`Unsupported`]: a condition or tax it does not understand.
pub fn check(tariff: &v21::TariffType) -> Result<(), Unsupported> {
    readable(tariff).map(|_| ())
}

/// A transaction's cost as the station priced it, exact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cost {
    /// Fixed fee, excl. tax.
    pub fixed: Decimal,
    /// Energy, excl. tax.
    pub energy: Decimal,
    /// Charging time, excl. tax.
    pub charging_time: Decimal,
    /// The total excl. tax, after `minCost`/`maxCost`.
    pub excl: Decimal,
    /// The total incl. tax, after `minCost`/`maxCost`.
    pub incl: Decimal,
    /// Which bound set the total.
    pub kind: Option<v21::TariffCostEnumType>,
    /// Energy, Wh.
    pub energy_wh: Decimal,
    /// Seconds from the first reading to the last.
    pub seconds: i64,
}

/// Prices the periods between `points` (time order; fewer than two: no
/// energy and no time) under `tariff`.
///
/// # Errors
///
/// [`Unsupported`], as [`check`].
pub fn price(tariff: &v21::TariffType, points: &[Point]) -> Result<Cost, Unsupported> {
    let r = readable(tariff)?;
    let mut cost = Cost::default();
    let mut fixed = None;
    let first = points.first().copied();
    for w in points.windows(2) {
        let ((t0, wh0), (t1, wh1)) = (w[0], w[1]);
        let (start, wh_start) = first.unwrap_or((t0, wh0));
        let at = At {
            when: t0,
            wh_before: (wh0 - wh_start).max(Decimal::ZERO),
            secs_before: (t0 - start).num_seconds(),
        };
        let wh = (wh1 - wh0).max(Decimal::ZERO);
        let ms = (t1 - t0).num_milliseconds().max(0);
        cost.energy_wh += wh;
        if let Some((p, _)) = r.energy.iter().find(|(_, c)| c.hold(at)) {
            cost.energy += wh / Decimal::from(1000) * p;
        }
        if let Some((p, _)) = r.time.iter().find(|(_, c)| c.hold(at)) {
            cost.charging_time += Decimal::from(ms) / Decimal::from(60_000) * p;
        }
        if fixed.is_none() {
            fixed = r.fixed.iter().find(|(_, c)| c.hold(at)).map(|(p, _)| *p);
        }
    }
    if let (Some((t0, _)), Some((t1, _))) = (points.first(), points.last()) {
        cost.seconds = (*t1 - *t0).num_seconds();
    }
    cost.fixed = fixed.unwrap_or_default();
    let hundred = Decimal::from(100);
    let with = |x: Decimal, t: Decimal| x + x * t / hundred;
    cost.excl = cost.fixed + cost.energy + cost.charging_time;
    cost.incl = with(cost.fixed, r.fixed_tax)
        + with(cost.energy, r.energy_tax)
        + with(cost.charging_time, r.time_tax);
    cost.kind = Some(v21::TariffCostEnumType::NormalCost);
    let (excl, incl) = (cost.excl, cost.incl);
    if let Some(m) = &tariff.min_cost {
        if let Some(x) = m.excl_tax {
            cost.excl = cost.excl.max(x);
        }
        if let Some(i) = m.incl_tax {
            cost.incl = cost.incl.max(i);
        }
        if (cost.excl, cost.incl) != (excl, incl) {
            cost.kind = Some(v21::TariffCostEnumType::MinCost);
        }
    }
    if let Some(m) = &tariff.max_cost {
        let before = (cost.excl, cost.incl);
        if let Some(x) = m.excl_tax {
            cost.excl = cost.excl.min(x);
        }
        if let Some(i) = m.incl_tax {
            cost.incl = cost.incl.min(i);
        }
        if (cost.excl, cost.incl) != before {
            cost.kind = Some(v21::TariffCostEnumType::MaxCost);
        }
    }
    // without tax the total incl. tax is the total excl. tax, bounds or not
    cost.incl = if incl == excl {
        cost.excl
    } else {
        cost.incl.max(cost.excl)
    };
    Ok(cost)
}

/// To cents, half away from zero.
fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// The `costDetails` a station reports for `cost` in `currency`, with
/// `misreport` added to both totals (see [`LocalCostBehaviour::misreport`]).
pub fn cost_details(
    tariff: &v21::TariffType,
    cost: &Cost,
    misreport: Decimal,
) -> v21::CostDetailsType {
    let part = |x: Decimal| {
        Some(v21::PriceType {
            excl_tax: Some(cents(x)),
            incl_tax: None,
            tax_rates: None,
            custom_data: None,
        })
    };
    v21::CostDetailsType {
        charging_periods: None,
        total_cost: v21::TotalCostType {
            currency: tariff.currency.clone(),
            type_of_cost: cost.kind.unwrap_or(v21::TariffCostEnumType::NormalCost),
            fixed: part(cost.fixed),
            energy: part(cost.energy),
            charging_time: part(cost.charging_time),
            idle_time: None,
            reservation_time: None,
            reservation_fixed: None,
            total: v21::TotalPriceType {
                excl_tax: Some(cents(cost.excl + misreport)),
                incl_tax: Some(cents(cost.incl + misreport)),
                custom_data: None,
            },
            custom_data: None,
        },
        total_usage: v21::TotalUsageType {
            energy: cost.energy_wh.normalize(),
            charging_time: i32::try_from(cost.seconds).unwrap_or(i32::MAX),
            idle_time: 0,
            reservation_time: None,
            custom_data: None,
        },
        failure_to_calculate: None,
        failure_reason: None,
        custom_data: None,
    }
}

/// The tariffs a station holds and the readings of its open transactions.
#[derive(Debug, Default)]
pub struct TariffState {
    /// Default tariffs by EVSE (0: every EVSE).
    defaults: BTreeMap<i32, v21::TariffType>,
    /// Driver tariffs by transaction (`ChangeTransactionTariff`), with the
    /// EVSE of the transaction.
    drivers: HashMap<String, (u32, v21::TariffType)>,
    /// Readings sent so far per open transaction.
    points: HashMap<String, Vec<Point>>,
}

fn decode<T: serde::de::DeserializeOwned>(req: &Value) -> Option<T> {
    evproto_ocpp_types::from_str(&req.to_string()).ok()
}

fn rejected(reason: &str) -> Value {
    json!({"status": "Rejected", "statusInfo": {"reasonCode": reason}})
}

impl TariffState {
    /// A CSMS call this module answers (`None`: not one of them).
    /// `open` are the station's open transactions: (transaction id, EVSE).
    pub fn on_call(
        &mut self,
        behaviour: &LocalCostBehaviour,
        open: &[(String, u32)],
        action: &str,
        req: &Value,
    ) -> Option<Value> {
        if !matches!(
            action,
            "SetDefaultTariff" | "ChangeTransactionTariff" | "GetTariffs" | "ClearTariffs"
        ) {
            return None;
        }
        if !behaviour.enabled {
            return Some(match action {
                "ClearTariffs" => {
                    json!({"clearTariffsResult": [{"status": "Rejected", "statusInfo": {"reasonCode": "NotEnabled"}}]})
                }
                _ => rejected("NotEnabled"),
            });
        }
        Some(match action {
            "SetDefaultTariff" => {
                let Some(r) = decode::<v21::SetDefaultTariffRequest>(req) else {
                    return Some(rejected("InvalidRequest"));
                };
                if let Err(e) = check(&r.tariff) {
                    return Some(
                        json!({"status": "ConditionNotSupported", "statusInfo": {"reasonCode": "Unsupported", "additionalInfo": e.0}}),
                    );
                }
                let same_id_other_content = self
                    .defaults
                    .values()
                    .chain(self.drivers.values().map(|d| &d.1))
                    .any(|t| t.tariff_id == r.tariff.tariff_id && *t != r.tariff);
                if same_id_other_content {
                    return Some(json!({"status": "DuplicateTariffId"}));
                }
                self.defaults.insert(r.evse_id, r.tariff);
                json!({"status": "Accepted"})
            }
            "ChangeTransactionTariff" => {
                let Some(r) = decode::<v21::ChangeTransactionTariffRequest>(req) else {
                    return Some(rejected("InvalidRequest"));
                };
                let tx = r.transaction_id.as_str();
                let Some((_, evse)) = open.iter().find(|(id, _)| id == tx) else {
                    return Some(json!({"status": "TxNotFound"}));
                };
                if let Err(e) = check(&r.tariff) {
                    return Some(
                        json!({"status": "ConditionNotSupported", "statusInfo": {"reasonCode": "Unsupported", "additionalInfo": e.0}}),
                    );
                }
                if let Some(now) = self.tariff_for(tx, *evse) {
                    if now.currency != r.tariff.currency {
                        return Some(json!({"status": "NoCurrencyChange"}));
                    }
                }
                self.drivers.insert(tx.to_owned(), (*evse, r.tariff));
                json!({"status": "Accepted"})
            }
            "GetTariffs" => {
                let evse = req["evseId"].as_i64().unwrap_or(0);
                let mut assignments: Vec<Value> = self
                    .defaults
                    .iter()
                    .filter(|(e, _)| evse == 0 || **e == 0 || i64::from(**e) == evse)
                    .map(|(e, t)| {
                        let mut a = json!({"tariffId": t.tariff_id, "tariffKind": "DefaultTariff"});
                        if *e != 0 {
                            a["evseIds"] = json!([e]);
                        }
                        a
                    })
                    .collect();
                assignments.extend(
                    self.drivers
                        .iter()
                        .filter(|(_, (e, _))| evse == 0 || i64::from(*e) == evse)
                        .map(|(_, (e, t))| {
                            json!({"tariffId": t.tariff_id, "tariffKind": "DriverTariff", "evseIds": [e]})
                        }),
                );
                if assignments.is_empty() {
                    json!({"status": "NoTariff"})
                } else {
                    json!({"status": "Accepted", "tariffAssignments": assignments})
                }
            }
            _ => {
                // ClearTariffs: default tariffs, by id and/or EVSE
                let ids: Option<Vec<String>> = req["tariffIds"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                });
                let evse = req["evseId"].as_i64();
                let gone: Vec<(i32, String)> = self
                    .defaults
                    .iter()
                    .filter(|(e, t)| {
                        evse.is_none_or(|x| i64::from(**e) == x)
                            && ids
                                .as_ref()
                                .is_none_or(|ids| ids.iter().any(|i| i == t.tariff_id.as_str()))
                    })
                    .map(|(e, t)| (*e, t.tariff_id.as_str().to_owned()))
                    .collect();
                let mut results: Vec<Value> = gone
                    .iter()
                    .map(|(e, id)| {
                        self.defaults.remove(e);
                        json!({"tariffId": id, "status": "Accepted"})
                    })
                    .collect();
                for id in ids.iter().flatten() {
                    if !gone.iter().any(|(_, g)| g == id) {
                        results.push(json!({"tariffId": id, "status": "NoTariff"}));
                    }
                }
                if results.is_empty() {
                    results.push(json!({"status": "NoTariff"}));
                }
                json!({"clearTariffsResult": results})
            }
        })
    }

    /// The tariff a transaction is priced under: its driver tariff, else
    /// its EVSE's default, else the station's.
    pub fn tariff_for(&self, tx: &str, evse: u32) -> Option<&v21::TariffType> {
        self.drivers
            .get(tx)
            .map(|d| &d.1)
            .or_else(|| i32::try_from(evse).ok().and_then(|e| self.defaults.get(&e)))
            .or_else(|| self.defaults.get(&0))
    }

    /// A `TransactionEvent` about to be sent: its energy register reading is
    /// noted; an `Updated` one gets the running `costDetails` so far, an
    /// `Ended` one the transaction's (when the station holds a tariff for
    /// it), and the transaction is then forgotten.
    /// What was priced, for a settlement: (transaction id, currency, total
    /// incl. tax as reported).
    pub fn on_event(
        &mut self,
        behaviour: &LocalCostBehaviour,
        payload: &mut Value,
    ) -> Option<(String, String, Decimal)> {
        if !behaviour.enabled {
            return None;
        }
        let tx = payload["transactionInfo"]["transactionId"]
            .as_str()?
            .to_owned();
        let when = payload["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let register = payload["meterValue"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["sampledValue"].as_array().into_iter().flatten())
            .find(|s| s["measurand"] == "Energy.Active.Import.Register")
            .and_then(|s| Decimal::from_str(&s["value"].to_string()).ok());
        if let (Some(t), Some(wh)) = (when, register) {
            let points = self.points.entry(tx.clone()).or_default();
            if points.last().is_none_or(|p| p.0 < t) {
                points.push((t, wh));
            }
        }
        // the running cost on each Updated, the final one on the Ended
        let ended = payload["eventType"] == "Ended";
        if !ended && payload["eventType"] != "Updated" {
            return None;
        }
        let points = if ended {
            self.points.remove(&tx).unwrap_or_default()
        } else {
            self.points.get(&tx).cloned().unwrap_or_default()
        };
        let evse = self
            .drivers
            .get(&tx)
            .map(|d| d.0)
            .or_else(|| payload["evse"]["id"].as_u64().map(|e| e as u32))
            .unwrap_or(0);
        let tariff = self.tariff_for(&tx, evse).cloned();
        if ended {
            self.drivers.remove(&tx);
        }
        let tariff = tariff?;
        let details = match price(&tariff, &points) {
            Ok(cost) => cost_details(&tariff, &cost, behaviour.misreport),
            Err(e) => {
                payload["costDetails"] = json!({
                    "totalCost": {"currency": tariff.currency, "typeOfCost": "NormalCost", "total": {"exclTax": 0}},
                    "totalUsage": {"energy": 0, "chargingTime": 0, "idleTime": 0},
                    "failureToCalculate": true, "failureReason": e.to_string()});
                return None;
            }
        };
        let total = details.total_cost.total.incl_tax.unwrap_or_default();
        payload["costDetails"] = serde_json::to_value(&details).unwrap_or(Value::Null);
        ended.then(|| (tx, tariff.currency.as_str().to_owned(), total))
    }
}

/// The `NotifySettlement` of a payment terminal for a priced transaction.
pub fn settlement(tx: &str, amount: Decimal, at: DateTime<Utc>) -> Value {
    json!({
        "transactionId": tx,
        "pspRef": format!("PSP-{tx}"),
        "status": "Settled",
        "settlementAmount": serde_json::from_str::<Value>(&amount.to_string()).unwrap_or(Value::Null),
        "settlementTime": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "receiptId": format!("R-{tx}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn tariff(v: Value) -> v21::TariffType {
        evproto_ocpp_types::from_str(&v.to_string()).unwrap()
    }

    #[test]
    fn energy_time_fixed_taxes_and_bounds() {
        let tr = tariff(json!({"tariffId": "T1", "currency": "EUR",
            "energy": {"prices": [{"priceKwh": 0.30, "conditions": {"minEnergy": 5000}}, {"priceKwh": 0.20}],
                       "taxRates": [{"type": "VAT", "tax": 20}]},
            "chargingTime": {"prices": [{"priceMinute": 0.05}]},
            "fixedFee": {"prices": [{"priceFixed": 1}]}}));
        let points = [
            (t("2026-03-02T10:00:00Z"), Decimal::from(1000)),
            (t("2026-03-02T10:30:00Z"), Decimal::from(6000)),
            (t("2026-03-02T11:00:00Z"), Decimal::from(11000)),
        ];
        let c = price(&tr, &points).unwrap();
        // 5 kWh at 0.20 (none before), 5 kWh at 0.30 (5000 Wh before)
        assert_eq!(c.energy, Decimal::new(25, 1));
        assert_eq!(c.charging_time, Decimal::from(3));
        assert_eq!(c.fixed, Decimal::ONE);
        assert_eq!(c.excl, Decimal::new(65, 1));
        assert_eq!(c.incl, Decimal::from(7));
        assert_eq!(c.seconds, 3600);
        let capped = tariff(json!({"tariffId": "T2", "currency": "EUR",
            "energy": {"prices": [{"priceKwh": 1}]}, "maxCost": {"exclTax": 4}}));
        let c = price(&capped, &points).unwrap();
        assert_eq!(
            (c.excl, c.kind),
            (Decimal::from(4), Some(v21::TariffCostEnumType::MaxCost))
        );
        let d = cost_details(&capped, &c, Decimal::new(5, 1));
        assert_eq!(d.total_cost.total.excl_tax, Some(Decimal::new(45, 1)));
    }

    #[test]
    fn time_of_day_wraps_and_unsupported_conditions_are_refused() {
        let night = tariff(
            json!({"tariffId": "N", "currency": "EUR", "energy": {"prices": [
            {"priceKwh": 0.10, "conditions": {"startTimeOfDay": "22:00", "endTimeOfDay": "06:00"}},
            {"priceKwh": 0.40}]}}),
        );
        let kwh = |at: &str| {
            let start = t(at);
            price(
                &night,
                &[
                    (start, Decimal::ZERO),
                    (start + chrono::Duration::minutes(1), Decimal::from(1000)),
                ],
            )
            .unwrap()
            .energy
        };
        assert_eq!(kwh("2026-03-02T23:00:00Z"), Decimal::new(10, 2));
        assert_eq!(kwh("2026-03-02T05:59:00Z"), Decimal::new(10, 2));
        assert_eq!(kwh("2026-03-02T06:00:00Z"), Decimal::new(40, 2));
        let power = tariff(
            json!({"tariffId": "P", "currency": "EUR", "energy": {"prices": [
            {"priceKwh": 0.10, "conditions": {"minPower": 11000}}]}}),
        );
        assert!(check(&power).is_err());
    }

    #[test]
    fn calls_set_get_clear_and_the_ended_event_is_priced() {
        let on = LocalCostBehaviour {
            enabled: true,
            ..Default::default()
        };
        let mut s = TariffState::default();
        let t1 =
            json!({"tariffId": "T1", "currency": "EUR", "energy": {"prices": [{"priceKwh": 0.5}]}});
        let set = json!({"evseId": 0, "tariff": t1});
        assert_eq!(
            s.on_call(&on, &[], "SetDefaultTariff", &set).unwrap()["status"],
            "Accepted"
        );
        let other = json!({"evseId": 1, "tariff": {"tariffId": "T1", "currency": "EUR"}});
        assert_eq!(
            s.on_call(&on, &[], "SetDefaultTariff", &other).unwrap()["status"],
            "DuplicateTariffId"
        );
        let got = s
            .on_call(&on, &[], "GetTariffs", &json!({"evseId": 0}))
            .unwrap();
        assert_eq!(got["tariffAssignments"][0]["tariffId"], "T1");
        let open = [("tx1".to_owned(), 1)];
        let usd = json!({"transactionId": "tx1", "tariff": {"tariffId": "U", "currency": "USD"}});
        assert_eq!(
            s.on_call(&on, &open, "ChangeTransactionTariff", &usd)
                .unwrap()["status"],
            "NoCurrencyChange"
        );
        let gone = json!({"transactionId": "tx9", "tariff": t1});
        assert_eq!(
            s.on_call(&on, &open, "ChangeTransactionTariff", &gone)
                .unwrap()["status"],
            "TxNotFound"
        );
        let mut start = json!({"eventType": "Started", "timestamp": "2026-03-02T10:00:00.000Z",
            "transactionInfo": {"transactionId": "tx1"}, "evse": {"id": 1},
            "meterValue": [{"sampledValue": [{"value": 100.5, "measurand": "Energy.Active.Import.Register"}]}]});
        assert!(s.on_event(&on, &mut start).is_none());
        // an update carries the running cost so far (no settlement yet)
        let mut update = json!({"eventType": "Updated", "timestamp": "2026-03-02T10:05:00.000Z",
            "transactionInfo": {"transactionId": "tx1"},
            "meterValue": [{"sampledValue": [{"value": 1100.5, "measurand": "Energy.Active.Import.Register"}]}]});
        assert!(s.on_event(&on, &mut update).is_none());
        let running: v21::CostDetailsType =
            evproto_ocpp_types::from_str(&update["costDetails"].to_string()).unwrap();
        assert_eq!(running.total_usage.energy, Decimal::from(1000));
        let mut end = json!({"eventType": "Ended", "timestamp": "2026-03-02T10:10:00.000Z",
            "transactionInfo": {"transactionId": "tx1"},
            "meterValue": [{"sampledValue": [{"value": 2100.5, "measurand": "Energy.Active.Import.Register"}]}]});
        let (tx, cur, total) = s.on_event(&on, &mut end).unwrap();
        assert_eq!(
            (tx.as_str(), cur.as_str(), total),
            ("tx1", "EUR", Decimal::ONE)
        );
        let d: v21::CostDetailsType =
            evproto_ocpp_types::from_str(&end["costDetails"].to_string()).unwrap();
        assert_eq!(d.total_usage.energy, Decimal::from(2000));
        let cleared = s.on_call(&on, &[], "ClearTariffs", &json!({})).unwrap();
        assert_eq!(cleared["clearTariffsResult"][0]["status"], "Accepted");
        let none = s
            .on_call(&on, &[], "GetTariffs", &json!({"evseId": 0}))
            .unwrap();
        assert_eq!(none["status"], "NoTariff");
        let off = LocalCostBehaviour::default();
        assert_eq!(
            s.on_call(&off, &[], "SetDefaultTariff", &set).unwrap()["status"],
            "Rejected"
        );
    }
}
