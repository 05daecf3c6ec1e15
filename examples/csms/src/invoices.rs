//! Fleet invoices and credit notes, pure: lines from priced sessions
//! (their CDRs), totals per tax rate, and the document as JSON, CSV and PDF.
//! No store and no clock: `crate::fleets` reads the sessions, numbers the
//! document and keeps it.
//!
//! # Lines
//!
//! One line per session and tax rate (a session priced under one VAT rate,
//! the usual case, is one line): the station, start and stop, the energy,
//! the price before tax, the tax rate and the amount. A session's price
//! before tax is its CDR's, split by dimension (flat fee, energy, time,
//! parking, reservation) and each dimension taxed at the VAT of the tariff's
//! price component of that dimension (no VAT given: 0 %); what the CDR's
//! total has beyond its dimensions (a tariff's minimum or maximum price)
//! goes to the rate of the largest part.
//!
//! # The rounding rule
//!
//! Amounts are integers of the currency's minor unit (cents for EUR, yen for
//! JPY), as everywhere in the CSMS (`evproto_csms_core::money`):
//!
//! 1. a line's **price before tax** is the exact price of its part of the
//!    session rounded to the minor unit, half away from zero;
//! 2. its **tax** is that rounded price × the rate, rounded the same way;
//! 3. its **amount** is price + tax;
//! 4. the **totals per tax rate** and of the document are sums of the
//!    lines' rounded figures.
//!
//! So every figure on the document adds up exactly on paper. A line's
//! amount may differ by one minor unit from the session's total incl. VAT
//! rounded once (what a card is charged and the app shows), since here the
//! tax is computed on the rounded price. A credit note's lines are the
//! credited lines with their signs turned.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use evproto_csms_core::money::{exponent, Currency, Money, MoneyError};
use evproto_ocpi::v221::{Cdr, Price, TariffDimensionType};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why a document cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvoiceError {
    /// Not a month as `YYYY-MM`.
    #[error("period: a month as YYYY-MM")]
    BadPeriod,
    /// An amount or currency that is not money.
    #[error("money: {0}")]
    Money(#[from] MoneyError),
    /// Sessions priced in different currencies than the document.
    #[error("session {session} is priced in {found}, the invoice in {currency}")]
    Currency {
        /// The session.
        session: String,
        /// Its currency.
        found: String,
        /// The document's.
        currency: String,
    },
    /// A credit note for a session the invoice does not have.
    #[error("session {0} is not on the invoice")]
    NotOnInvoice(String),
    /// A credit note without sessions.
    #[error("sessions: at least one")]
    Empty,
}

/// Invoice or credit note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// A fleet's month.
    Invoice,
    /// Sessions of an invoice credited back.
    CreditNote,
}

impl DocumentKind {
    /// The number series: `INV` and `CN`, each gap-free per year.
    pub fn series(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "INV",
            DocumentKind::CreditNote => "CN",
        }
    }

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "invoice",
            DocumentKind::CreditNote => "credit_note",
        }
    }
}

/// A document's number: `INV-2026-000001` (series, year of issue, the
/// year's sequence).
pub fn number(kind: DocumentKind, year: i32, seq: i64) -> String {
    format!("{}-{year}-{seq:06}", kind.series())
}

/// A session's price before tax, split by tax rate (exact, as priced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCharge {
    /// The session.
    pub session_id: String,
    /// Its station.
    pub station: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Stop.
    pub stopped_at: DateTime<Utc>,
    /// Energy, kWh.
    pub energy_kwh: Decimal,
    /// ISO 4217.
    pub currency: String,
    /// (VAT %, price before tax) per rate, rates ascending.
    pub parts: Vec<(Decimal, Decimal)>,
}

