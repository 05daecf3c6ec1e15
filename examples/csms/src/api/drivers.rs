//! `/api/drivers/...`, `/api/invoices` and `/api/sessions/{id}/card-payment`:
//! what the console reads of the paying side. The drivers' app accounts
//! (their tokens, fleet and sessions), every fleet's documents in one
//! list, and a session's card payment with its refunds. Read only: drivers
//! sign up and pay in the app API (`crate::app_api`), fleets and refunds
//! are written through `crate::fleets` and `crate::payments`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use crate::payments::{CardPayment, CardRefund};
use crate::store::Session;
use crate::store_drivers::{Driver, DriverStore, OwnedToken};
use crate::App;

use super::{page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams};

/// Sessions shown with a driver.
const DRIVER_SESSIONS: i64 = 50;

/// `GET /api/drivers`: the drivers' accounts by e-mail address; `q` in the
/// address or id, `since`/`until` on when the account was made.
pub(super) async fn list_drivers(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        time: true,
        search: true,
        ..Filters::NONE
    })?;
    let page = DriverStore::new(app.store.clone()).drivers_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

/// The fleet a driver is in.
#[derive(Debug, Serialize)]
struct Membership {
    /// `flt_...`.
    fleet_id: String,
    /// `driver` or `manager`.
    role: String,
}

/// A driver as the console shows it.
#[derive(Debug, Serialize)]
struct DriverView {
    #[serde(flatten)]
    driver: Driver,
    /// The id tokens they own (cards and the app's own).
    tokens: Vec<OwnedToken>,
    /// Their fleet, when they are in one (it pays their sessions by invoice).
    fleet: Option<Membership>,
    /// Their latest sessions, newest first.
    sessions: Vec<Session>,
}

/// `GET /api/drivers/{id}`: a driver with their tokens, fleet and latest
/// sessions; 404 for an unknown id.
pub(super) async fn get_driver(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let drivers = DriverStore::new(app.store.clone());
    let Some(driver) = drivers.driver(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no driver {id}"),
        ));
    };
    let fleet = app
        .store
        .fleet_of_driver(&id)
        .await?
        .map(|(fleet_id, role)| Membership { fleet_id, role });
    Ok(Json(DriverView {
        tokens: drivers.tokens_of(&id).await?,
        sessions: drivers.sessions_of(&id, DRIVER_SESSIONS).await?,
        fleet,
        driver,
    })
    .into_response())
}

/// `GET /api/invoices`: every fleet's invoices and credit notes, newest
/// first; `status` is the kind, `q` in the number or the fleet's id.
pub(super) async fn list_invoices(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters {
        statuses: &["invoice", "credit_note"],
        search: true,
        ..Filters::NONE
    })?;
    let page = app.store.documents_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

/// A session's card payment and its refunds.
#[derive(Debug, Serialize)]
struct CardPaymentView {
    #[serde(flatten)]
    payment: CardPayment,
    /// What is left to refund, minor units (captured less refunded).
    refundable_minor: i64,
    /// Its refunds, oldest first.
    refunds: Vec<CardRefund>,
}

/// `GET /api/sessions/{id}/card-payment`: the session's card payment as
/// the gateway left it (held, captured, refunded, the gateway's own
/// status) with its refunds; 404 when the session was not paid by card
/// (or cards are not configured).
pub(super) async fn get_card_payment(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult {
    let none = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no card payment for session {id}"),
        )
    };
    let cards = app.payments.cards().ok_or_else(none)?;
    let payment = cards.payment(&id).await?.ok_or_else(none)?;
    Ok(Json(CardPaymentView {
        refundable_minor: (payment.captured_minor - payment.refunded_minor).max(0),
        refunds: cards.refunds(&id).await?,
        payment,
    })
    .into_response())
}
