//! What the CSMS knows of each station's local authorization list
//! ([`crate::local_list`]): the version the station last accepted and,
//! when known, its entries — `local_lists` and `local_list_entries`
//! (migration 29), written together in one transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{now, Result, Store, StoreError};

/// One entry of a station's list as kept: how the station answers for the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ListEntry {
    /// The authorization status, as the wire names it (`Accepted`, ...).
    pub status: String,
    /// The token's group.
    pub group: Option<String>,
    /// The group's token type, as the wire names it.
    pub group_type: Option<String>,
    /// Until when the station may trust the entry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A station's list as kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptList {
    /// The version the station last accepted (0: none).
    pub version: i32,
    /// Its entries by token, when the CSMS knows them.
    pub entries: Option<BTreeMap<String, ListEntry>>,
}

/// Keeps `list` as `station`'s in `tx`.
async fn write(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    station: &str,
    list: &KeptList,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO local_lists (station_id, version, entries_known, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (station_id) DO UPDATE SET version = $2, entries_known = $3, updated_at = $4",
    )
    .bind(station.to_owned())
    .bind(i64::from(list.version))
    .bind(i64::from(list.entries.is_some()))
    .bind(now())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM local_list_entries WHERE station_id = $1")
        .bind(station.to_owned())
        .execute(&mut **tx)
        .await?;
    for (token, e) in list.entries.iter().flatten() {
        sqlx::query(
            "INSERT INTO local_list_entries (station_id, id_token, status, group_id, group_type, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(station.to_owned())
        .bind(token.clone())
        .bind(e.status.clone())
        .bind(e.group.clone())
        .bind(e.group_type.clone())
        .bind(e.expires_at.map(super::ts))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Migration 29's data step, in its transaction: the lists kept as
/// settings (`local_list_version:{id}`, `local_list_entries:{id}`: JSON,
/// empty when unknown) move to the tables; entries that do not read are
/// taken as unknown (the next update is then a full one), logged.
pub(super) async fn move_from_settings(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    let rows = sqlx::query(
        "SELECT key, value FROM settings WHERE key LIKE 'local!_list!_version:%' ESCAPE '!'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let (key, value): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let Some(station) = key.strip_prefix("local_list_version:") else {
            continue;
        };
        let entries_key = format!("local_list_entries:{station}");
        let text: Option<String> = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(entries_key.clone())
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let entries = match text.as_deref() {
            None | Some("") => None,
            Some(t) => serde_json::from_str(t)
                .map_err(|e| {
                    tracing::warn!(
                        station,
                        "a local list's entries that do not read: taken as unknown: {e}"
                    )
                })
                .ok(),
        };
        let list = KeptList {
            version: value.parse().unwrap_or(0),
            entries,
        };
        write(tx, station, &list).await?;
        super::settings::delete_in(tx, &key).await?;
        super::settings::delete_in(tx, &entries_key).await?;
    }
    Ok(())
}

impl Store {
    /// What the CSMS knows of `station`'s list (none kept: version 0,
    /// entries unknown).
    ///
    /// # Errors
    ///
    /// The database failed, or a row is corrupt.
    pub async fn local_list(&self, station: &str) -> Result<KeptList> {
        let Some(r) =
            sqlx::query("SELECT version, entries_known FROM local_lists WHERE station_id = $1")
                .bind(station.to_owned())
                .fetch_optional(&self.read)
                .await?
        else {
            return Ok(KeptList::default());
        };
        let version = i32::try_from(r.try_get::<i64, _>(0)?)
            .map_err(|_| StoreError::Corrupt("local_lists.version"))?;
        if r.try_get::<i64, _>(1)? == 0 {
            return Ok(KeptList {
                version,
                entries: None,
            });
        }
        let mut entries = BTreeMap::new();
        for e in sqlx::query(
            "SELECT id_token, status, group_id, group_type, expires_at FROM local_list_entries WHERE station_id = $1",
        )
        .bind(station.to_owned())
        .fetch_all(&self.read)
        .await?
        {
            let expires_at = e
                .try_get::<Option<String>, _>(4)?
                .map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
                .transpose()
                .map_err(|_| StoreError::Corrupt("local_list_entries.expires_at"))?;
            entries.insert(
                e.try_get(0)?,
                ListEntry {
                    status: e.try_get(1)?,
                    group: e.try_get(2)?,
                    group_type: e.try_get(3)?,
                    expires_at,
                },
            );
        }
        Ok(KeptList {
            version,
            entries: Some(entries),
        })
    }

    /// Keeps `list` as `station`'s, version and entries in one transaction.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_local_list(&self, station: &str, list: &KeptList) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        write(&mut tx, station, list).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn kept_and_moved(store: &Store) {
        assert_eq!(store.local_list("CS1").await.unwrap(), KeptList::default());
        let at = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let list = KeptList {
            version: 3,
            entries: Some(BTreeMap::from([
                (
                    "TAG1".to_string(),
                    ListEntry {
                        status: "Accepted".into(),
                        group: Some("FLEET".into()),
                        group_type: Some("Central".into()),
                        expires_at: Some(at),
                    },
                ),
                (
                    "TAG2".to_string(),
                    ListEntry {
                        status: "Blocked".into(),
                        group: None,
                        group_type: None,
                        expires_at: None,
                    },
                ),
            ])),
        };
        store.put_local_list("CS1", &list).await.unwrap();
        assert_eq!(store.local_list("CS1").await.unwrap(), list);
        // forgotten entries: the version stays, the entries are unknown
        let forgotten = KeptList {
            version: 4,
            entries: None,
        };
        store.put_local_list("CS1", &forgotten).await.unwrap();
        assert_eq!(store.local_list("CS1").await.unwrap(), forgotten);
        // known and empty is not unknown
        let empty = KeptList {
            version: 5,
            entries: Some(BTreeMap::new()),
        };
        store.put_local_list("CS1", &empty).await.unwrap();
        assert_eq!(store.local_list("CS1").await.unwrap(), empty);

        // a store of an earlier version: lists in settings
        for (k, v) in [
            ("local_list_version:CS2", "7"),
            (
                "local_list_entries:CS2",
                r#"{"TAG9":{"status":"Accepted","group":null,"group_type":null,"expires_at":null}}"#,
            ),
            ("local_list_version:CS3", "2"),
            ("local_list_entries:CS3", ""),
            ("local_list_version:CS4", "1"),
            ("local_list_entries:CS4", "garbage"),
        ] {
            store.put_setting(k, v).await.unwrap();
        }
        let mut tx = store.pool.begin().await.unwrap();
        move_from_settings(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let cs2 = store.local_list("CS2").await.unwrap();
        assert_eq!(cs2.version, 7);
        assert_eq!(cs2.entries.unwrap()["TAG9"].status, "Accepted");
        assert_eq!(
            store.local_list("CS3").await.unwrap(),
            KeptList {
                version: 2,
                entries: None
            }
        );
        assert_eq!(store.local_list("CS4").await.unwrap().entries, None);
        for k in [
            "local_list_version:CS2",
            "local_list_entries:CS2",
            "local_list_entries:CS4",
        ] {
            assert_eq!(store.setting(k).await.unwrap(), None, "{k}");
        }
    }

    crate::store::on_both_stores!(
        /// A list reads back as kept (version, entries, unknown entries, an
        /// empty list); the lists of an earlier version move from settings.
        local_lists_kept_and_moved_from_settings,
        local_lists_kept_and_moved_from_settings_on_postgres,
        "local_lists",
        kept_and_moved
    );
}
