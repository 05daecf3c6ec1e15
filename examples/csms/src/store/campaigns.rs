//! Firmware campaigns (`POST /api/firmware-campaigns`): what the operator
//! started — the firmware's location, whether it was signed, when — and
//! what each station answered its UpdateFirmware, in two tables
//! (`firmware_campaigns`, `firmware_campaign_stations`, migration 27). The
//! stations' progress is their latest firmware status
//! ([`super::Operation::Firmware`]), read beside it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{ts, Result, Store, StoreError};

/// A firmware campaign. Shown as `{"id", "location", "signed",
/// "started_at", "stations"}`, the time RFC 3339 to the millisecond.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Campaign {
    /// The `requestId` its UpdateFirmware calls carry.
    pub id: i32,
    /// Where the stations download the firmware from.
    pub location: String,
    /// The UpdateFirmware was signed (L01 / 1.6 SignedUpdateFirmware).
    pub signed: bool,
    /// When it started.
    #[serde(serialize_with = "ser_at")]
    pub started_at: DateTime<Utc>,
    /// Each station asked, in the order asked.
    pub stations: Vec<CampaignStation>,
}

/// A station of a campaign: whether it took the request, else why not,
/// and its answer as the operator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignStation {
    /// The station.
    pub station: String,
    /// It accepted the UpdateFirmware.
    pub requested: bool,
    /// Why it was not asked or did not take it (not connected, the call
    /// failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The station's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
}

fn ser_at<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&ts(*t))
}

/// The settings-table form earlier versions kept a campaign in
/// (`campaign:{id}`), read once by the migration that moves it.
#[derive(serde::Deserialize)]
struct Legacy {
    id: i32,
    location: String,
    #[serde(default)]
    signed: bool,
    started_at: String,
    #[serde(default)]
    stations: Vec<LegacyStation>,
}

#[derive(serde::Deserialize)]
struct LegacyStation {
    station: String,
    #[serde(default)]
    requested: bool,
    reason: Option<String>,
    answer: Option<Value>,
}

