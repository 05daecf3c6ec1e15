//! Keyset-paged lists: a page of rows in a stable order however many pages
//! are read and however the table changes meanwhile, with the total under
//! the filters. Each aggregate's `*_page` query (stations, tokens,
//! sessions, CDRs, alerts, tariffs, OCPI objects) is in its own file and
//! uses [`Store::page`].

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Result, Store, StoreError};

/// What a list request asks for: its filters and where the previous page
/// ended. Times are as stored (see [`now`](super::now)); the caller checks the values.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Rows per page.
    pub limit: i64,
    /// The sort key of the last row of the previous page ([`Page::next`]).
    pub after: Option<Vec<String>>,
    /// Only rows of this station.
    pub station: Option<String>,
    /// Only rows in this status (the list's own statuses).
    pub status: Option<String>,
    /// Only rows at or after this time.
    pub since: Option<String>,
    /// Only rows before this time.
    pub until: Option<String>,
    /// Only rows whose identity (and, where the list says, other text
    /// columns) contains this text, case-insensitively.
    pub search: Option<String>,
}

/// One page of a list in a stable order.
#[derive(Debug)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// The sort key of the last row when more follow (the next page's
    /// [`ListQuery::after`]).
    pub next: Option<Vec<String>>,
    /// Rows matching the filters, over all pages.
    pub total: i64,
}

/// A keyset-paged listing: rows in the order of `keys` (unique together,
/// never changed once written, so a row is on exactly one page however
/// many pages are read), filtered by `conds`.
pub(crate) struct Keyset<'a> {
    /// `FROM` and joins.
    pub(crate) from: &'a str,
    /// Selected columns; the keys follow them.
    pub(crate) cols: &'a str,
    /// Sort key expressions (text), most significant first.
    pub(crate) keys: &'a [&'a str],
    /// Newest (greatest) first.
    pub(crate) desc: bool,
}

/// A filter: `expr op value` with the value bound, or a fixed condition.
pub(crate) enum Cond<'a> {
    Cmp(&'a str, &'static str, String),
    Fixed(&'static str),
    /// One of the columns, lower-cased, matches the `LIKE` pattern (made by
    /// [`like_pattern`]).
    Like(&'static [&'static str], String),
}

/// Binds as `$n` in order.
struct Sql {
    text: String,
    binds: Vec<String>,
}

impl Sql {
    fn bind(&mut self, v: String) -> String {
        self.binds.push(v);
        format!("${}", self.binds.len())
    }

    fn conds(&mut self, conds: &[Cond<'_>]) {
        let mut first = true;
        for c in conds {
            self.text.push_str(if first { " WHERE " } else { " AND " });
            first = false;
            match c {
                Cond::Cmp(expr, op, v) => {
                    let p = self.bind(v.clone());
                    self.text.push_str(&format!("{expr} {op} {p}"));
                }
                Cond::Fixed(s) => self.text.push_str(s),
                Cond::Like(cols, pattern) => {
                    let p = self.bind(pattern.clone());
                    let any: Vec<String> = cols
                        .iter()
                        .map(|c| format!("LOWER({c}) LIKE {p} ESCAPE '\\'"))
                        .collect();
                    self.text.push_str(&format!("({})", any.join(" OR ")));
                }
            }
        }
    }
}

/// `(k1 > a OR (k1 = a AND (k2 > b ...)))` for the row after `after`.
fn after_cond(sql: &mut Sql, keys: &[&str], after: &[String], op: &str) -> String {
    match (keys, after) {
        ([k], [a]) => format!("{k} {op} {}", sql.bind(a.clone())),
        ([k, ks @ ..], [a, as_ @ ..]) => {
            let gt = sql.bind(a.clone());
            let eq = sql.bind(a.clone());
            let rest = after_cond(sql, ks, as_, op);
            format!("({k} {op} {gt} OR ({k} = {eq} AND {rest}))")
        }
        _ => "1 = 0".to_owned(),
    }
}

/// A `LIKE` pattern matching `text` anywhere, lower-cased, with `%`, `_`
/// and the escape character `\` escaped (see [`Cond::Like`]).
pub(crate) fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub(crate) fn time_conds<'a>(conds: &mut Vec<Cond<'a>>, expr: &'a str, q: &ListQuery) {
    if let Some(t) = &q.since {
        conds.push(Cond::Cmp(expr, ">=", t.clone()));
    }
    if let Some(t) = &q.until {
        conds.push(Cond::Cmp(expr, "<", t.clone()));
    }
}

impl Store {
    /// One page of `ks` under `conds`, with the total under `conds`.
    pub(crate) async fn page(
        &self,
        ks: &Keyset<'_>,
        conds: Vec<Cond<'_>>,
        q: &ListQuery,
    ) -> Result<(Vec<AnyRow>, Option<Vec<String>>, i64)> {
        let mut count = Sql {
            text: format!("SELECT COUNT(*) FROM {}", ks.from),
            binds: Vec::new(),
        };
        count.conds(&conds);
        let mut rows = Sql {
            text: format!(
                "SELECT {}, {} FROM {}",
                ks.cols,
                ks.keys.join(", "),
                ks.from
            ),
            binds: Vec::new(),
        };
        rows.conds(&conds);
        if let Some(after) = &q.after {
            if after.len() != ks.keys.len() {
                return Err(StoreError::BadCursor);
            }
            let cond = after_cond(&mut rows, ks.keys, after, if ks.desc { "<" } else { ">" });
            rows.text
                .push_str(if conds.is_empty() { " WHERE " } else { " AND " });
            rows.text.push_str(&cond);
        }
        let dir = if ks.desc { "DESC" } else { "ASC" };
        let order: Vec<String> = ks.keys.iter().map(|k| format!("{k} {dir}")).collect();
        let limit = q.limit.clamp(1, 1000);
        rows.text.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            limit + 1
        ));
        let mut total = sqlx::query(&count.text);
        for b in &count.binds {
            total = total.bind(b.clone());
        }
        let total: i64 = total.fetch_one(&self.read).await?.try_get(0)?;
        let mut rows_q = sqlx::query(&rows.text);
        for b in &rows.binds {
            rows_q = rows_q.bind(b.clone());
        }
        let mut rows = rows_q.fetch_all(&self.read).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = match rows.last() {
            Some(r) if more => {
                let first = r.columns().len() - ks.keys.len();
                Some(
                    (first..r.columns().len())
                        .map(|i| r.try_get::<String, _>(i))
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                )
            }
            _ => None,
        };
        Ok((rows, next, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keyset condition for two keys, numbered after the filters' binds.
    #[test]
    fn after_condition() {
        let mut sql = Sql {
            text: String::new(),
            binds: vec!["filter".into()],
        };
        let c = after_cond(&mut sql, &["a", "b"], &["x".into(), "y".into()], "<");
        assert_eq!(c, "(a < $2 OR (a = $3 AND b < $4))");
        assert_eq!(sql.binds, ["filter", "x", "x", "y"]);
    }
}
