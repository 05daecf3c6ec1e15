//! Fleets: accounts that own drivers, cards and vehicles, whose sessions
//! they pay by a monthly invoice instead of a wallet or a card (a fleet's
//! token holds nothing at the start: `crate::payments`), with credit notes
//! for disputed sessions.
//!
//! The operator manages fleets in the operator API (`/api/fleets`,
//! `/api/invoices`, documented in `/api/openapi.json`); a fleet's managers
//! (drivers with the `manager` role) read their own fleet and its
//! documents in the app API (`/app/v1/fleet`, `crate::app_api`): they
//! sign in like any driver, and see only the fleet they manage (another
//! fleet's invoice answers as no invoice, 404).
//!
//! An invoice covers the fleet's sessions that ended in a month (in the
//! CSMS's time zone) and are priced, each on one invoice only; issuing it
//! again for the month is a 409. Documents are made by `crate::invoices`
//! (lines, tax, rounding), numbered and kept by the store in one
//! transaction (`store::fleets`), and e-mailed with their PDF through the
//! outbox (`crate::mail`) when e-mail is configured.
//!
//! The monthly run ([`monthly`], once per cluster: the `invoicing` job)
//! invoices each fleet's months when they end: every quarter of an hour it
//! asks [`invoices_due`] which fleets and months are due after the last
//! month it finished (kept in the settings; the first start counts the
//! month before it as finished, so an install or an upgrade invoices from
//! the month that ends next), issues them as the operator's route does and
//! records the month. Once per fleet and month whatever runs it: the store
//! keeps one invoice per fleet and month (a unique index, in the
//! transaction that numbers it), so a second run, a second node or the
//! operator's `POST /api/invoicing/run` finds the month invoiced and
//! issues nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{body, ApiError, ApiResult};
use crate::invoices::{self, DocumentKind, Header, Invoice, InvoiceError};
use crate::store::fleets::{DocumentRow, Fleet, FleetCard, FleetMember, MailRow, Vehicle};
use crate::store::StoreError;
use crate::App;

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such fleet, driver, invoice or session.
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow it (invoiced already, nothing to invoice).
    #[error("{0}")]
    Conflict(String),
    /// Input that is not valid.
    #[error("{0}")]
    Invalid(String),
    /// E-mail is not configured.
    #[error("e-mail is not configured (CSMS_SMTP_URL)")]
    NoMail,
}

impl From<InvoiceError> for FleetError {
    fn from(e: InvoiceError) -> Self {
        match e {
            InvoiceError::NotOnInvoice(_) => FleetError::NotFound(e.to_string()),
            InvoiceError::Currency { .. } => FleetError::Conflict(e.to_string()),
            other => FleetError::Invalid(other.to_string()),
        }
    }
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        let status = match &e {
            FleetError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            FleetError::NotFound(_) => StatusCode::NOT_FOUND,
            FleetError::Conflict(_) => StatusCode::CONFLICT,
            FleetError::Invalid(_) => StatusCode::BAD_REQUEST,
            FleetError::NoMail => StatusCode::SERVICE_UNAVAILABLE,
        };
        match e {
            FleetError::Store(s) => s.into(),
            other => ApiError::new(status, other.to_string()),
        }
    }
}

fn tz(app: &App) -> chrono_tz::Tz {
    app.config.time_zone.parse().unwrap_or(chrono_tz::UTC)
}

/// Who issues the documents: the operator's OCPI party.
fn issuer(app: &App) -> String {
    format!(
        "Charging operator {}*{}",
        app.config.ocpi_country_code.to_ascii_uppercase(),
        app.config.ocpi_party_id.to_ascii_uppercase()
    )
}

async fn fleet_or_404(app: &App, id: &str) -> Result<Fleet, FleetError> {
    app.store
        .fleet(id)
        .await?
        .ok_or_else(|| FleetError::NotFound(format!("no fleet {id}")))
}

/// The e-mail that carries a document (when e-mail is configured).
fn document_mail(app: &App, doc: &Invoice) -> Option<MailRow> {
    app.mail.as_ref()?;
    let (subject, body) = invoices::mail_text(doc);
    Some(MailRow {
        id: format!("{}:{}", doc.header.kind.as_str(), doc.header.number),
        kind: doc.header.kind.as_str().to_owned(),
        recipient: doc.header.bill_to.clone(),
        subject,
        body,
        document: Some(doc.header.number.clone()),
        status: "Pending".into(),
    })
}

