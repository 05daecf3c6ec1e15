//! The grid side's rows (migration 20): V2X sessions (what the EV said,
//! the setpoint in force, the energy fed back and its credit), the site's
//! grid events, DER controls per station, and local-cost records (the
//! station's own cost against the CSMS's price, settlements).

use std::str::FromStr;

use evproto_csms_core::money::{Currency, Money};
use rust_decimal::Decimal;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now, Result, Store, StoreError};
use crate::v2x::{GridEvent, Setpoint, V2xNeeds};

/// A V2X session as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct V2xSession {
    /// The session.
    pub session_id: String,
    /// Its station.
    pub station_id: String,
    /// Its OCPP transaction id.
    pub ocpp_tx_id: String,
    /// What the EV said.
    pub needs: V2xNeeds,
    /// The setpoint the station took last (`None`: none yet, or refused).
    pub sent: Option<Setpoint>,
    /// Whether the station holds the dynamic profile.
    pub profile_sent: bool,
    /// The station's last answer (or why it was not reached).
    pub status: Option<String>,
    /// Energy fed back, Wh, once the session completed.
    pub exported_wh: Option<Decimal>,
    /// Its credit, once priced.
    pub credit: Option<Money>,
}

const V2X_COLS: &str = "v.session_id, v.station_id, s.ocpp_tx_id, v.needs, v.setpoint, v.profile_sent, v.status, v.exported_wh, v.credit_minor, v.currency";

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |_| StoreError::Corrupt(what)
}

fn v2x_row(r: &AnyRow) -> Result<V2xSession> {
    let needs: String = r.try_get(3)?;
    let sent: Option<String> = r.try_get(4)?;
    let exported: Option<String> = r.try_get(7)?;
    let minor: Option<i64> = r.try_get(8)?;
    let currency: Option<String> = r.try_get(9)?;
    Ok(V2xSession {
        session_id: r.try_get(0)?,
        station_id: r.try_get(1)?,
        ocpp_tx_id: r.try_get(2)?,
        needs: serde_json::from_str(&needs).map_err(corrupt("v2x_sessions.needs"))?,
        sent: sent
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(corrupt("v2x_sessions.setpoint"))?,
        profile_sent: r.try_get::<i64, _>(5)? != 0,
        status: r.try_get(6)?,
        exported_wh: exported
            .map(|e| Decimal::from_str(&e))
            .transpose()
            .map_err(|_| StoreError::Corrupt("v2x_sessions.exported_wh"))?,
        credit: match (minor, currency) {
            (Some(m), Some(c)) => Some(Money::from_minor(
                m,
                Currency::from_code(&c).ok_or(StoreError::Corrupt("v2x_sessions.currency"))?,
            )),
            _ => None,
        },
    })
}

