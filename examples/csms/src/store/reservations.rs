//! Reservations the operator made (`reservations.rs`: ReserveNow through
//! the API) or a station reported the end of, per station and reservation
//! id, with their state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now, ts, Result, Store, StoreError};

/// A reservation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationState {
    /// Held for its token until it expires.
    Reserved,
    /// A transaction started on it.
    Used,
    /// The operator cancelled it (the station accepted).
    Cancelled,
    /// It expired unused (the station said so, or its time passed).
    Expired,
    /// The station removed it (2.x `Removed`).
    Removed,
}

impl ReservationState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Reserved => "Reserved",
            ReservationState::Used => "Used",
            ReservationState::Cancelled => "Cancelled",
            ReservationState::Expired => "Expired",
            ReservationState::Removed => "Removed",
        }
    }

    fn parse(s: &str) -> Result<ReservationState> {
        Ok(match s {
            "Reserved" => ReservationState::Reserved,
            "Used" => ReservationState::Used,
            "Cancelled" => ReservationState::Cancelled,
            "Expired" => ReservationState::Expired,
            "Removed" => ReservationState::Removed,
            _ => return Err(StoreError::Corrupt("reservations.state")),
        })
    }
}

/// A reservation as the CSMS keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// The station.
    pub station_id: String,
    /// Its id on the station.
    pub id: i32,
    /// The EVSE (1.6: connector); `None`: any.
    pub evse_id: Option<i32>,
    /// The driver's token (`None`: a reservation the CSMS did not make).
    pub id_token: Option<String>,
    /// The token's group, whose members may use it too.
    pub group_id: Option<String>,
    /// Until when it holds.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its state.
    pub state: ReservationState,
    /// The session that used it.
    pub session_id: Option<String>,
    /// When the CSMS first kept it.
    pub created_at: String,
    /// When its state last changed.
    pub updated_at: String,
}

impl Reservation {
    /// Its state at `now`: one still `Reserved` past its expiry is `Expired`.
    pub fn state_at(&self, now: DateTime<Utc>) -> ReservationState {
        let lapsed = self.expires_at.is_some_and(|e| e <= now);
        if self.state == ReservationState::Reserved && lapsed {
            ReservationState::Expired
        } else {
            self.state
        }
    }

    /// As shown at `now` (its state [`Reservation::state_at`] then).
    pub fn shown(self, now: DateTime<Utc>) -> Reservation {
        Reservation {
            state: self.state_at(now),
            ..self
        }
    }

    fn from_row(r: &AnyRow) -> Result<Reservation> {
        let int = |i: usize| -> Result<Option<i32>> {
            let v: Option<i64> = r.try_get(i)?;
            v.map(|v| i32::try_from(v).map_err(|_| StoreError::Corrupt("reservations")))
                .transpose()
        };
        let expires: Option<String> = r.try_get(5)?;
        let state: String = r.try_get(6)?;
        Ok(Reservation {
            station_id: r.try_get(0)?,
            id: int(1)?.ok_or(StoreError::Corrupt("reservations.reservation_id"))?,
            evse_id: int(2)?,
            id_token: r.try_get(3)?,
            group_id: r.try_get(4)?,
            expires_at: expires
                .map(|e| {
                    DateTime::parse_from_rfc3339(&e)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| StoreError::Corrupt("reservations.expires_at"))
                })
                .transpose()?,
            state: ReservationState::parse(&state)?,
            session_id: r.try_get(7)?,
            created_at: r.try_get(8)?,
            updated_at: r.try_get(9)?,
        })
    }
}

/// The columns [`Reservation::from_row`] reads, in its order.
const COLS: &str = "station_id, reservation_id, evse_id, id_token, group_id, expires_at, state, \
                    session_id, created_at, updated_at";

impl Store {
    /// Keeps a reservation (replacing one of the same station and id).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_reservation(&self, r: &Reservation) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO reservations ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (station_id, reservation_id) DO UPDATE SET evse_id = $3, id_token = $4, \
             group_id = $5, expires_at = $6, state = $7, session_id = $8, created_at = $9, \
             updated_at = $10"
        ))
        .bind(&r.station_id)
        .bind(i64::from(r.id))
        .bind(r.evse_id.map(i64::from))
        .bind(&r.id_token)
        .bind(&r.group_id)
        .bind(r.expires_at.map(ts))
        .bind(r.state.as_str())
        .bind(&r.session_id)
        .bind(&r.created_at)
        .bind(&r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One reservation.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn reservation(&self, station: &str, id: i32) -> Result<Option<Reservation>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM reservations WHERE station_id = $1 AND reservation_id = $2"
        ))
        .bind(station)
        .bind(i64::from(id))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Reservation::from_row).transpose()
    }

    /// A station's reservations, newest first (at most 1,000).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn reservations(&self, station: &str) -> Result<Vec<Reservation>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM reservations WHERE station_id = $1 \
             ORDER BY created_at DESC, reservation_id DESC LIMIT 1000"
        ))
        .bind(station)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Reservation::from_row).collect()
    }

    /// The newest reservation held (`Reserved`, whatever its expiry) on a
    /// station's EVSE (1.6: connector).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn reserved_on(&self, station: &str, evse: i32) -> Result<Option<Reservation>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM reservations WHERE station_id = $1 AND evse_id = $2 \
             AND state = 'Reserved' ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(station)
        .bind(i64::from(evse))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Reservation::from_row).transpose()
    }

    /// The id for a station's next reservation: its highest plus one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn next_reservation_id(&self, station: &str) -> Result<i32> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(reservation_id), 0) FROM reservations WHERE station_id = $1",
        )
        .bind(station)
        .fetch_one(&self.pool)
        .await?;
        let max: i64 = row.try_get(0)?;
        i32::try_from(max + 1).map_err(|_| StoreError::Corrupt("reservations.reservation_id"))
    }

    /// Sets a reservation's state (and the session that used it); whether
    /// there was one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn set_reservation_state(
        &self,
        station: &str,
        id: i32,
        state: ReservationState,
        session: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE reservations SET state = $1, session_id = COALESCE($2, session_id), \
             updated_at = $3 WHERE station_id = $4 AND reservation_id = $5",
        )
        .bind(state.as_str())
        .bind(session)
        .bind(now())
        .bind(station)
        .bind(i64::from(id))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// A station reported a reservation's end: its state, a row of what is
    /// known when the CSMS did not make it (one statement: the station's
    /// message is one write).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn reservation_reported(
        &self,
        station: &str,
        id: i32,
        state: ReservationState,
    ) -> Result<()> {
        let at = now();
        sqlx::query(
            "INSERT INTO reservations (station_id, reservation_id, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (station_id, reservation_id) \
             DO UPDATE SET state = $3, updated_at = $4",
        )
        .bind(station)
        .bind(i64::from(id))
        .bind(state.as_str())
        .bind(&at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