/// A made document under its number, with the e-mail that carries it.
fn numbered(
    app: &App,
    header: Header,
    made: Invoice,
) -> Result<(Invoice, Option<MailRow>), String> {
    let doc = Invoice { header, ..made };
    let mail = document_mail(app, &doc);
    Ok((doc, mail))
}

/// Issues a fleet's invoice of `period` (`YYYY-MM`): its priced sessions
/// that ended in the month and are on no invoice, numbered and kept in one
/// transaction, and e-mailed (queued) when e-mail is configured.
///
/// # Errors
///
/// No such fleet, a bad period, the month invoiced already or nothing to
/// invoice (409), sessions in another currency (409), the store failed.
pub async fn issue_invoice(app: &App, fleet_id: &str, period: &str) -> Result<Invoice, FleetError> {
    let fleet = fleet_or_404(app, fleet_id).await?;
    let tz = tz(app);
    let (from, to) = invoices::month_bounds(period, tz)?;
    if to > Utc::now() {
        return Err(FleetError::Conflict(format!(
            "{period} is not over yet in {tz}"
        )));
    }
    let mut charges = Vec::new();
    for (session, station, body) in app
        .store
        .fleet_sessions_to_invoice(fleet_id, &crate::store::ts(from))
        .await?
    {
        let cdr = crate::billing::decode_cdr(body)
            .map_err(|_| FleetError::Store(StoreError::Corrupt("cdrs.body")))?;
        let c = invoices::charge_of_cdr(&cdr, &session, &station);
        if c.stopped_at >= from && c.stopped_at < to {
            charges.push(c);
        }
    }
    let Some(currency) = charges.first().map(|c| c.currency.clone()) else {
        return Err(FleetError::Conflict(format!(
            "no priced session of fleet {fleet_id} to invoice in {period}"
        )));
    };
    let now = Utc::now();
    let header = |number: String| Header {
        number,
        kind: DocumentKind::Invoice,
        fleet_id: fleet.id.clone(),
        fleet_name: fleet.name.clone(),
        bill_to: fleet.email.clone(),
        issuer: issuer(app),
        period: period.to_owned(),
        issued_at: crate::store::ts(now),
        currency: currency.clone(),
        credits: None,
        reason: None,
    };
    // the mail is made from the document, so the document is made first
    let probe = invoices::invoice(header(String::new()), &charges)?;
    let year = now.with_timezone(&tz).year();
    let issued = app
        .store
        .issue_document(DocumentKind::Invoice, year, |number| {
            numbered(app, header(number), probe)
        })
        .await?;
    issued.map_err(FleetError::Invalid)?.ok_or_else(|| {
        FleetError::Conflict(format!(
            "fleet {fleet_id} has an invoice for {period}, or a session of it was invoiced meanwhile"
        ))
    })
}

/// Credits `sessions` of invoice `number` (disputed): a credit note with
/// their lines turned, numbered in its own series, e-mailed like an
/// invoice. A session is credited once.
///
/// # Errors
///
/// No such invoice or a session not on it (404), a session credited
/// already (409), no sessions (400), the store failed.
pub async fn issue_credit_note(
    app: &App,
    number: &str,
    sessions: &[String],
    reason: &str,
) -> Result<Invoice, FleetError> {
    let Some((row, original)) = app.store.document(number).await? else {
        return Err(FleetError::NotFound(format!("no invoice {number}")));
    };
    if row.kind != DocumentKind::Invoice.as_str() {
        return Err(FleetError::Invalid(format!("{number} is not an invoice")));
    }
    let now = Utc::now();
    let header = |number: String| Header {
        number,
        kind: DocumentKind::CreditNote,
        credits: Some(original.header.number.clone()),
        reason: Some(reason.to_owned()),
        issued_at: crate::store::ts(now),
        ..original.header.clone()
    };
    let probe = invoices::credit_note(header(String::new()), &original, sessions)?;
    let year = now.with_timezone(&tz(app)).year();
    app.store
        .issue_document(DocumentKind::CreditNote, year, |number| {
            numbered(app, header(number), probe)
        })
        .await?
        .map_err(FleetError::Invalid)?
        .ok_or_else(|| FleetError::Conflict("a session of these was credited already".into()))
}

/// Queues a document's e-mail again (once more: a new mail id per ask).
///
/// # Errors
///
/// No such document, no e-mail configured, the store failed.
pub async fn resend(app: &App, number: &str) -> Result<String, FleetError> {
    let Some((_, doc)) = app.store.document(number).await? else {
        return Err(FleetError::NotFound(format!("no document {number}")));
    };
    let mut m = document_mail(app, &doc).ok_or(FleetError::NoMail)?;
    m.id = format!("{}:{}", m.id, crate::store::random_hex(4));
    app.store.queue_mail(&m).await?;
    Ok(m.id)
}