impl Store {
    /// Keeps (or replaces) what a bidirectional EV said, with its session.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn v2x_needs(&self, session: &str, station: &str, needs: &V2xNeeds) -> Result<()> {
        let body = serde_json::to_string(needs).map_err(|_| StoreError::Corrupt("v2x needs"))?;
        sqlx::query(
            "INSERT INTO v2x_sessions (session_id, station_id, needs, profile_sent, updated_at) VALUES ($1, $2, $3, 0, $4)
             ON CONFLICT (session_id) DO UPDATE SET needs = excluded.needs, updated_at = excluded.updated_at",
        )
        .bind(session)
        .bind(station)
        .bind(body)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Active sessions that are not V2X sessions yet but whose EVSE has
    /// charging needs kept: (session, station, start, the needs' body,
    /// when they arrived), oldest needs first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn v2x_unbound(
        &self,
    ) -> Result<Vec<(String, String, Option<String>, String, String)>> {
        let rows = sqlx::query(
            "SELECT s.id, s.station_id, s.started_at, r.body, r.received_at FROM sessions s
             JOIN station_reports r ON r.station_id = s.station_id AND r.kind = 'ev_charging_needs'
                AND r.key = 'evse' || CAST(COALESCE(s.evse_id, s.connector_id, 1) AS TEXT)
             LEFT JOIN v2x_sessions v ON v.session_id = s.id
             WHERE s.status = 'Active' AND v.session_id IS NULL ORDER BY r.received_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }

    /// The V2X sessions still active, by session id.
    ///
    /// # Errors
    ///
    /// The database failed, or a row is not readable.
    pub async fn v2x_active(&self) -> Result<Vec<V2xSession>> {
        let rows = sqlx::query(&format!(
            "SELECT {V2X_COLS} FROM v2x_sessions v JOIN sessions s ON s.id = v.session_id WHERE s.status = 'Active' ORDER BY v.session_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(v2x_row).collect()
    }

    /// One V2X session (`None`: the session is not one).
    ///
    /// # Errors
    ///
    /// The database failed, or the row is not readable.
    pub async fn v2x_session(&self, session: &str) -> Result<Option<V2xSession>> {
        let row = sqlx::query(&format!(
            "SELECT {V2X_COLS} FROM v2x_sessions v JOIN sessions s ON s.id = v.session_id WHERE v.session_id = $1"
        ))
        .bind(session)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(v2x_row).transpose()
    }

    /// Records a setpoint sent and the station's answer: taken, it is the
    /// setpoint in force and the station holds the profile; refused (or
    /// not reached), the next plan sends the profile again.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn v2x_sent(
        &self,
        session: &str,
        sp: Setpoint,
        accepted: bool,
        status: &str,
    ) -> Result<()> {
        let sent = accepted
            .then(|| serde_json::to_string(&sp))
            .transpose()
            .map_err(|_| StoreError::Corrupt("v2x setpoint"))?;
        sqlx::query(
            "UPDATE v2x_sessions SET setpoint = $1, profile_sent = $2, status = $3, updated_at = $4 WHERE session_id = $5",
        )
        .bind(sent)
        .bind(i64::from(accepted))
        .bind(status)
        .bind(now())
        .bind(session)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps a completed V2X session's energy fed back and its credit
    /// (once: a second call changes nothing).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn v2x_metered(
        &self,
        session: &str,
        exported_wh: Decimal,
        credit: Option<Money>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE v2x_sessions SET exported_wh = $1, credit_minor = $2, currency = $3, updated_at = $4 WHERE session_id = $5 AND exported_wh IS NULL",
        )
        .bind(exported_wh.to_string())
        .bind(credit.map(|m| m.minor()))
        .bind(credit.map(|m| m.currency().code().to_owned()))
        .bind(now())
        .bind(session)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session's CDR total incl. VAT in `currency`'s minor units (`None`:
    /// no CDR, or one in another currency).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn cdr_total_minor(
        &self,
        session: &str,
        currency: Currency,
    ) -> Result<Option<Money>> {
        let row = sqlx::query("SELECT currency, total_incl FROM cdrs WHERE session_id = $1")
            .bind(session)
            .fetch_optional(&self.read)
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let (code, total): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        if !code.eq_ignore_ascii_case(currency.code()) {
            return Ok(None);
        }
        let total =
            Decimal::from_str(&total).map_err(|_| StoreError::Corrupt("cdrs.total_incl"))?;
        Ok(Money::try_round(total, currency).ok())
    }

    /// Keeps a grid event (replacing one with its id); whether it is new.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_grid_event(&self, e: &GridEvent) -> Result<bool> {
        let body = serde_json::to_string(e).map_err(|_| StoreError::Corrupt("grid event"))?;
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM grid_events WHERE id = $1")
            .bind(&e.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("INSERT INTO grid_events (id, body, starts_at, ends_at, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&e.id)
            .bind(body)
            .bind(super::ts(e.start))
            .bind(super::ts(e.end))
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone == 0)
    }

    /// The grid events not yet ended, by start.
    ///
    /// # Errors
    ///
    /// The database failed, or a row is not readable.
    pub async fn grid_events(&self) -> Result<Vec<GridEvent>> {
        let rows =
            sqlx::query("SELECT body FROM grid_events WHERE ends_at > $1 ORDER BY starts_at, id")
                .bind(now())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get(0)?;
                serde_json::from_str(&body).map_err(corrupt("grid_events.body"))
            })
            .collect()
    }

    /// Deletes a grid event; whether there was one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn delete_grid_event(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM grid_events WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    /// Keeps a DER control a station accepted (replacing one of its id).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_der_control(
        &self,
        station: &str,
        request: &evproto_ocpp_types::v21::SetDERControlRequest,
        status: &str,
    ) -> Result<()> {
        let body = evproto_ocpp_types::to_json(request);
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM der_controls WHERE station_id = $1 AND control_id = $2")
            .bind(station)
            .bind(request.control_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO der_controls (station_id, control_id, control_type, is_default, body, status, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(station)
            .bind(request.control_id.as_str())
            .bind(request.control_type.as_str())
            .bind(i64::from(request.is_default))
            .bind(body)
            .bind(status)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A station's DER controls, by id.
    ///
    /// # Errors
    ///
    /// The database failed, or a row is not readable.
    pub async fn der_controls(&self, station: &str) -> Result<Vec<crate::der::DerControl>> {
        let rows = sqlx::query("SELECT control_id, control_type, is_default, body, status, updated_at FROM der_controls WHERE station_id = $1 ORDER BY control_id")
            .bind(station)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get(3)?;
                Ok(crate::der::DerControl {
                    control_id: r.try_get(0)?,
                    control_type: r.try_get(1)?,
                    is_default: r.try_get::<i64, _>(2)? != 0,
                    request: evproto_ocpp_types::from_str(&body)
                        .map_err(|_| StoreError::Corrupt("der_controls.body"))?,
                    status: r.try_get(4)?,
                    updated_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Forgets a station's DER control; whether there was one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn delete_der_control(&self, station: &str, control: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM der_controls WHERE station_id = $1 AND control_id = $2")
                .bind(station)
                .bind(control)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Keeps the results of the DER policy at a station (replacing its
    /// earlier ones).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_der_policy_results(
        &self,
        station: &str,
        results: &[crate::der::PolicyResult],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM der_policy_results WHERE station_id = $1")
            .bind(station)
            .execute(&mut *tx)
            .await?;
        for r in results {
            sqlx::query("INSERT INTO der_policy_results (station_id, control_id, control_type, status, error, applied_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(station)
                .bind(&r.control_id)
                .bind(&r.control_type)
                .bind(&r.status)
                .bind(r.error.as_deref())
                .bind(&r.applied_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The DER policy's results, by station and control.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn der_policy_results(&self) -> Result<Vec<crate::der::PolicyResult>> {
        let rows = sqlx::query("SELECT station_id, control_id, control_type, status, error, applied_at FROM der_policy_results ORDER BY station_id, control_id")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::der::PolicyResult {
                    station: r.try_get(0)?,
                    control_id: r.try_get(1)?,
                    control_type: r.try_get(2)?,
                    status: r.try_get(3)?,
                    error: r.try_get(4)?,
                    applied_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Forgets the DER policy's results (the policy was dropped).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn delete_der_policy_results(&self) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM der_policy_results")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
