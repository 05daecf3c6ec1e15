//! `/api/tariffs/...`: tariffs (OCPI tariff JSON) and their checks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::App;

use super::{
    body, created_or_ok, page_response, ApiError, ApiQuery, ApiResult, Filters, ListParams,
};

/// Tariffs by id.
pub(super) async fn list_tariffs(
    State(app): State<Arc<App>>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let q = q.check(Filters::NONE)?;
    let page = app.store.tariffs_page(&q).await?;
    Ok(page_response(page.items, page.next, page.total))
}

pub(super) async fn get_tariff(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.store.tariff(&id).await? {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown tariff {id}"),
        )),
    }
}

/// `PUT /api/tariffs/{id}`: an OCPI 2.2.1 Tariff; `default` prices every session.
pub(super) async fn put_tariff(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let mut t: Value = body(&bytes)?;
    if !t.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a tariff is a JSON object",
        ));
    }
    t["id"] = json!(id);
    let typed = crate::billing::check_tariff(&t).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("not a usable OCPI tariff: {e}"),
        )
    })?;
    if let Some(field) = negative_tariff_field(&t) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{field}: not negative"),
        ));
    }
    // amounts no session can overflow when priced
    evproto_ocpi::tariff::Tariff::from_json(&t)
        .map_err(|e| e.to_string())
        .and_then(|parsed| crate::api::console::within_bounds(&parsed))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let created = app.store.put_tariff(&id, &t).await?;
    app.roaming.tariff_changed(&id, &typed).await;
    if id == "default" {
        // 2.1 stations that calculate costs get it (local_cost)
        crate::local_cost::tariff_changed(&app);
    }
    Ok((created_or_ok(created), Json(t)).into_response())
}

/// The first amount of an OCPI tariff that is negative, by its path: a
/// price component's `price`, `vat` or `step_size` (OCPI 2.2.1 §11.4.2:
/// a VAT percentage and a step in units; a negative price would pay the
/// driver), the tariff's `min_price`/`max_price`, and `restrictions`'
/// bounds.
fn negative_tariff_field(t: &Value) -> Option<String> {
    let neg = |v: &Value| {
        evproto_ocpi::tariff::to_decimal(v).is_some_and(|d| d < rust_decimal::Decimal::ZERO)
    };
    for bound in ["min_price", "max_price"] {
        for part in ["excl_vat", "incl_vat"] {
            if neg(&t[bound][part]) {
                return Some(format!("{bound}.{part}"));
            }
        }
    }
    let elements = t["elements"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, e) in elements.iter().enumerate() {
        let comps = e["price_components"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, c) in comps.iter().enumerate() {
            for f in ["price", "vat", "step_size"] {
                if neg(&c[f]) {
                    return Some(format!("elements[{i}].price_components[{j}].{f}"));
                }
            }
        }
        if let Some(r) = e["restrictions"].as_object() {
            for (k, v) in r {
                if (k.starts_with("min_") || k.starts_with("max_")) && neg(v) {
                    return Some(format!("elements[{i}].restrictions.{k}"));
                }
            }
        }
    }
    None
}
