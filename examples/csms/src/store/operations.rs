//! The latest status a station reported for an operation the CSMS asked
//! of it (a firmware update, a log upload): one row per station and
//! operation, as `GET /api/stations/{id}`, firmware campaigns and log
//! views show it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{ts, Result, Store, StoreError};

/// An operation a station reports progress of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A firmware update (FirmwareStatusNotification).
    Firmware,
    /// A log upload (LogStatusNotification, 1.6 DiagnosticsStatusNotification).
    Log,
}

impl Operation {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Firmware => "firmware",
            Operation::Log => "log",
        }
    }
}

/// A station's latest status of an operation. Shown as
/// `{"at", "request_id", "status"}`, the time RFC 3339 to the millisecond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperationStatus {
    /// When the CSMS received it.
    #[serde(serialize_with = "ser_at")]
    pub at: DateTime<Utc>,
    /// The request it answers, when the station named one.
    pub request_id: Option<i32>,
    /// The status as the station sent it (its version's value).
    pub status: String,
}

fn ser_at<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&ts(*t))
}

/// The settings-table form earlier versions kept statuses in
/// (`firmware_status:{station}`, `log_status:{station}`), read once by
/// the migration that moves them here.
#[derive(serde::Deserialize)]
struct Legacy {
    at: String,
    request_id: Option<i32>,
    status: String,
}

/// Migration 26's data step, in its transaction: the statuses kept as
/// settings move to `operation_statuses`; one that does not read is left
/// where it was (and logged), never guessed.
pub(super) async fn move_from_settings(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    let rows = sqlx::query(
        "SELECT key, value FROM settings WHERE key LIKE 'firmware!_status:%' ESCAPE '!' OR key LIKE 'log!_status:%' ESCAPE '!'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let (key, value): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let Some((prefix, station)) = key.split_once(':') else {
            continue;
        };
        let op = match prefix {
            "firmware_status" => Operation::Firmware,
            "log_status" => Operation::Log,
            _ => continue,
        };
        let Ok(l) = serde_json::from_str::<Legacy>(&value) else {
            tracing::warn!(
                key,
                "an operation status that does not read: left in settings"
            );
            continue;
        };
        sqlx::query(
            "INSERT INTO operation_statuses (station_id, operation, request_id, status, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (station_id, operation) DO NOTHING",
        )
        .bind(station)
        .bind(op.as_str())
        .bind(l.request_id.map(i64::from))
        .bind(l.status)
        .bind(l.at)
        .execute(&mut **tx)
        .await?;
        super::settings::delete_in(tx, &key).await?;
    }
    Ok(())
}

impl Store {
    /// Keeps `status` as `station`'s latest of `op`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_operation_status(
        &self,
        station: &str,
        op: Operation,
        status: &OperationStatus,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO operation_statuses (station_id, operation, request_id, status, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (station_id, operation) DO UPDATE SET request_id = $3, status = $4, at = $5",
        )
        .bind(station)
        .bind(op.as_str())
        .bind(status.request_id.map(i64::from))
        .bind(status.status.clone())
        .bind(ts(status.at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `station`'s latest status of `op`.
    ///
    /// # Errors
    ///
    /// The database failed, or the row is corrupt.
    pub async fn operation_status(
        &self,
        station: &str,
        op: Operation,
    ) -> Result<Option<OperationStatus>> {
        let Some(r) = sqlx::query(
            "SELECT request_id, status, at FROM operation_statuses WHERE station_id = $1 AND operation = $2",
        )
        .bind(station)
        .bind(op.as_str())
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let request_id = r
            .try_get::<Option<i64>, _>(0)?
            .map(i32::try_from)
            .transpose()
            .map_err(|_| StoreError::Corrupt("operation_statuses.request_id"))?;
        let at = DateTime::parse_from_rfc3339(&r.try_get::<String, _>(2)?)
            .map_err(|_| StoreError::Corrupt("operation_statuses.at"))?
            .with_timezone(&Utc);
        Ok(Some(OperationStatus {
            at,
            request_id,
            status: r.try_get(1)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status kept reads back, replaced by the next; it shows as the
    /// settings-table JSON did; statuses of earlier versions move to the
    /// table when the store opens.
    #[tokio::test]
    async fn statuses_kept_per_station_and_operation() {
        let store = Store::open_temp("operation-statuses").await;
        let at = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = OperationStatus {
            at,
            request_id: Some(7),
            status: "Downloading".into(),
        };
        store
            .put_operation_status("CS1", Operation::Firmware, &s)
            .await
            .unwrap();
        assert_eq!(
            store
                .operation_status("CS1", Operation::Firmware)
                .await
                .unwrap(),
            Some(s.clone())
        );
        assert_eq!(
            store.operation_status("CS1", Operation::Log).await.unwrap(),
            None
        );
        let next = OperationStatus {
            status: "Installed".into(),
            request_id: None,
            ..s
        };
        store
            .put_operation_status("CS1", Operation::Firmware, &next)
            .await
            .unwrap();
        let back = store
            .operation_status("CS1", Operation::Firmware)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            r#"{"at":"2026-01-01T10:00:00.000Z","request_id":null,"status":"Installed"}"#
        );

        // a store of an earlier version: statuses in settings
        store
            .put_setting(
                "log_status:CS2",
                r#"{"at":"2026-01-02T10:00:00.000Z","request_id":3,"status":"Uploaded"}"#,
            )
            .await
            .unwrap();
        store
            .put_setting("firmware_status:CS3", "garbage")
            .await
            .unwrap();
        let mut tx = store.pool.begin().await.unwrap();
        move_from_settings(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let moved = store
            .operation_status("CS2", Operation::Log)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (moved.request_id, moved.status.as_str()),
            (Some(3), "Uploaded")
        );
        assert_eq!(store.setting("log_status:CS2").await.unwrap(), None);
        // what does not read stays where it was
        assert_eq!(
            store
                .setting("firmware_status:CS3")
                .await
                .unwrap()
                .as_deref(),
            Some("garbage")
        );
    }
}