/// A document in a format: `json`, `csv` or `pdf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The kept document.
    Json,
    /// Lines and totals, RFC 4180.
    Csv,
    /// Printable.
    Pdf,
}

/// A document as a response in `format` (a download for CSV and PDF).
pub fn render(doc: &Invoice, format: Format) -> Response {
    let name = &doc.header.number;
    let attach = |ext: &str| format!("attachment; filename=\"{name}.{ext}\"");
    match format {
        Format::Json => Json(doc).into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, attach("csv")),
            ],
            invoices::to_csv(doc),
        )
            .into_response(),
        Format::Pdf => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_owned()),
                (header::CONTENT_DISPOSITION, attach("pdf")),
            ],
            invoices::to_pdf(doc),
        )
            .into_response(),
    }
}

/// A fleet with what it owns.
#[derive(Debug, Serialize)]
pub struct FleetView {
    /// The fleet.
    #[serde(flatten)]
    pub fleet: Fleet,
    /// Its drivers and managers.
    pub members: Vec<FleetMember>,
    /// Its cards.
    pub cards: Vec<FleetCard>,
    /// Its vehicles.
    pub vehicles: Vec<Vehicle>,
}

/// A fleet with its members, cards and vehicles.
///
/// # Errors
///
/// No such fleet, the store failed.
pub async fn view(app: &App, id: &str) -> Result<FleetView, FleetError> {
    Ok(FleetView {
        fleet: fleet_or_404(app, id).await?,
        members: app.store.fleet_members(id).await?,
        cards: app.store.fleet_cards(id).await?,
        vehicles: app.store.vehicles(id).await?,
    })
}

// ---- the monthly run ----

/// The setting that keeps the last month the monthly run finished.
const MONTHLY_DONE: &str = "invoicing:monthly_done";
/// How often the monthly run looks whether a month ended.
pub const MONTHLY_TURN: Duration = Duration::from_secs(15 * 60);
/// Months one turn of the run catches up at most (more: the next turns).
const MAX_MONTHS: usize = 12;

fn year_month(period: &str) -> Option<(i32, u32)> {
    let (y, m) = period.split_once('-')?;
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (y > 0 && (1..=12).contains(&m)).then_some((y, m))
}

/// The months after `done` (`YYYY-MM`) up to the one before `now`'s month
/// in `tz`, oldest first, at most twelve (the next turn goes on); just the
/// month before `now`'s when `done` is no month.
pub fn months_due(now: DateTime<Utc>, tz: chrono_tz::Tz, done: &str) -> Vec<String> {
    let last = invoices::previous_month(now, tz);
    let Some(end) = year_month(&last) else {
        return Vec::new();
    };
    let Some(mut at) = year_month(done) else {
        return vec![last];
    };
    let mut out = Vec::new();
    while at < end && out.len() < MAX_MONTHS {
        at = if at.1 == 12 {
            (at.0 + 1, 1)
        } else {
            (at.0, at.1 + 1)
        };
        out.push(format!("{:04}-{:02}", at.0, at.1));
    }
    out
}

/// Which invoices are due: for each of `months`, each fleet that has no
/// invoice of it in `invoiced` (fleet, month), as (fleet, month), month by
/// month. (A fleet made after a month may still have sessions in it: cards
/// it took over; one with none gets no invoice when it is issued.)
pub fn invoices_due(
    months: &[String],
    fleets: &[Fleet],
    invoiced: &HashSet<(String, String)>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in months {
        for f in fleets {
            if !invoiced.contains(&(f.id.clone(), m.clone())) {
                out.push((f.id.clone(), m.clone()));
            }
        }
    }
    out
}

/// An invoice a run issued.
#[derive(Debug, Clone, Serialize)]
pub struct RunIssued {
    /// The fleet.
    pub fleet_id: String,
    /// The month, `YYYY-MM`.
    pub period: String,
    /// The invoice's number.
    pub number: String,
}

/// What a run of the monthly invoicing did.
#[derive(Debug, Clone, Serialize)]
pub struct MonthlyRun {
    /// The months it invoiced, oldest first.
    pub months: Vec<String>,
    /// The invoices it issued (none for a fleet with nothing to invoice or
    /// invoiced already).
    pub issued: Vec<RunIssued>,
}

