//! Settlements: the payments a station's payment terminal settled (2.1
//! `NotifySettlement`), one per station and PSP reference, linked to the
//! session of their transaction.

use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::alerts::{insert_alert, open_alert};
use super::station_reports::insert_station_report;
use super::{now, Result, Store};

/// A settlement as kept and shown (`GET /api/sessions/{id}/settlements`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settlement {
    /// The station whose terminal settled.
    pub station_id: String,
    /// The payment service provider's reference (the payment's idToken).
    pub psp_ref: String,
    /// The session of `transaction_id`, when the CSMS has it.
    pub session_id: Option<String>,
    /// The station's transaction id (none: cancelled before a transaction).
    pub transaction_id: Option<String>,
    /// `Settled`, `Canceled`, `Rejected` or `Failed`.
    pub status: String,
    /// The amount settled (or attempted), in the session's currency.
    pub amount: String,
    /// When it was settled (RFC 3339).
    pub settled_at: String,
    /// The terminal's additional information.
    pub status_info: Option<String>,
    /// The receipt's id, when the terminal or station issued one.
    pub receipt_id: Option<String>,
    /// The receipt's URL, when the terminal or station issued one.
    pub receipt_url: Option<String>,
}

impl Settlement {
    fn from_row(r: &AnyRow) -> Result<Settlement> {
        Ok(Settlement {
            station_id: r.try_get(0)?,
            psp_ref: r.try_get(1)?,
            session_id: r.try_get(2)?,
            transaction_id: r.try_get(3)?,
            status: r.try_get(4)?,
            amount: r.try_get(5)?,
            settled_at: r.try_get(6)?,
            status_info: r.try_get(7)?,
            receipt_id: r.try_get(8)?,
            receipt_url: r.try_get(9)?,
        })
    }
}

const COLS: &str = "station_id, psp_ref, session_id, transaction_id, status, amount, settled_at, status_info, receipt_id, receipt_url";

/// What [`Store::record_settlement`] kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRecorded {
    /// Whether the message was kept among the station's reports (below
    /// its cap).
    pub report_kept: bool,
    /// The alert raised (`None`: none asked for, or one of the kind open).
    pub alert: Option<String>,
}

impl Store {
    /// Keeps a settlement in one transaction with the message as a station
    /// report (`report`: kind, key, body, the station's cap) and, when
    /// `alert` is given, a `settlement` alert. Idempotent per station and
    /// PSP reference: a repeated one replaces the first with its values.
    ///
    /// # Errors
    ///
    /// The database failed (nothing is kept).
    pub async fn record_settlement(
        &self,
        s: &Settlement,
        report: (&str, &str, &Value, i64),
        alert: Option<&Value>,
    ) -> Result<SettlementRecorded> {
        let mut tx = self.pool.begin().await?;
        let (kind, key, body, cap) = report;
        let report_kept =
            insert_station_report(&mut *tx, &s.station_id, (kind, key, body), cap).await?;
        sqlx::query(&format!(
            "INSERT INTO settlements ({COLS}, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (station_id, psp_ref) DO UPDATE SET session_id = excluded.session_id,
             transaction_id = excluded.transaction_id, status = excluded.status, amount = excluded.amount,
             settled_at = excluded.settled_at, status_info = excluded.status_info,
             receipt_id = excluded.receipt_id, receipt_url = excluded.receipt_url, received_at = excluded.received_at"
        ))
        .bind(&s.station_id)
        .bind(&s.psp_ref)
        .bind(&s.session_id)
        .bind(&s.transaction_id)
        .bind(&s.status)
        .bind(&s.amount)
        .bind(&s.settled_at)
        .bind(&s.status_info)
        .bind(&s.receipt_id)
        .bind(&s.receipt_url)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        let mut raised = None;
        if let Some(detail) = alert {
            let station = Some(s.station_id.as_str());
            if !open_alert(&mut *tx, station, "settlement").await? {
                raised = Some(insert_alert(&mut *tx, station, "settlement", detail).await?);
            }
        }
        tx.commit().await?;
        Ok(SettlementRecorded {
            report_kept,
            alert: raised,
        })
    }

    /// A session's settlements, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn session_settlements(&self, session_id: &str) -> Result<Vec<Settlement>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM settlements WHERE session_id = $1 ORDER BY settled_at, psp_ref"
        ))
        .bind(session_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Settlement::from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_settlement_is_kept_once_per_psp_ref_with_its_report_and_alert() {
        let dir = std::env::temp_dir().join(format!("csms-settlements-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}?mode=rwc", dir.join("s.db").display()))
            .await
            .unwrap();
        let mut s = Settlement {
            station_id: "CS1".into(),
            psp_ref: "PSP-1".into(),
            session_id: Some("CS1:tx1".into()),
            transaction_id: Some("tx1".into()),
            status: "Failed".into(),
            amount: "12.5".into(),
            settled_at: "2026-03-02T10:00:00Z".into(),
            status_info: Some("card declined".into()),
            receipt_id: None,
            receipt_url: None,
        };
        let body = serde_json::json!({"pspRef": "PSP-1"});
        let report = ("settlement", "PSP-1", &body, 10);
        let first = store
            .record_settlement(&s, report, Some(&body))
            .await
            .unwrap();
        assert!(first.report_kept && first.alert.is_some());
        // the same again: one settlement, one open alert
        let again = store
            .record_settlement(&s, report, Some(&body))
            .await
            .unwrap();
        assert_eq!(again.alert, None);
        // settled later under the same reference: the row follows
        s.status = "Settled".into();
        s.receipt_id = Some("R-1".into());
        store.record_settlement(&s, report, None).await.unwrap();
        assert_eq!(store.session_settlements("CS1:tx1").await.unwrap(), vec![s]);
        assert!(store
            .session_settlements("CS1:tx2")
            .await
            .unwrap()
            .is_empty());
        let alerts = store.alerts(true, 10).await.unwrap();
        assert_eq!(alerts.iter().filter(|a| a.kind == "settlement").count(), 1);
        let reports = store
            .station_reports("CS1", Some("settlement"), 10)
            .await
            .unwrap();
        assert_eq!(reports.len(), 3, "each message kept as it came");
    }
}