/// Writes `c` in `tx` (a campaign with its id replaces it, as before).
async fn insert(tx: &mut sqlx::Transaction<'_, sqlx::Any>, c: &Campaign) -> Result<()> {
    for table in [
        "DELETE FROM firmware_campaign_stations WHERE campaign_id = $1",
        "DELETE FROM firmware_campaigns WHERE id = $1",
    ] {
        sqlx::query(table)
            .bind(i64::from(c.id))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO firmware_campaigns (id, location, signed, started_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(i64::from(c.id))
    .bind(c.location.clone())
    .bind(i64::from(c.signed))
    .bind(ts(c.started_at))
    .execute(&mut **tx)
    .await?;
    for (i, s) in c.stations.iter().enumerate() {
        sqlx::query(
            "INSERT INTO firmware_campaign_stations (campaign_id, position, station_id, requested, reason, answer) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(i64::from(c.id))
        .bind(i64::try_from(i).unwrap_or(i64::MAX))
        .bind(s.station.clone())
        .bind(i64::from(s.requested))
        .bind(s.reason.clone())
        .bind(s.answer.as_ref().map(Value::to_string))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Migration 27's data step, in its transaction: the campaigns kept as
/// settings move to the tables; one that does not read is left where it
/// was (and logged), never guessed.
pub(super) async fn move_from_settings(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    let rows = sqlx::query("SELECT key, value FROM settings WHERE key LIKE 'campaign:%'")
        .fetch_all(&mut **tx)
        .await?;
    for r in rows {
        let (key, value): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let read = serde_json::from_str::<Legacy>(&value).ok().and_then(|l| {
            let started_at = DateTime::parse_from_rfc3339(&l.started_at)
                .ok()?
                .with_timezone(&Utc);
            Some(Campaign {
                id: l.id,
                location: l.location,
                signed: l.signed,
                started_at,
                stations: l
                    .stations
                    .into_iter()
                    .map(|s| CampaignStation {
                        station: s.station,
                        requested: s.requested,
                        reason: s.reason,
                        answer: s.answer,
                    })
                    .collect(),
            })
        });
        let Some(c) = read else {
            tracing::warn!(
                key,
                "a firmware campaign that does not read: left in settings"
            );
            continue;
        };
        insert(tx, &c).await?;
        super::settings::delete_in(tx, &key).await?;
    }
    Ok(())
}

impl Store {
    /// Keeps campaign `c` (one with its id replaces it), in one transaction.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_campaign(&self, c: &Campaign) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert(&mut tx, c).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Campaign `id`.
    ///
    /// # Errors
    ///
    /// The database failed, or a row is corrupt.
    pub async fn campaign(&self, id: i32) -> Result<Option<Campaign>> {
        Ok(self.read_campaigns(Some(id)).await?.pop())
    }

    /// Every campaign, newest first (by start, then id): campaigns are few.
    ///
    /// # Errors
    ///
    /// The database failed, or a row is corrupt.
    pub async fn campaigns(&self) -> Result<Vec<Campaign>> {
        self.read_campaigns(None).await
    }

    async fn read_campaigns(&self, id: Option<i32>) -> Result<Vec<Campaign>> {
        let corrupt = |what| StoreError::Corrupt(what);
        const COLUMNS: &str = "SELECT id, location, signed, started_at FROM firmware_campaigns";
        let rows = match id {
            Some(id) => {
                sqlx::query(&format!("{COLUMNS} WHERE id = $1"))
                    .bind(i64::from(id))
                    .fetch_all(&self.read)
                    .await?
            }
            None => {
                sqlx::query(&format!("{COLUMNS} ORDER BY started_at DESC, id DESC"))
                    .fetch_all(&self.read)
                    .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id = i32::try_from(r.try_get::<i64, _>(0)?)
                .map_err(|_| corrupt("firmware_campaigns.id"))?;
            let started_at = DateTime::parse_from_rfc3339(&r.try_get::<String, _>(3)?)
                .map_err(|_| corrupt("firmware_campaigns.started_at"))?
                .with_timezone(&Utc);
            let stations = sqlx::query(
                "SELECT station_id, requested, reason, answer FROM firmware_campaign_stations \
                 WHERE campaign_id = $1 ORDER BY position",
            )
            .bind(i64::from(id))
            .fetch_all(&self.read)
            .await?
            .into_iter()
            .map(|s| {
                let answer = s
                    .try_get::<Option<String>, _>(3)?
                    .map(|a| serde_json::from_str(&a))
                    .transpose()
                    .map_err(|_| corrupt("firmware_campaign_stations.answer"))?;
                Ok(CampaignStation {
                    station: s.try_get(0)?,
                    requested: s.try_get::<i64, _>(1)? != 0,
                    reason: s.try_get(2)?,
                    answer,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            out.push(Campaign {
                id,
                location: r.try_get(1)?,
                signed: r.try_get::<i64, _>(2)? != 0,
                started_at,
                stations,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    crate::store::on_both_stores!(
        /// Campaigns read back as kept, newest first, shown as the settings
        /// JSON showed them; a campaign of an earlier version moves to the
        /// tables when the store opens, one that does not read stays.
        campaigns_kept_and_moved_from_settings,
        campaigns_kept_and_moved_from_settings_on_postgres,
        "campaigns",
        kept_and_moved
    );

    async fn kept_and_moved(store: &Store) {
        let first = Campaign {
            id: 7,
            location: "https://fw.example/a.bin".into(),
            signed: true,
            started_at: at("2026-01-01T10:00:00Z"),
            stations: vec![
                CampaignStation {
                    station: "CS2".into(),
                    requested: true,
                    reason: None,
                    answer: Some(serde_json::json!({"status": "Accepted"})),
                },
                CampaignStation {
                    station: "CS1".into(),
                    requested: false,
                    reason: Some("not connected".into()),
                    answer: None,
                },
            ],
        };
        store.put_campaign(&first).await.unwrap();
        let second = Campaign {
            id: 3,
            signed: false,
            started_at: at("2026-01-02T10:00:00Z"),
            stations: Vec::new(),
            ..first.clone()
        };
        store.put_campaign(&second).await.unwrap();
        assert_eq!(store.campaign(7).await.unwrap(), Some(first.clone()));
        assert_eq!(store.campaign(8).await.unwrap(), None);
        let all = store.campaigns().await.unwrap();
        assert_eq!(all, vec![second.clone(), first.clone()]);
        assert_eq!(
            serde_json::to_value(&first).unwrap(),
            serde_json::json!({"id": 7, "location": "https://fw.example/a.bin", "signed": true,
                "started_at": "2026-01-01T10:00:00.000Z", "stations": [
                    {"station": "CS2", "requested": true, "answer": {"status": "Accepted"}},
                    {"station": "CS1", "requested": false, "reason": "not connected"}]})
        );
        // a campaign with its id replaces it
        let again = Campaign {
            stations: Vec::new(),
            ..first.clone()
        };
        store.put_campaign(&again).await.unwrap();
        assert_eq!(store.campaign(7).await.unwrap(), Some(again));

        // a store of an earlier version: campaigns in settings
        store
            .put_setting(
                "campaign:11",
                r#"{"id":11,"location":"ftp://fw/b","signed":false,"started_at":"2026-01-03T10:00:00.000Z",
                    "stations":[{"station":"CS9","requested":true,"answer":{"status":"Accepted"}}]}"#,
            )
            .await
            .unwrap();
        store.put_setting("campaign:12", "garbage").await.unwrap();
        let mut tx = store.pool.begin().await.unwrap();
        move_from_settings(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let moved = store.campaign(11).await.unwrap().unwrap();
        assert_eq!(
            (
                moved.location.as_str(),
                moved.stations.len(),
                moved.stations[0].requested
            ),
            ("ftp://fw/b", 1, true)
        );
        assert_eq!(store.setting("campaign:11").await.unwrap(), None);
        assert_eq!(
            store.setting("campaign:12").await.unwrap().as_deref(),
            Some("garbage")
        );
        assert_eq!(store.campaigns().await.unwrap()[0].id, 11);
    }
}
