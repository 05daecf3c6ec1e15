//! Id tokens: the records stations are answered from (cached; the cache
//! follows the store's own writes), and what authorization reads beyond a
//! token's record (csms-core's `authorization::authorize` takes it as a
//! plain value): whether it is in another active session (rule 5,
//! `ConcurrentTx`) and the master-pass group a 2.x station was given (rule
//! 4, 2.0.1 C16).

use chrono::{DateTime, Utc};
use evproto_ocpp_types::{v201, v21};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::paging::{like_pattern, time_conds, Cond, Keyset, ListQuery, Page};
use super::{now, ts, Result, Store, StoreError};

/// The device model variable (component and variable keys) a station's
/// master-pass group is read from.
pub(super) const MASTER_PASS_GROUP: (&str, &str) = ("AuthCtrlr", "MasterPassGroupId");

/// An id token as the CSMS keeps it: what authorization (the core's
/// `authorization::Record`) and the API read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token (1.6 idTag, 2.x idToken).
    pub id_token: String,
    /// Its type (2.x `IdTokenEnumType`: `ISO14443`, `Central`, ...).
    #[serde(rename = "type")]
    pub token_type: String,
    /// `Accepted`, `Blocked`, `Expired`, `Invalid` or `NoCredit`.
    pub status: String,
    /// Its group (1.6 `parentIdTag`, 2.x `groupIdToken`), told to stations
    /// so any token of the group may stop the session.
    pub group_id: Option<String>,
    /// After this instant the token is `Expired`.
    pub expires_at: Option<DateTime<Utc>>,
    /// It may be in several transactions at once (a card shared by several
    /// cars); otherwise a start while it is in another is `ConcurrentTx`.
    #[serde(default)]
    pub allow_concurrent: bool,
    /// The driver's language (RFC 5646): 2.x `language1`, and the language
    /// of the tariff text told to the driver (I01).
    #[serde(default)]
    pub language: Option<String>,
    /// When it was registered.
    pub created_at: String,
}

impl TokenRecord {
    /// From a row of `TOKEN_COLS`.
    fn from_row(r: &AnyRow) -> Result<TokenRecord> {
        let expires: Option<String> = r.try_get(4)?;
        Ok(TokenRecord {
            id_token: r.try_get(0)?,
            token_type: r.try_get(1)?,
            status: r.try_get(2)?,
            group_id: r.try_get(3)?,
            expires_at: expires
                .map(|e| {
                    DateTime::parse_from_rfc3339(&e)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| StoreError::Corrupt("tokens.expires_at"))
                })
                .transpose()?,
            created_at: r.try_get(5)?,
            allow_concurrent: r.try_get::<i64, _>(6)? != 0,
            language: r.try_get(7)?,
        })
    }
}

/// The columns [`TokenRecord::from_row`] reads, in its order.
const TOKEN_COLS: &str =
    "id_token, token_type, status, group_id, expires_at, created_at, allow_concurrent, language";