/// Issues every fleet's invoice of `months` that is due ([`invoices_due`]),
/// each e-mailed (queued) as the operator's are. A fleet with nothing to
/// invoice, or whose month was invoiced meanwhile (by another node or the
/// operator), gets none.
///
/// # Errors
///
/// The store failed (what was issued before stays issued; a rerun goes on
/// from there).
pub async fn run_months(app: &App, months: Vec<String>) -> Result<MonthlyRun, FleetError> {
    let fleets = app.store.fleets().await?;
    let invoiced = app.store.invoiced_months(&months).await?;
    let mut issued = Vec::new();
    for (fleet, period) in invoices_due(&months, &fleets, &invoiced) {
        match issue_invoice(app, &fleet, &period).await {
            Ok(doc) => issued.push(RunIssued {
                fleet_id: fleet,
                period,
                number: doc.header.number,
            }),
            // nothing to invoice, invoiced meanwhile, another currency
            Err(FleetError::Conflict(why)) => {
                tracing::info!(%fleet, %period, "monthly invoicing: no invoice: {why}");
            }
            Err(FleetError::NotFound(_)) => {}
            Err(FleetError::Invalid(why)) => {
                tracing::warn!(%fleet, %period, "monthly invoicing: {why}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(MonthlyRun { months, issued })
}

/// One turn of the monthly run at `now`: the months ended since the last
/// finished one are invoiced and recorded.
async fn monthly_turn(app: &App, now: DateTime<Utc>) -> Result<MonthlyRun, FleetError> {
    let first = invoices::previous_month(now, tz(app));
    let done = app.store.setting_or_insert(MONTHLY_DONE, &first).await?;
    let run = run_months(app, months_due(now, tz(app), &done)).await?;
    if let Some(last) = run.months.last() {
        app.store.put_setting(MONTHLY_DONE, last).await?;
    }
    Ok(run)
}

/// The monthly run: a turn every [`MONTHLY_TURN`] on the node that holds
/// the `invoicing` job (every node of one).
pub async fn monthly(app: Arc<App>) {
    let mut tick = tokio::time::interval(MONTHLY_TURN);
    loop {
        tick.tick().await;
        if !app.jobs.holds(crate::cluster::lease::Job::Invoicing) {
            continue;
        }
        match monthly_turn(&app, Utc::now()).await {
            Ok(run) if !run.issued.is_empty() => {
                tracing::info!(
                    months = ?run.months,
                    invoices = run.issued.len(),
                    "monthly invoicing"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("monthly invoicing: {e}"),
        }
    }
}

// ---- the operator API ----

/// The operator API's fleet and invoice routes (behind the operator key:
/// merged into `api::admin_router`).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/fleets", get(list_fleets).post(create_fleet))
        .route("/api/fleets/{id}", get(get_fleet))
        .route(
            "/api/fleets/{id}/members/{driver_id}",
            put(put_member).delete(delete_member),
        )
        .route("/api/fleets/{id}/cards/{id_token}", put(put_card))
        .route("/api/fleets/{id}/vehicles", post(post_vehicle))
        .route(
            "/api/fleets/{id}/invoices",
            get(list_invoices).post(post_invoice),
        )
        .route("/api/invoices/{number}", get(get_json))
        .route("/api/invoices/{number}/csv", get(get_csv))
        .route("/api/invoices/{number}/pdf", get(get_pdf))
        .route("/api/invoices/{number}/send", post(send))
        .route(
            "/api/invoices/{number}/credit-notes",
            post(post_credit_note),
        )
        .route("/api/invoicing/run", post(post_run))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetBody {
    name: String,
    email: String,
}

fn invalid(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason)
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), ApiError> {
    let n = s.trim().chars().count();
    if n == 0 || n > max || s.chars().any(char::is_control) {
        return Err(invalid(format!("{what}: 1 to {max} characters")));
    }
    Ok(())
}

async fn list_fleets(State(app): State<Arc<App>>) -> ApiResult {
    Ok(Json(app.store.fleets().await?).into_response())
}

/// `POST /api/fleets` `{name, email}`: 201 with the fleet.
async fn create_fleet(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let b: FleetBody = body(&bytes)?;
    check_text("name", &b.name, 100)?;
    let email = crate::drivers::normalize_email(&b.email).map_err(invalid)?;
    let f = app.store.create_fleet(b.name.trim(), &email).await?;
    Ok((StatusCode::CREATED, Json(f)).into_response())
}

async fn get_fleet(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(view(&app, &id).await?).into_response())
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    Driver,
    Manager,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    role: Role,
}

/// `PUT /api/fleets/{id}/members/{driver_id}` `{role}`: the driver joins
/// (or changes role); 409 when another fleet has them.
async fn put_member(
    State(app): State<Arc<App>>,
    Path((id, driver)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b: MemberBody = body(&bytes)?;
    fleet_or_404(&app, &id).await?;
    if crate::store_drivers::DriverStore::new(app.store.clone())
        .driver(&driver)
        .await?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no driver {driver}"),
        ));
    }
    let role = match b.role {
        Role::Driver => "driver",
        Role::Manager => "manager",
    };
    if !app.store.put_fleet_member(&id, &driver, role).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the driver is in another fleet",
        ));
    }
    Ok(Json(view(&app, &id).await?).into_response())
}