/// The price components' VAT of a dimension in the CDR's tariff (0 without).
fn rate_of(cdr: &Cdr, kind: &TariffDimensionType) -> Decimal {
    cdr.tariffs
        .iter()
        .flat_map(|t| t.elements.iter())
        .flat_map(|e| e.price_components.iter())
        .find(|c| &c.r#type == kind)
        .and_then(|c| c.vat)
        .unwrap_or(Decimal::ZERO)
}

/// A priced session as an invoice sees it: its CDR split by tax rate.
pub fn charge_of_cdr(cdr: &Cdr, session_id: &str, station: &str) -> SessionCharge {
    use TariffDimensionType as T;
    let dims: [(&Option<Price>, T); 5] = [
        (&cdr.total_fixed_cost, T::Flat),
        (&cdr.total_energy_cost, T::Energy),
        (&cdr.total_time_cost, T::Time),
        (&cdr.total_parking_cost, T::ParkingTime),
        (&cdr.total_reservation_cost, T::Time),
    ];
    let mut by_rate: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for (price, kind) in dims {
        if let Some(p) = price.as_ref().filter(|p| !p.excl_vat.is_zero()) {
            *by_rate.entry(rate_of(cdr, &kind).normalize()).or_default() += p.excl_vat;
        }
    }
    let rest = cdr.total_cost.excl_vat - by_rate.values().copied().sum::<Decimal>();
    if !rest.is_zero() {
        let rate = by_rate
            .iter()
            .max_by_key(|(_, v)| v.abs())
            .map(|(r, _)| *r)
            .unwrap_or_else(|| rate_of(cdr, &T::Energy).normalize());
        *by_rate.entry(rate).or_default() += rest;
    }
    SessionCharge {
        session_id: session_id.to_owned(),
        station: station.to_owned(),
        started_at: cdr.start_date_time.0,
        stopped_at: cdr.end_date_time.0,
        energy_kwh: cdr.total_energy.normalize(),
        currency: cdr.currency.as_str().to_ascii_uppercase(),
        parts: by_rate.into_iter().collect(),
    }
}

/// One line: a session's part under one tax rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The session.
    pub session_id: String,
    /// Its station.
    pub station: String,
    /// Start (RFC 3339, UTC).
    pub started_at: String,
    /// Stop (RFC 3339, UTC).
    pub stopped_at: String,
    /// Energy, kWh (the session's, on each of its lines).
    pub energy_kwh: Decimal,
    /// VAT, percent.
    pub tax_rate: Decimal,
    /// Price before tax, minor units.
    pub net_minor: i64,
    /// Tax, minor units.
    pub tax_minor: i64,
    /// Price + tax, minor units.
    pub amount_minor: i64,
}

/// The totals of one tax rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxTotal {
    /// VAT, percent.
    pub tax_rate: Decimal,
    /// Sum of the lines' prices before tax, minor units.
    pub net_minor: i64,
    /// Sum of the lines' taxes, minor units.
    pub tax_minor: i64,
    /// Sum of the lines' amounts, minor units.
    pub amount_minor: i64,
}

/// Who a document is from and for, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// `INV-2026-000001`.
    pub number: String,
    /// Invoice or credit note.
    pub kind: DocumentKind,
    /// The fleet billed.
    pub fleet_id: String,
    /// Its name.
    pub fleet_name: String,
    /// Where it is sent.
    pub bill_to: String,
    /// The issuer (the operator's name).
    pub issuer: String,
    /// The month, `YYYY-MM`.
    pub period: String,
    /// When issued (RFC 3339).
    pub issued_at: String,
    /// ISO 4217.
    pub currency: String,
    /// For a credit note: the invoice it corrects.
    pub credits: Option<String>,
    /// For a credit note: why.
    pub reason: Option<String>,
}

/// An invoice or a credit note, as kept, exported as JSON and rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Number, parties, period.
    #[serde(flatten)]
    pub header: Header,
    /// Decimals of the currency's minor unit (EUR: 2).
    pub minor_unit: u32,
    /// The lines, by start time.
    pub lines: Vec<Line>,
    /// Per tax rate, ascending.
    pub tax_totals: Vec<TaxTotal>,
    /// Sum of prices before tax, minor units.
    pub total_net_minor: i64,
    /// Sum of taxes, minor units.
    pub total_tax_minor: i64,
    /// What is owed (negative: credited), minor units.
    pub total_minor: i64,
}

