//! Charging sessions as stored: the session rows the transaction model
//! writes (through the group-commit writer), their meter values, the
//! transaction messages a session is rebuilt from, the 1.6 start keys a
//! replayed StartTransaction is recognized by, and counters.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::paging::{time_conds, Cond, Keyset, ListQuery, Page};
use super::{now, ts, Result, Store, StoreError};
use evproto_csms_core::transaction::StopReason;

/// A time as the store keeps it: to the millisecond.
fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(3)
}

/// Where a session is: charging (or plugged in) until its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SessionStatus {
    /// Not ended yet.
    Active,
    /// Ended (by the station, or closed by the CSMS).
    Completed,
}

impl SessionStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "Active",
            SessionStatus::Completed => "Completed",
        }
    }

    /// A stored name; `None` for another.
    pub fn parse(s: &str) -> Option<SessionStatus> {
        match s {
            "Active" => Some(SessionStatus::Active),
            "Completed" => Some(SessionStatus::Completed),
            _ => None,
        }
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Times as the API shows them (RFC 3339, milliseconds, `Z`).
fn ser_time<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&ts(*t)),
        None => s.serialize_none(),
    }
}

/// A stop reason by its OCPP name.
fn ser_reason<S: serde::Serializer>(
    r: &Option<StopReason>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(r.as_wire()),
        None => s.serialize_none(),
    }
}

/// A stored time (as [`ts`] writes it; RFC 3339 in any case).
fn time_of(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    match row.try_get::<Option<String>, _>(col)? {
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| StoreError::Corrupt("sessions time")),
        None => Ok(None),
    }
}

/// A charging session (1.6 transaction or 2.x transaction), as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Session {
    /// Our id: `{station}:{ocpp transaction id}`.
    pub id: String,
    /// Station identity.
    pub station_id: String,
    /// The OCPP transaction id (1.6: the number we assigned; 2.x: the station's).
    pub ocpp_tx_id: String,
    /// EVSE (2.x) or connector (1.6).
    pub evse_id: Option<i64>,
    /// Connector.
    pub connector_id: Option<i64>,
    /// The driver's token.
    pub id_token: Option<String>,
    /// Active or Completed.
    pub status: SessionStatus,
    /// Start time.
    #[serde(serialize_with = "ser_time")]
    pub started_at: Option<DateTime<Utc>>,
    /// Stop time.
    #[serde(serialize_with = "ser_time")]
    pub stopped_at: Option<DateTime<Utc>>,
    /// Meter at start, Wh.
    pub meter_start_wh: Option<Decimal>,
    /// Meter at stop, Wh.
    pub meter_stop_wh: Option<Decimal>,
    /// Energy delivered so far, Wh.
    pub energy_wh: Decimal,
    /// Why it stopped.
    #[serde(serialize_with = "ser_reason")]
    pub stop_reason: Option<StopReason>,
}

/// A session row as the transaction model summarizes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Our id.
    pub id: String,
    /// Station identity.
    pub station_id: String,
    /// The OCPP transaction id.
    pub ocpp_tx_id: String,
    /// EVSE (2.x) or connector (1.6).
    pub evse_id: Option<i64>,
    /// Connector.
    pub connector_id: Option<i64>,
    /// The token that started it.
    pub id_token: Option<String>,
    /// Completed (else Active).
    pub completed: bool,
    /// Start time.
    pub started_at: Option<DateTime<Utc>>,
    /// Stop time.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Register at start, Wh.
    pub meter_start_wh: Option<Decimal>,
    /// Register at stop, Wh (completed sessions).
    pub meter_stop_wh: Option<Decimal>,
    /// Latest register, Wh.
    pub last_register_wh: Option<Decimal>,
    /// Energy, Wh.
    pub energy_wh: Decimal,
    /// Why it stopped.
    pub stop_reason: Option<StopReason>,
    /// 1.6: the start key a replayed StartTransaction is recognized by.
    pub start_key: Option<String>,
}

impl SessionRow {
    /// The session as [`Store::session`] reads this row back.
    pub fn to_session(&self) -> Session {
        Session {
            id: self.id.clone(),
            station_id: self.station_id.clone(),
            ocpp_tx_id: self.ocpp_tx_id.clone(),
            evse_id: self.evse_id,
            connector_id: self.connector_id,
            id_token: self.id_token.clone(),
            status: if self.completed {
                SessionStatus::Completed
            } else {
                SessionStatus::Active
            },
            // as stored: to the millisecond
            started_at: self.started_at.map(to_millis),
            stopped_at: self.stopped_at.map(to_millis),
            meter_start_wh: self.meter_start_wh.map(|d| d.normalize()),
            meter_stop_wh: self.meter_stop_wh.map(|d| d.normalize()),
            energy_wh: self.energy_wh.normalize(),
            stop_reason: self.stop_reason,
        }
    }
}

fn opt_dec(row: &AnyRow, col: &str) -> Result<Option<Decimal>> {
    match row.try_get::<Option<String>, _>(col)? {
        Some(s) => Decimal::from_str(&s)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("decimal")),
        None => Ok(None),
    }
}

