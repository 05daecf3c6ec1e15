//! Tariffs: OCPI 2.2.1 tariff documents by id (checked by the caller),
//! cached as the pricing of every session reads them.

use serde_json::Value;

use super::paging::{Keyset, ListQuery, Page};
use super::{json_col, now, Result, Store};

impl Store {
    /// Creates or replaces a tariff (OCPI 2.2.1 JSON, checked by the caller).
    pub async fn put_tariff(&self, id: &str, body: &Value) -> Result<bool> {
        let created = sqlx::query("INSERT INTO tariffs (id, body, updated_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(body.to_string())
            .bind(now())
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        if !created {
            sqlx::query("UPDATE tariffs SET body = $1, updated_at = $2 WHERE id = $3")
                .bind(body.to_string())
                .bind(now())
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        self.cache
            .tariffs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), Some(body.clone()));
        self.cached_changed();
        Ok(created)
    }

    /// Marks a tariff gone in the cache (after its row was deleted).
    pub(crate) fn forget_tariff(&self, id: &str) {
        self.cache
            .tariffs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), None);
        self.cached_changed();
    }

    /// A tariff's JSON (cached; the cache follows [`Store::put_tariff`]).
    pub async fn tariff(&self, id: &str) -> Result<Option<Value>> {
        if let Some(t) = self
            .cache
            .tariffs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(t.clone());
        }
        let row = sqlx::query("SELECT body FROM tariffs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        let body = row.map(|r| json_col(&r, "tariff")).transpose()?;
        let mut cache = self
            .cache
            .tariffs
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 10_000 {
            cache.clear();
        }
        Ok(cache.entry(id.to_owned()).or_insert(body).clone())
    }

    /// Every tariff's JSON.
    pub async fn tariffs(&self) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT body FROM tariffs ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| json_col(r, "tariff")).collect()
    }

    /// Tariffs by id.
    pub async fn tariffs_page(&self, q: &ListQuery) -> Result<Page<Value>> {
        let ks = Keyset {
            from: "tariffs",
            cols: "body",
            keys: &["id"],
            desc: false,
        };
        let (rows, next, total) = self.page(&ks, Vec::new(), q).await?;
        let items = rows
            .iter()
            .map(|r| json_col(r, "tariff"))
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }
}