fn currency(code: &str) -> Result<Currency, InvoiceError> {
    Ok(Money::parse(Decimal::ZERO, code)?.currency())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The lines of a session (the rounding rule's steps 1-3).
///
/// # Errors
///
/// Another currency than `cur`, or amounts out of range.
pub fn lines_of(c: &SessionCharge, cur: Currency) -> Result<Vec<Line>, InvoiceError> {
    if !c.currency.eq_ignore_ascii_case(cur.code()) {
        return Err(InvoiceError::Currency {
            session: c.session_id.clone(),
            found: c.currency.clone(),
            currency: cur.code().to_owned(),
        });
    }
    c.parts
        .iter()
        .map(|(rate, excl)| {
            let net = Money::try_round(*excl, cur)?;
            let tax = Money::try_round(net.to_decimal() * *rate / Decimal::from(100), cur)?;
            Ok(Line {
                session_id: c.session_id.clone(),
                station: c.station.clone(),
                started_at: rfc3339(c.started_at),
                stopped_at: rfc3339(c.stopped_at),
                energy_kwh: c.energy_kwh,
                tax_rate: rate.normalize(),
                net_minor: net.minor(),
                tax_minor: tax.minor(),
                amount_minor: net.minor() + tax.minor(),
            })
        })
        .collect()
}

/// A document of `lines` (totals per rate and overall: step 4).
fn document(header: Header, mut lines: Vec<Line>) -> Result<Invoice, InvoiceError> {
    let minor_unit = exponent(currency(&header.currency)?)?;
    lines.sort_by(|a, b| {
        (&a.started_at, &a.session_id, a.tax_rate).cmp(&(&b.started_at, &b.session_id, b.tax_rate))
    });
    let mut per_rate: BTreeMap<Decimal, TaxTotal> = BTreeMap::new();
    for l in &lines {
        let t = per_rate.entry(l.tax_rate).or_insert(TaxTotal {
            tax_rate: l.tax_rate,
            net_minor: 0,
            tax_minor: 0,
            amount_minor: 0,
        });
        t.net_minor += l.net_minor;
        t.tax_minor += l.tax_minor;
        t.amount_minor += l.amount_minor;
    }
    let tax_totals: Vec<TaxTotal> = per_rate.into_values().collect();
    Ok(Invoice {
        header,
        minor_unit,
        total_net_minor: tax_totals.iter().map(|t| t.net_minor).sum(),
        total_tax_minor: tax_totals.iter().map(|t| t.tax_minor).sum(),
        total_minor: tax_totals.iter().map(|t| t.amount_minor).sum(),
        tax_totals,
        lines,
    })
}

/// A fleet's invoice of `charges` (the sessions of its month).
///
/// # Errors
///
/// A session in another currency, or amounts out of range.
pub fn invoice(header: Header, charges: &[SessionCharge]) -> Result<Invoice, InvoiceError> {
    let cur = currency(&header.currency)?;
    let mut lines = Vec::new();
    for c in charges {
        lines.extend(lines_of(c, cur)?);
    }
    document(header, lines)
}

/// A credit note of `sessions` of `original`: their lines with the signs
/// turned.
///
/// # Errors
///
/// No sessions, or one the invoice does not have.
pub fn credit_note(
    header: Header,
    original: &Invoice,
    sessions: &[String],
) -> Result<Invoice, InvoiceError> {
    if sessions.is_empty() {
        return Err(InvoiceError::Empty);
    }
    let mut lines = Vec::new();
    for s in sessions {
        let of: Vec<&Line> = original
            .lines
            .iter()
            .filter(|l| &l.session_id == s)
            .collect();
        if of.is_empty() {
            return Err(InvoiceError::NotOnInvoice(s.clone()));
        }
        lines.extend(of.into_iter().map(|l| Line {
            net_minor: -l.net_minor,
            tax_minor: -l.tax_minor,
            amount_minor: -l.amount_minor,
            ..l.clone()
        }));
    }
    document(header, lines)
}

/// `minor` minor units as a decimal with the unit's decimals (`-12.30`).
pub fn decimal(minor: i64, minor_unit: u32) -> String {
    Decimal::new(minor, minor_unit).to_string()
}

/// A month `YYYY-MM` in a time zone: its first instant and the next
/// month's, in UTC.
///
/// # Errors
///
/// [`InvoiceError::BadPeriod`].
pub fn month_bounds(
    period: &str,
    tz: chrono_tz::Tz,
) -> Result<(DateTime<Utc>, DateTime<Utc>), InvoiceError> {
    let (y, m) = period.split_once('-').ok_or(InvoiceError::BadPeriod)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(InvoiceError::BadPeriod);
    }
    let (y, m): (i32, u32) = (
        y.parse().map_err(|_| InvoiceError::BadPeriod)?,
        m.parse().map_err(|_| InvoiceError::BadPeriod)?,
    );
    let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or(InvoiceError::BadPeriod)?;
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    }
    .ok_or(InvoiceError::BadPeriod)?;
    let at = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or(InvoiceError::BadPeriod)
    };
    Ok((at(first)?, at(next)?))
}

/// The month before the one `now` is in, in `tz` (`YYYY-MM`).
pub fn previous_month(now: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let local = now.with_timezone(&tz);
    let (y, m) = if local.month() == 1 {
        (local.year() - 1, 12)
    } else {
        (local.year(), local.month() - 1)
    };
    format!("{y:04}-{m:02}")
}