fn session_from_row(row: &AnyRow) -> Result<Session> {
    let start = opt_dec(row, "meter_start_wh")?;
    let stop = opt_dec(row, "meter_stop_wh")?;
    let last = opt_dec(row, "last_register_wh")?;
    let end = stop.or(last);
    // the transaction model's energy (resets and jumps excluded); rows written
    // before it existed fall back to stop − start
    let energy = match (opt_dec(row, "energy_wh")?, start, end) {
        (Some(e), _, _) => e,
        (None, Some(s), Some(e)) if e > s => e - s,
        _ => Decimal::ZERO,
    };
    Ok(Session {
        id: row.try_get("id")?,
        station_id: row.try_get("station_id")?,
        ocpp_tx_id: row.try_get("ocpp_tx_id")?,
        evse_id: row.try_get("evse_id")?,
        connector_id: row.try_get("connector_id")?,
        id_token: row.try_get("id_token")?,
        status: SessionStatus::parse(row.try_get("status")?)
            .ok_or(StoreError::Corrupt("sessions.status"))?,
        started_at: time_of(row, "started_at")?,
        stopped_at: time_of(row, "stopped_at")?,
        meter_start_wh: start.map(|d| d.normalize()),
        meter_stop_wh: stop.map(|d| d.normalize()),
        energy_wh: energy.normalize(),
        stop_reason: match row.try_get::<Option<String>, _>("stop_reason")? {
            Some(r) => {
                Some(StopReason::from_wire(&r).ok_or(StoreError::Corrupt("sessions.stop_reason"))?)
            }
            None => None,
        },
    })
}

const SESSION_COLS: &str =
    "id, station_id, ocpp_tx_id, evse_id, connector_id, id_token, status, started_at, stopped_at, \
     meter_start_wh, meter_stop_wh, last_register_wh, stop_reason, energy_wh";

/// An energy reading in Wh from its text and unit (Wh or kWh).
pub fn to_wh(value: &str, unit: Option<&str>) -> Option<Decimal> {
    let v = Decimal::from_str(value.trim())
        .or_else(|_| Decimal::from_scientific(value.trim()))
        .ok()?;
    let wh = match unit.unwrap_or("Wh") {
        "kWh" => v.checked_mul(Decimal::from(1000))?,
        "Wh" => v,
        _ => return None,
    };
    // a register outside the physical range is no reading (no sum of them overflows)
    (Decimal::ZERO..=evproto_csms_core::transaction::MAX_REGISTER_WH)
        .contains(&wh)
        .then_some(wh)
}

