//! Paginated GETs (transport_and_format "Pagination"): `offset` (default 0),
//! `limit` (capped by the server), `date_from` (inclusive) and `date_to`
//! (exclusive) on `last_updated`; responses carry `X-Total-Count`,
//! `X-Limit` (the server's cap) and, unless this is the last page,
//! `Link: <url>; rel="next"` with the original filters.

use chrono::{DateTime, SecondsFormat, Utc};

/// A refused query parameter (OCPI 2001, HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query parameter `{0}`")]
pub struct InvalidParameter(pub String);

/// One page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// First item (0-based).
    pub offset: usize,
    /// Items on this page (already capped).
    pub limit: usize,
    /// Only items with `last_updated >= date_from`.
    pub date_from: Option<DateTime<Utc>>,
    /// Only items with `last_updated < date_to`.
    pub date_to: Option<DateTime<Utc>>,
}

/// Decodes `%XX` escapes byte-wise (a `%` not followed by two hex digits is
/// kept as is, never a panic); `+` becomes a space only in query strings.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if b.len() >= i + 3 => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Page {
    /// Reads the query string (without `?`); `limit` is capped at `max_limit`
    /// and defaults to it.
    ///
    /// # Errors
    ///
    /// [`InvalidParameter`] for unparseable numbers or dates.
    pub fn from_query(query: &str, max_limit: usize) -> Result<Self, InvalidParameter> {
        let mut page = Page {
            offset: 0,
            limit: max_limit,
            date_from: None,
            date_to: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v, true);
            let bad = || InvalidParameter(k.to_owned());
            match k {
                "offset" => page.offset = v.parse().map_err(|_| bad())?,
                "limit" => page.limit = v.parse::<usize>().map_err(|_| bad())?.min(max_limit),
                "date_from" => page.date_from = Some(parse_time(&v).ok_or_else(bad)?),
                "date_to" => page.date_to = Some(parse_time(&v).ok_or_else(bad)?),
                _ => {}
            }
        }
        Ok(page)
    }

    /// Whether an item updated at `last_updated` is in the date range.
    pub fn in_range(&self, last_updated: DateTime<Utc>) -> bool {
        self.date_from.is_none_or(|f| last_updated >= f)
            && self.date_to.is_none_or(|t| last_updated < t)
    }

    /// The response headers for a page of a list with `total` matching
    /// items, served at `base_url` (no query); `max_limit` is the server's cap.
    pub fn headers(
        &self,
        total: usize,
        base_url: &str,
        max_limit: usize,
    ) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("X-Total-Count", total.to_string()),
            ("X-Limit", max_limit.to_string()),
        ];
        let next = self.offset.saturating_add(self.limit);
        if next < total && self.limit > 0 {
            let mut q = vec![format!("offset={next}"), format!("limit={}", self.limit)];
            if let Some(f) = self.date_from {
                q.push(format!(
                    "date_from={}",
                    percent_encode(&f.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                ));
            }
            if let Some(t) = self.date_to {
                q.push(format!(
                    "date_to={}",
                    percent_encode(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                ));
            }
            h.push((
                "Link",
                format!("<{base_url}?{}>; rel=\"next\"", q.join("&")),
            ));
        }
        h
    }
}

/// OCPI DateTime: RFC 3339, UTC; a missing zone is read as UTC (the
/// specification says all times are UTC and some partners omit the `Z`).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decode_is_byte_wise_and_plus_only_in_queries() {
        // A `%` before a multi-byte character used to be sliced mid-char.
        assert_eq!(percent_decode("%a\u{e9}", false), "%a\u{e9}");
        assert_eq!(percent_decode("%41%2f%zz%", false), "A/%zz%");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("a+b", true), "a b");
    }

    #[test]
    fn query_defaults_caps_and_errors() {
        let p = Page::from_query("", 100).unwrap();
        assert_eq!((p.offset, p.limit), (0, 100));
        let p = Page::from_query(
            "offset=50&limit=1000&date_from=2019-01-28T12%3A00%3A00Z&date_to=2019-01-29T12:00:00",
            100,
        )
        .unwrap();
        assert_eq!(
            (p.offset, p.limit),
            (50, 100),
            "limit capped at the server's maximum"
        );
        assert_eq!(p.date_to.unwrap().to_rfc3339(), "2019-01-29T12:00:00+00:00");
        assert_eq!(
            Page::from_query("offset=-1", 100),
            Err(InvalidParameter("offset".into()))
        );
        assert_eq!(
            Page::from_query("date_from=yesterday", 100),
            Err(InvalidParameter("date_from".into()))
        );
    }

    #[test]
    fn date_from_inclusive_date_to_exclusive() {
        let p = Page::from_query(
            "date_from=2024-01-01T00:00:00Z&date_to=2024-01-02T00:00:00Z",
            10,
        )
        .unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(p.in_range(t("2024-01-01T00:00:00Z")));
        assert!(p.in_range(t("2024-01-01T23:59:59Z")));
        assert!(!p.in_range(t("2024-01-02T00:00:00Z")));
        assert!(!p.in_range(t("2023-12-31T23:59:59Z")));
    }

    #[test]
    fn link_keeps_filters_and_disappears_on_the_last_page() {
        let p = Page::from_query("offset=0&limit=10&date_from=2024-01-01T00:00:00Z", 50).unwrap();
        let h = p.headers(25, "https://cpo.example.com/ocpi/2.2.1/locations", 50);
        assert_eq!(h[0], ("X-Total-Count", "25".to_owned()));
        assert_eq!(h[1], ("X-Limit", "50".to_owned()));
        assert_eq!(h[2].1, "<https://cpo.example.com/ocpi/2.2.1/locations?offset=10&limit=10&date_from=2024-01-01T00%3A00%3A00Z>; rel=\"next\"");
        let last = Page::from_query("offset=20&limit=10", 50).unwrap();
        assert_eq!(
            last.headers(25, "https://x/l", 50).len(),
            2,
            "no Link on the last page"
        );
    }
}