impl Store {
    /// Creates or updates a token (all but `created_at`, which a new one
    /// gets now); whether it was created.
    pub async fn upsert_token(&self, t: &TokenRecord) -> Result<bool> {
        let expires = t.expires_at.map(ts);
        let created = sqlx::query(
            "INSERT INTO tokens (id_token, token_type, status, group_id, expires_at, created_at, \
             allow_concurrent, language) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id_token) DO NOTHING",
        )
        .bind(&t.id_token)
        .bind(&t.token_type)
        .bind(&t.status)
        .bind(&t.group_id)
        .bind(&expires)
        .bind(now())
        .bind(i64::from(t.allow_concurrent))
        .bind(&t.language)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if !created {
            sqlx::query(
                "UPDATE tokens SET token_type = $1, status = $2, group_id = $3, expires_at = $4, \
                 allow_concurrent = $5, language = $6 WHERE id_token = $7",
            )
            .bind(&t.token_type)
            .bind(&t.status)
            .bind(&t.group_id)
            .bind(&expires)
            .bind(i64::from(t.allow_concurrent))
            .bind(&t.language)
            .bind(&t.id_token)
            .execute(&self.pool)
            .await?;
        }
        // read back (created_at) into the cache
        let stored = self.token(&t.id_token).await?;
        self.cache
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t.id_token.clone(), stored);
        self.cached_changed();
        Ok(created)
    }

    /// Deletes a token; whether there was one. Its wallet and sessions stay.
    pub async fn delete_token(&self, id_token: &str) -> Result<bool> {
        let gone = sqlx::query("DELETE FROM tokens WHERE id_token = $1")
            .bind(id_token)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        self.cache
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id_token.to_owned(), None);
        self.cached_changed();
        Ok(gone)
    }

    /// A token's status, if known (cached, see [`Store::token_record`]).
    pub async fn token_status(&self, id_token: &str) -> Result<Option<String>> {
        Ok(self.token_record(id_token).await?.map(|t| t.status))
    }

    /// A token as stations are answered about it, if known (cached; the
    /// cache follows [`Store::upsert_token`] and [`Store::delete_token`]).
    pub async fn token_record(&self, id_token: &str) -> Result<Option<TokenRecord>> {
        if let Some(t) = self
            .cache
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id_token)
        {
            return Ok(t.clone());
        }
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE id_token = $1"
        ))
        .bind(id_token)
        .fetch_optional(&self.read)
        .await?;
        let record = row.as_ref().map(TokenRecord::from_row).transpose()?;
        let mut cache = self.cache.tokens.write().unwrap_or_else(|e| e.into_inner());
        // a bound on what unknown tokens presented at random can fill
        if cache.len() >= 100_000 {
            cache.retain(|_, s| s.is_some());
        }
        // an upsert that raced this read wins
        Ok(cache.entry(id_token.to_owned()).or_insert(record).clone())
    }

    /// Every token.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens ORDER BY id_token"
        ))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(TokenRecord::from_row).collect()
    }

    /// One token, if known (from the database, not the cache).
    pub async fn token(&self, id_token: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE id_token = $1"
        ))
        .bind(id_token)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(TokenRecord::from_row).transpose()
    }

    /// Tokens by id; `status` is the token's, `since`/`until` bound its
    /// creation, `q` searches the token and its group.
    pub async fn tokens_page(&self, q: &ListQuery) -> Result<Page<TokenRecord>> {
        let mut conds = Vec::new();
        if let Some(s) = &q.status {
            conds.push(Cond::Cmp("status", "=", s.clone()));
        }
        if let Some(text) = &q.search {
            conds.push(Cond::Like(&["id_token", "group_id"], like_pattern(text)));
        }
        time_conds(&mut conds, "created_at", q);
        let ks = Keyset {
            from: "tokens",
            cols: TOKEN_COLS,
            keys: &["id_token"],
            desc: false,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(TokenRecord::from_row)
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }
}

impl Store {
    /// Whether `token` is in an active session other than `except`
    /// (compared as OCPP compares id tokens, case-insensitively).
    pub async fn in_another_active_session(
        &self,
        token: &str,
        except: Option<&str>,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM sessions WHERE status = 'Active' AND LOWER(id_token) = LOWER($1) \
             AND id <> $2 LIMIT 1",
        )
        .bind(token)
        .bind(except.unwrap_or(""))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    /// The station's master-pass group: the `Actual` value of
    /// `AuthCtrlr.MasterPassGroupId` in the device model it reported
    /// (NotifyReport), when it reported one. Cached per station: every
    /// write of that variable goes through [`Store::put_device_model`],
    /// which forgets the station's entry (and tells the other nodes in
    /// cluster mode, see store/cluster.rs).
    pub async fn master_pass_group(&self, station: &str) -> Result<Option<String>> {
        let generation = {
            let cache = self
                .cache
                .master_pass
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(g) = cache.groups.get(station) {
                return Ok(g.clone());
            }
            cache.generation
        };
        let group = self.read_master_pass_group(station).await?;
        self.cache
            .master_pass
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fill(generation, station, &group);
        Ok(group)
    }

    /// Forgets the cached master-pass group of `station` (`None`: of every
    /// station); a read in flight does not put back what it read.
    pub(super) fn forget_master_pass(&self, station: Option<&str>) {
        self.cache
            .master_pass
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(station);
    }