async fn delete_member(
    State(app): State<Arc<App>>,
    Path((id, driver)): Path<(String, String)>,
) -> ApiResult {
    if !app.store.drop_fleet_member(&id, &driver).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such member of this fleet",
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    #[serde(default)]
    label: Option<String>,
}

/// `PUT /api/fleets/{id}/cards/{id_token}` `{label?}`: 201; 409 when the
/// token is someone's.
async fn put_card(
    State(app): State<Arc<App>>,
    Path((id, token)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let b: CardBody = body(&bytes)?;
    let token = token.trim().to_uppercase();
    crate::drivers::check_rfid(&token).map_err(invalid)?;
    if let Some(l) = &b.label {
        check_text("label", l, 64)?;
    }
    fleet_or_404(&app, &id).await?;
    if !app
        .store
        .add_fleet_card(&id, &token, b.label.as_deref())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the token belongs to a fleet or a driver already",
        ));
    }
    Ok((StatusCode::CREATED, Json(view(&app, &id).await?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VehicleBody {
    plate: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// `POST /api/fleets/{id}/vehicles` `{plate, label?, id_token?}`: 201.
async fn post_vehicle(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: VehicleBody = body(&bytes)?;
    check_text("plate", &b.plate, 20)?;
    if let Some(l) = &b.label {
        check_text("label", l, 64)?;
    }
    let token = b.id_token.map(|t| t.trim().to_uppercase());
    if let Some(t) = &token {
        crate::drivers::check_rfid(t).map_err(invalid)?;
    }
    fleet_or_404(&app, &id).await?;
    match app
        .store
        .add_vehicle(&id, b.plate.trim(), b.label.as_deref(), token.as_deref())
        .await?
    {
        Some(v) => Ok((StatusCode::CREATED, Json(v)).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "the token belongs to a fleet or a driver already",
        )),
    }
}

async fn list_invoices(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    fleet_or_404(&app, &id).await?;
    let docs: Vec<DocumentRow> = app.store.documents(&id).await?;
    Ok(Json(docs).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvoiceBody {
    /// `YYYY-MM`; default the month before this one.
    #[serde(default)]
    period: Option<String>,
}

/// `POST /api/fleets/{id}/invoices` `{period?}`: 201 with the invoice.
async fn post_invoice(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: InvoiceBody = if bytes.is_empty() {
        InvoiceBody { period: None }
    } else {
        body(&bytes)?
    };
    let period = b
        .period
        .unwrap_or_else(|| invoices::previous_month(Utc::now(), tz(&app)));
    let doc = issue_invoice(&app, &id, &period).await?;
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// When the run believes it is (RFC 3339, not in the future); default now.
    #[serde(default)]
    at: Option<String>,
}

/// `POST /api/invoicing/run` `{at?}`: the monthly run for the month before
/// `at`'s month (default now's): every fleet's invoice of it that is not
/// issued yet (to catch a month up, or in a lab); 200 with what it issued.
async fn post_run(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let b: RunBody = if bytes.is_empty() {
        RunBody { at: None }
    } else {
        body(&bytes)?
    };
    let now = Utc::now();
    let at = match b.at {
        None => now,
        Some(t) => DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| invalid("at: an RFC 3339 time"))?,
    };
    if at > now || at.year() < 2000 {
        return Err(invalid("at: from 2000 on, and not in the future"));
    }
    let run = run_months(&app, vec![invoices::previous_month(at, tz(&app))]).await?;
    Ok(Json(run).into_response())
}

async fn document(app: &App, number: &str, format: Format) -> ApiResult {
    match app.store.document(number).await? {
        Some((_, doc)) => Ok(render(&doc, format)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no document {number}"),
        )),
    }
}

async fn get_json(State(app): State<Arc<App>>, Path(n): Path<String>) -> ApiResult {
    document(&app, &n, Format::Json).await
}

async fn get_csv(State(app): State<Arc<App>>, Path(n): Path<String>) -> ApiResult {
    document(&app, &n, Format::Csv).await
}

async fn get_pdf(State(app): State<Arc<App>>, Path(n): Path<String>) -> ApiResult {
    document(&app, &n, Format::Pdf).await
}

#[derive(Serialize)]
struct Queued {
    mail: String,
}

/// `POST /api/invoices/{number}/send`: e-mails it (again): 202.
async fn send(State(app): State<Arc<App>>, Path(n): Path<String>) -> ApiResult {
    let mail = resend(&app, &n).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { mail })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditBody {
    sessions: Vec<String>,
    reason: String,
}

/// `POST /api/invoices/{number}/credit-notes` `{sessions, reason}`: 201
/// with the credit note.
async fn post_credit_note(
    State(app): State<Arc<App>>,
    Path(n): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: CreditBody = body(&bytes)?;
    check_text("reason", &b.reason, 200)?;
    if b.sessions.len() > 1000 {
        return Err(invalid("sessions: at most 1000"));
    }
    let doc = issue_credit_note(&app, &n, &b.sessions, b.reason.trim()).await?;
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(id: &str, made: &str) -> Fleet {
        Fleet {
            id: id.into(),
            name: id.into(),
            email: format!("{id}@example.com"),
            created_at: made.into(),
        }
    }

    #[test]
    fn months_come_due_when_they_end_and_once() {
        let utc = chrono_tz::UTC;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // November is done: nothing until December ends
        assert!(months_due(at("2026-12-31T23:59:59Z"), utc, "2026-11").is_empty());
        assert_eq!(
            months_due(at("2027-01-01T00:00:00Z"), utc, "2026-11"),
            vec!["2026-12"]
        );
        // a node down over two month ends catches both up, oldest first
        assert_eq!(
            months_due(at("2027-02-03T10:00:00Z"), utc, "2026-11"),
            vec!["2026-12", "2027-01"]
        );
        // at most a year a turn
        let long = months_due(at("2030-01-15T00:00:00Z"), utc, "2026-01");
        assert_eq!(
            (long.len(), long[0].as_str(), long[11].as_str()),
            (12, "2026-02", "2027-01")
        );
        // a month ends in the CSMS's time zone: 23:30 UTC on 31 Dec is
        // already January in Amsterdam
        let ams: chrono_tz::Tz = "Europe/Amsterdam".parse().unwrap();
        assert!(months_due(at("2026-12-31T22:30:00Z"), utc, "2026-11").is_empty());
        assert_eq!(
            months_due(at("2026-12-31T23:30:00Z"), ams, "2026-11"),
            vec!["2026-12"]
        );
        // a setting that is no month: the month before
        assert_eq!(
            months_due(at("2027-01-05T00:00:00Z"), utc, "garbage"),
            vec!["2026-12"]
        );
    }

    #[test]
    fn each_fleet_is_due_once_per_month() {
        let fleets = [
            fleet("acme", "2026-01-01T00:00:00Z"),
            fleet("beta", "2026-12-15T08:00:00Z"),
        ];
        let months = vec!["2026-11".to_owned(), "2026-12".to_owned()];
        let none = HashSet::new();
        let due = invoices_due(&months, &fleets, &none);
        let pairs: Vec<(&str, &str)> = due.iter().map(|(f, m)| (f.as_str(), m.as_str())).collect();
        assert_eq!(
            pairs,
            vec![
                ("acme", "2026-11"),
                ("beta", "2026-11"),
                ("acme", "2026-12"),
                ("beta", "2026-12")
            ]
        );
        // invoiced already (another node, the operator): not again
        let invoiced: HashSet<_> = [("acme".to_owned(), "2026-12".to_owned())].into();
        let due = invoices_due(&months, &fleets, &invoiced);
        assert!(!due.contains(&("acme".to_owned(), "2026-12".to_owned())));
        assert_eq!(due.len(), 3);
        // nothing due once every pair is invoiced; nothing without months
        let all: HashSet<_> = invoices_due(&months, &fleets, &none).into_iter().collect();
        assert!(invoices_due(&months, &fleets, &all).is_empty());
        assert!(invoices_due(&[], &fleets, &none).is_empty());
    }
}