/// A CSV field: quoted when it holds a comma, a quote or a line break
/// (quotes doubled), and a leading `=`, `+`, `-` or `@` of text is kept
/// from being read as a formula by a leading `'`.
fn csv_field(s: &str) -> String {
    let s = match s.chars().next() {
        Some('=' | '+' | '@') => format!("'{s}"),
        Some('-') if s.parse::<Decimal>().is_err() => format!("'{s}"),
        _ => s.to_owned(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The lines as CSV (RFC 4180, a header row, amounts in major units with
/// the currency's decimals), then one row per tax rate's totals and one of
/// the document's.
pub fn to_csv(inv: &Invoice) -> String {
    let d = |m: i64| decimal(m, inv.minor_unit);
    let cur = inv.header.currency.as_str();
    let mut out = String::from(
        "number,row,session,station,started_at,stopped_at,energy_kwh,net,tax_rate,tax,amount,currency\r\n",
    );
    let mut row = |cells: [&str; 12]| {
        let cells: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    let number = inv.header.number.as_str();
    for l in &inv.lines {
        row([
            number,
            "line",
            &l.session_id,
            &l.station,
            &l.started_at,
            &l.stopped_at,
            &l.energy_kwh.to_string(),
            &d(l.net_minor),
            &l.tax_rate.to_string(),
            &d(l.tax_minor),
            &d(l.amount_minor),
            cur,
        ]);
    }
    for t in &inv.tax_totals {
        row([
            number,
            "tax_total",
            "",
            "",
            "",
            "",
            "",
            &d(t.net_minor),
            &t.tax_rate.to_string(),
            &d(t.tax_minor),
            &d(t.amount_minor),
            cur,
        ]);
    }
    row([
        number,
        "total",
        "",
        "",
        "",
        "",
        "",
        &d(inv.total_net_minor),
        "",
        &d(inv.total_tax_minor),
        &d(inv.total_minor),
        cur,
    ]);
    out
}

/// Text as the PDF's WinAnsi (Latin-1 for what it has; other characters
/// become `?`).
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match u32::from(c) {
            0x20..=0x7e | 0xa0..=0xff => u32::from(c) as u8,
            _ => b'?',
        })
        .collect()
}

/// The document's text, line by line, as the PDF prints it.
pub fn text_lines(inv: &Invoice) -> Vec<String> {
    let h = &inv.header;
    let d = |m: i64| decimal(m, inv.minor_unit);
    let title = match h.kind {
        DocumentKind::Invoice => "Invoice",
        DocumentKind::CreditNote => "Credit note",
    };
    let mut t = vec![
        format!("{title} {}", h.number),
        format!("Issued {} by {}", h.issued_at, h.issuer),
        format!("Fleet {} ({}), {}", h.fleet_name, h.fleet_id, h.bill_to),
        format!("Period {}, amounts in {}", h.period, h.currency),
    ];
    if let Some(c) = &h.credits {
        t.push(format!("Credits invoice {c}"));
    }
    if let Some(r) = &h.reason {
        t.push(format!("Reason: {r}"));
    }
    t.push(String::new());
    t.push("Session | Station | Start - Stop | kWh | Net | VAT % | VAT | Amount".into());
    for l in &inv.lines {
        t.push(format!(
            "{} | {} | {} - {} | {} | {} | {} | {} | {}",
            l.session_id,
            l.station,
            l.started_at,
            l.stopped_at,
            l.energy_kwh,
            d(l.net_minor),
            l.tax_rate,
            d(l.tax_minor),
            d(l.amount_minor)
        ));
    }
    t.push(String::new());
    for r in &inv.tax_totals {
        t.push(format!(
            "VAT {} %: net {}, VAT {}, amount {}",
            r.tax_rate,
            d(r.net_minor),
            d(r.tax_minor),
            d(r.amount_minor)
        ));
    }
    t.push(format!(
        "Total net {}, VAT {}, total {} {}",
        d(inv.total_net_minor),
        d(inv.total_tax_minor),
        d(inv.total_minor),
        h.currency
    ));
    t
}

/// The document as a PDF: A4 pages of [`text_lines`] in Helvetica (one of
/// the standard 14 fonts: nothing embedded, text extractable).
pub fn to_pdf(inv: &Invoice) -> Vec<u8> {
    use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};
    const PER_PAGE: usize = 60;
    const SIZE: f32 = 8.0;
    let text = text_lines(inv);
    let pages: Vec<&[String]> = text.chunks(PER_PAGE).collect();
    let (catalog, tree, font, info) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
    let page_ids: Vec<(Ref, Ref)> = (0..pages.len())
        .map(|i| {
            let base = 5 + 2 * i32::try_from(i).unwrap_or(0);
            (Ref::new(base), Ref::new(base + 1))
        })
        .collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().map(|(p, _)| *p))
        .count(i32::try_from(page_ids.len()).unwrap_or(i32::MAX));
    pdf.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&inv.header.number))
        .producer(TextStr("evproto csms"));
    for (chunk, (page, content)) in pages.iter().zip(&page_ids) {
        {
            let mut p = pdf.page(*page);
            p.parent(tree)
                .media_box(Rect::new(0.0, 0.0, 595.0, 842.0))
                .contents(*content);
            p.resources().fonts().pair(Name(b"F1"), font);
        }
        let mut c = Content::new();
        c.begin_text();
        c.set_font(Name(b"F1"), SIZE);
        c.set_leading(SIZE * 1.5);
        c.next_line(36.0, 800.0);
        for line in chunk.iter() {
            c.show(Str(&win_ansi(line)));
            c.next_line_using_leading();
        }
        c.end_text();
        pdf.stream(*content, &c.finish());
    }
    pdf.finish()
}