impl Store {
    /// One session, as committed (read without the write connection: a
    /// station message's answer never waits for other stations' commits).
    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Sessions, newest first, optionally of one station.
    pub async fn sessions(&self, station: Option<&str>, limit: i64) -> Result<Vec<Session>> {
        let rows = match station {
            Some(s) => {
                sqlx::query(&format!("SELECT {SESSION_COLS} FROM sessions WHERE station_id = $1 ORDER BY updated_at DESC LIMIT $2"))
                    .bind(s)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {SESSION_COLS} FROM sessions ORDER BY updated_at DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(session_from_row).collect()
    }

    /// Sessions, latest start first (the start never changes, so paging
    /// is stable while sessions update); `since`/`until` bound the start.
    pub async fn sessions_page(&self, q: &ListQuery) -> Result<Page<Session>> {
        let mut conds = Vec::new();
        if let Some(s) = &q.station {
            conds.push(Cond::Cmp("station_id", "=", s.clone()));
        }
        if let Some(s) = &q.status {
            conds.push(Cond::Cmp("status", "=", s.clone()));
        }
        time_conds(&mut conds, "COALESCE(started_at, '')", q);
        let ks = Keyset {
            from: "sessions",
            cols: SESSION_COLS,
            keys: &["COALESCE(started_at, '')", "id"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows.iter().map(session_from_row).collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// The active session on a station's EVSE/connector (1.6 MeterValues without a transaction id).
    pub async fn active_session_on(&self, station: &str, connector: i64) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT id FROM sessions WHERE station_id = $1 AND connector_id = $2 AND status = 'Active' ORDER BY updated_at DESC LIMIT 1")
            .bind(station)
            .bind(connector)
            .fetch_optional(&self.read)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    /// Meter samples for a session; the energy register also moves the
    /// session's last reading (only forward).
    pub async fn meter_values(
        &self,
        session_id: &str,
        samples: &[(String, String, String, Option<String>)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (t, measurand, value, unit) in samples {
            sqlx::query("INSERT INTO meter_values (session_id, ts, measurand, value, unit) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(session_id)
                .bind(t.clone())
                .bind(measurand.clone())
                .bind(value.clone())
                .bind(unit.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let registers: Vec<Decimal> = samples
            .iter()
            .filter(|s| s.1 == "Energy.Active.Import.Register")
            .filter_map(|s| to_wh(&s.2, s.3.as_deref()))
            .collect();
        if let Some(max) = registers.into_iter().max() {
            self.advance_register(session_id, max).await?;
        }
        Ok(())
    }

    async fn advance_register(&self, session_id: &str, wh: Decimal) -> Result<()> {
        let current = sqlx::query("SELECT last_register_wh FROM sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = current else { return Ok(()) };
        let cur = opt_dec(&row, "last_register_wh")?;
        if cur.is_none_or(|c| wh > c) {
            sqlx::query("UPDATE sessions SET last_register_wh = $1, updated_at = $2 WHERE id = $3")
                .bind(wh.to_string())
                .bind(now())
                .bind(session_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A session's meter values in time order.
    pub async fn session_meter_values(&self, id: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT ts, measurand, value, unit FROM meter_values WHERE session_id = $1 ORDER BY ts, measurand")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(json!({"timestamp": r.try_get::<String, _>(0)?, "measurand": r.try_get::<String, _>(1)?,
                    "value": r.try_get::<String, _>(2)?, "unit": r.try_get::<Option<String>, _>(3)?}))
            })
            .collect()
    }

    /// A session's transaction messages: (key, kind, payload), in the order
    /// received.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn tx_messages(&self, session_id: &str) -> Result<Vec<(String, String, String)>> {
        self.fault()?;
        let rows = sqlx::query(
            "SELECT msg_key, kind, payload FROM tx_messages WHERE session_id = $1 ORDER BY received_at, msg_key",
        )
        .bind(session_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// A session as committed with its transaction messages (key, kind,
    /// payload, in the order received), in one read: `None` when it is not
    /// stored. Its messages are only ever written with its row (and sessions
    /// are never deleted), so a session without a row has none.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn session_with_messages(
        &self,
        id: &str,
    ) -> Result<Option<(Session, Vec<(String, String, String)>)>> {
        static QUERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let cols: Vec<String> = SESSION_COLS
                .split(',')
                .map(|c| format!("s.{}", c.trim()))
                .collect();
            format!(
                "SELECT {}, m.msg_key, m.kind, m.payload FROM sessions s \
                 LEFT JOIN tx_messages m ON m.session_id = s.id WHERE s.id = $1 \
                 ORDER BY m.received_at, m.msg_key",
                cols.join(", ")
            )
        });
        self.fault()?;
        let rows = sqlx::query(QUERY.as_str())
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let session = session_from_row(first)?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            // a session stored without messages (before they were kept): one row of NULLs
            if let Some(key) = r.try_get::<Option<String>, _>("msg_key")? {
                messages.push((key, r.try_get("kind")?, r.try_get("payload")?));
            }
        }
        Ok(Some((session, messages)))
    }

    /// The 1.6 transaction id a start key was given, if any.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn start_key(&self, key: &str) -> Result<Option<i64>> {
        self.fault()?;
        let row = sqlx::query("SELECT ocpp_tx_id FROM session_start_keys WHERE start_key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            r.try_get::<String, _>(0)?
                .parse()
                .map_err(|_| StoreError::Corrupt("transaction id"))
        })
        .transpose()
    }

    /// A counter's value (0 when it was never raised).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn counter(&self, name: &str) -> Result<i64> {
        self.fault()?;
        Ok(sqlx::query("SELECT value FROM counters WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_units() {
        assert_eq!(to_wh("1.5", Some("kWh")), Some(Decimal::from(1500)));
        assert_eq!(to_wh("1000.5", None), Decimal::from_str("1000.5").ok());
        assert_eq!(to_wh("1e3", Some("Wh")), Some(Decimal::from(1000)));
        assert_eq!(to_wh("x", None), None);
        assert_eq!(to_wh("5", Some("varh")), None);
        // out of the physical range, or too large to scale: no reading, no panic
        assert_eq!(to_wh("1e26", Some("kWh")), None);
        assert_eq!(to_wh("79228162514264337593543950335", Some("kWh")), None);
        assert_eq!(to_wh("-1", None), None);
    }

    /// The typed session shows as the API always showed it: status by
    /// name, times to the millisecond with `Z`, the stop reason by its
    /// OCPP name; names round-trip and others are refused.
    #[test]
    fn a_typed_session_shows_as_before() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let s = Session {
            id: "CP:1".into(),
            station_id: "CP".into(),
            ocpp_tx_id: "1".into(),
            evse_id: Some(1),
            connector_id: Some(1),
            id_token: Some("TAG".into()),
            status: SessionStatus::Completed,
            started_at: Some(at("2026-01-01T00:00:00Z")),
            stopped_at: Some(at("2026-01-01T00:30:00.1234Z")),
            meter_start_wh: None,
            meter_stop_wh: None,
            energy_wh: Decimal::from(500),
            stop_reason: Some(StopReason::EVDisconnected),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["status"], "Completed");
        assert_eq!(v["started_at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(v["stopped_at"], "2026-01-01T00:30:00.123Z");
        assert_eq!(v["stop_reason"], "EVDisconnected");
        for st in [SessionStatus::Active, SessionStatus::Completed] {
            assert_eq!(SessionStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(SessionStatus::parse("active"), None);
        assert_eq!(
            to_millis(at("2026-01-01T00:30:00.1239Z")),
            at("2026-01-01T00:30:00.123Z")
        );
    }
}