    /// [`Store::master_pass_group`] from the database.
    async fn read_master_pass_group(&self, station: &str) -> Result<Option<String>> {
        let (component, variable) = MASTER_PASS_GROUP;
        let Some(body) = self.device_variable(station, component, variable).await? else {
            return Ok(None);
        };
        // the Actual attribute's value, as the station's version reported it
        macro_rules! actual {
            ($data:expr) => {
                $data.variable_attribute.into_iter().find_map(|a| {
                    let kind = a.r#type.map(|t| t.as_str());
                    kind.is_none_or(|k| k == "Actual")
                        .then(|| a.value.map(|v| v.as_str().to_owned()))
                        .flatten()
                })
            };
        }
        let value = match serde_json::from_value::<v201::ReportDataType>(body.clone()) {
            Ok(d) => actual!(d),
            Err(_) => serde_json::from_value::<v21::ReportDataType>(body)
                .ok()
                .and_then(|d| actual!(d)),
        };
        Ok(value.filter(|v| !v.trim().is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(group: &str) -> serde_json::Value {
        serde_json::json!({
            "component": {"name": "AuthCtrlr"},
            "variable": {"name": "MasterPassGroupId"},
            "variableAttribute": [{"type": "Actual", "value": group}]
        })
    }

    /// The master-pass group is read once per station, and forgotten by a
    /// write of it (through the store, or by another node in cluster mode).
    #[tokio::test]
    async fn master_pass_group_cache_follows_writes() {
        let store = Store::open_temp("master-pass").await;
        let (component, variable) = MASTER_PASS_GROUP;
        assert_eq!(store.master_pass_group("CP1").await.unwrap(), None);
        // a report of it forgets the cached `None`
        store
            .put_device_model("CP1", component, variable, &reported("MP1"), 100)
            .await
            .unwrap();
        assert_eq!(
            store.master_pass_group("CP1").await.unwrap().as_deref(),
            Some("MP1")
        );
        // cached: a change behind the store's back is not read
        sqlx::query("UPDATE device_model SET body = $1 WHERE station_id = 'CP1'")
            .bind(reported("MP2").to_string())
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(
            store.master_pass_group("CP1").await.unwrap().as_deref(),
            Some("MP1")
        );
        // another variable, another station: the entry stays
        store
            .put_device_model("CP1", "AuthCtrlr", "Enabled", &serde_json::json!({}), 100)
            .await
            .unwrap();
        store
            .put_device_model("CP2", component, variable, &reported("MP9"), 100)
            .await
            .unwrap();
        assert_eq!(
            store.master_pass_group("CP1").await.unwrap().as_deref(),
            Some("MP1")
        );
        assert_eq!(
            store.master_pass_group("CP2").await.unwrap().as_deref(),
            Some("MP9")
        );
        // another node changed a cached table: read again
        store.forget_cached();
        assert_eq!(
            store.master_pass_group("CP1").await.unwrap().as_deref(),
            Some("MP2")
        );
        // a write through the store: read again
        store
            .put_device_model("CP1", component, variable, &reported("MP3"), 100)
            .await
            .unwrap();
        assert_eq!(
            store.master_pass_group("CP1").await.unwrap().as_deref(),
            Some("MP3")
        );
    }

    /// A read that began before a write (or a forget) does not fill the
    /// cache with what it read.
    #[test]
    fn master_pass_read_in_flight_does_not_fill_after_a_write() {
        let mut cache = super::super::MasterPassCache::default();
        let began = cache.generation;
        // the write lands while the read is in flight
        cache.forget(Some("CP1"));
        cache.fill(began, "CP1", &Some("OLD".into()));
        assert!(!cache.groups.contains_key("CP1"));
        // a read that began after it fills
        let began = cache.generation;
        cache.fill(began, "CP1", &Some("NEW".into()));
        assert_eq!(cache.groups.get("CP1"), Some(&Some("NEW".into())));
        cache.forget(None);
        assert!(cache.groups.is_empty());
    }
}
