//! What sessions earned: their CDRs (one per session, kept as built) and
//! the revenue summed from them.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::Row;

use super::paging::{time_conds, Cond, Keyset, ListQuery, Page};
use super::{json_col, now, Result, Store, StoreError};

impl Store {
    /// Stores a session's CDR once; a second one for the same session is
    /// ignored (returns false).
    pub async fn insert_cdr(
        &self,
        session_id: &str,
        currency: &str,
        excl: Decimal,
        incl: Decimal,
        body: &Value,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO cdrs (session_id, currency, total_excl, total_incl, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(session_id)
        .bind(currency)
        .bind(excl.to_string())
        .bind(incl.to_string())
        .bind(body.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// A session's CDR.
    pub async fn cdr(&self, session_id: &str) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT body FROM cdrs WHERE session_id = $1")
            .bind(session_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| json_col(&r, "cdr")).transpose()
    }

    /// CDRs, newest first.
    pub async fn cdrs(&self, limit: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT body FROM cdrs ORDER BY created_at DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| json_col(r, "cdr")).collect()
    }

    /// CDRs, newest first; `station` is the session's, `since`/`until`
    /// bound when the CDR was made.
    pub async fn cdrs_page(&self, q: &ListQuery) -> Result<Page<Value>> {
        let mut conds = Vec::new();
        let from = if let Some(s) = &q.station {
            conds.push(Cond::Cmp("s.station_id", "=", s.clone()));
            "cdrs c JOIN sessions s ON s.id = c.session_id"
        } else {
            "cdrs c"
        };
        time_conds(&mut conds, "c.created_at", q);
        let ks = Keyset {
            from,
            cols: "c.body",
            keys: &["c.created_at", "c.session_id"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(|r| json_col(r, "cdr"))
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// Revenue: (currency, total excl. VAT, total incl. VAT, CDR count) per currency.
    pub async fn revenue(&self) -> Result<Vec<(String, Decimal, Decimal, i64)>> {
        let rows = sqlx::query("SELECT currency, total_excl, total_incl FROM cdrs")
            .fetch_all(&self.read)
            .await?;
        let mut out: Vec<(String, Decimal, Decimal, i64)> = Vec::new();
        for r in rows {
            let cur: String = r.try_get(0)?;
            let e = Decimal::from_str(&r.try_get::<String, _>(1)?)
                .map_err(|_| StoreError::Corrupt("cdr total"))?;
            let i = Decimal::from_str(&r.try_get::<String, _>(2)?)
                .map_err(|_| StoreError::Corrupt("cdr total"))?;
            match out.iter_mut().find(|x| x.0 == cur) {
                Some(x) => {
                    x.1 += e;
                    x.2 += i;
                    x.3 += 1;
                }
                None => out.push((cur, e, i, 1)),
            }
        }
        Ok(out)
    }

    /// Revenue incl. VAT and CDR count per currency, summed by the
    /// database (as floating point: what a metric is).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn revenue_sums(&self) -> Result<Vec<(String, f64, i64)>> {
        let rows = sqlx::query(
            "SELECT currency, SUM(CAST(total_incl AS DOUBLE PRECISION)), COUNT(*) FROM cdrs GROUP BY currency ORDER BY currency",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}