/// The e-mail text that goes with a document.
pub fn mail_text(inv: &Invoice) -> (String, String) {
    let h = &inv.header;
    let d = decimal(inv.total_minor, inv.minor_unit);
    match h.kind {
        DocumentKind::Invoice => (
            format!("Invoice {} for {} ({})", h.number, h.fleet_name, h.period),
            format!(
                "Hello,\n\nattached is invoice {} of {} for the charging sessions of {} in {}: {} lines, {} {} incl. VAT.\n\n{}\n",
                h.number,
                h.issuer,
                h.fleet_name,
                h.period,
                inv.lines.len(),
                d,
                h.currency,
                h.issuer
            ),
        ),
        DocumentKind::CreditNote => (
            format!("Credit note {} for {}", h.number, h.fleet_name),
            format!(
                "Hello,\n\nattached is credit note {} correcting invoice {}: {} {}.\n\n{}\n",
                h.number,
                h.credits.as_deref().unwrap_or(""),
                d,
                h.currency,
                h.issuer
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn charge(id: &str, start: &str, parts: &[(&str, &str)]) -> SessionCharge {
        SessionCharge {
            session_id: id.into(),
            station: "CP1".into(),
            started_at: at(start),
            stopped_at: at(start) + chrono::Duration::hours(1),
            energy_kwh: d("10"),
            currency: "EUR".into(),
            parts: parts.iter().map(|(r, v)| (d(r), d(v))).collect(),
        }
    }

    fn header(kind: DocumentKind, n: &str) -> Header {
        Header {
            number: n.into(),
            kind,
            fleet_id: "flt_1".into(),
            fleet_name: "Acme, \"Vans\"".into(),
            bill_to: "ap@acme.example".into(),
            issuer: "CPO".into(),
            period: "2026-11".into(),
            issued_at: "2026-12-01T00:00:00Z".into(),
            currency: "EUR".into(),
            credits: None,
            reason: None,
        }
    }

    /// The rounding rule, each step: the price rounded half away from zero,
    /// the tax on the rounded price rounded the same way, totals as sums.
    #[test]
    fn rounding_rule_and_totals_per_rate() {
        let charges = [
            // 2.345 -> 2.35 net; 2.35 * 21 % = 0.4935 -> 0.49
            charge("S2", "2026-11-02T10:00:00Z", &[("21", "2.345")]),
            // 0.125 -> 0.13 net; 0.13 * 9 % = 0.0117 -> 0.01; and 10 at 21 % = 2.10
            charge(
                "S1",
                "2026-11-01T10:00:00Z",
                &[("9", "0.125"), ("21", "10")],
            ),
            // 2.50 at 21 %: 0.525 -> 0.53 (half away from zero)
            charge("S3", "2026-11-03T10:00:00Z", &[("21", "2.50")]),
        ];
        let inv = invoice(header(DocumentKind::Invoice, "INV-2026-000001"), &charges).unwrap();
        let got: Vec<(&str, i64, i64, i64)> = inv
            .lines
            .iter()
            .map(|l| {
                (
                    l.session_id.as_str(),
                    l.net_minor,
                    l.tax_minor,
                    l.amount_minor,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("S1", 13, 1, 14),
                ("S1", 1000, 210, 1210),
                ("S2", 235, 49, 284),
                ("S3", 250, 53, 303),
            ]
        );
        assert_eq!(
            inv.tax_totals,
            vec![
                TaxTotal {
                    tax_rate: d("9"),
                    net_minor: 13,
                    tax_minor: 1,
                    amount_minor: 14
                },
                TaxTotal {
                    tax_rate: d("21"),
                    net_minor: 1485,
                    tax_minor: 312,
                    amount_minor: 1797
                },
            ]
        );
        assert_eq!(
            (inv.total_net_minor, inv.total_tax_minor, inv.total_minor),
            (1498, 313, 1811)
        );
        // a session in another currency is refused
        let mut usd = charge("S4", "2026-11-04T10:00:00Z", &[("0", "1")]);
        usd.currency = "USD".into();
        assert!(matches!(
            invoice(header(DocumentKind::Invoice, "X"), &[usd]),
            Err(InvoiceError::Currency { .. })
        ));
        // a credit note turns the credited session's lines
        let mut h = header(DocumentKind::CreditNote, "CN-2026-000001");
        h.credits = Some(inv.header.number.clone());
        let cn = credit_note(h.clone(), &inv, &["S1".into()]).unwrap();
        assert_eq!(
            (cn.lines.len(), cn.total_net_minor, cn.total_minor),
            (2, -1013, -1224)
        );
        assert_eq!(
            credit_note(h.clone(), &inv, &["S9".into()]).unwrap_err(),
            InvoiceError::NotOnInvoice("S9".into())
        );
        assert_eq!(credit_note(h, &inv, &[]).unwrap_err(), InvoiceError::Empty);
        assert_eq!(decimal(-1224, 2), "-12.24");
        assert_eq!(number(DocumentKind::CreditNote, 2026, 7), "CN-2026-000007");
    }

    #[test]
    fn csv_quotes_and_keeps_formulas_out() {
        let mut c = charge("S1", "2026-11-01T10:00:00Z", &[("21", "1")]);
        c.station = "=HYPERLINK(\"x\"),1".into();
        let inv = invoice(header(DocumentKind::Invoice, "INV-2026-000001"), &[c]).unwrap();
        let csv = to_csv(&inv);
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            rows[1],
            "INV-2026-000001,line,S1,\"'=HYPERLINK(\"\"x\"\"),1\",2026-11-01T10:00:00Z,2026-11-01T11:00:00Z,10,1.00,21,0.21,1.21,EUR"
        );
        assert_eq!(
            rows[2],
            "INV-2026-000001,tax_total,,,,,,1.00,21,0.21,1.21,EUR"
        );
        assert_eq!(rows[3], "INV-2026-000001,total,,,,,,1.00,,0.21,1.21,EUR");
        assert_eq!(csv_field("-1.50"), "-1.50");
    }

    #[test]
    fn pdf_is_a_pdf_with_the_text() {
        let charges: Vec<SessionCharge> = (0..130)
            .map(|i| charge(&format!("S{i}"), "2026-11-01T10:00:00Z", &[("21", "1")]))
            .collect();
        let inv = invoice(header(DocumentKind::Invoice, "INV-2026-000001"), &charges).unwrap();
        let pdf = to_pdf(&inv);
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(
            text.contains("/Count 3"),
            "130 lines and the header: 3 pages"
        );
        assert!(text.contains("(Invoice INV-2026-000001)"));
        assert!(text.trim_end().ends_with("%%EOF"));
    }

    #[test]
    fn months_in_a_time_zone() {
        let tz: chrono_tz::Tz = "Europe/Amsterdam".parse().unwrap();
        let (a, b) = month_bounds("2026-12", tz).unwrap();
        assert_eq!(
            (rfc3339(a), rfc3339(b)),
            ("2026-11-30T23:00:00Z".into(), "2026-12-31T23:00:00Z".into())
        );
        for bad in ["2026-13", "2026-1", "26-01", "x", "2026-00"] {
            assert_eq!(
                month_bounds(bad, tz).unwrap_err(),
                InvoiceError::BadPeriod,
                "{bad}"
            );
        }
        assert_eq!(previous_month(at("2027-01-01T00:30:00Z"), tz), "2026-12");
        assert_eq!(previous_month(at("2026-12-31T23:30:00Z"), tz), "2026-12");
    }
}
