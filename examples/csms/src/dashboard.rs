//! The operator dashboard: one page, no build step, served on the admin
//! listener. It reads the API with the key typed into the page or passed
//! once as `/?key=...`: the page takes the key out of its address at once
//! (`history.replaceState`, so it stays out of the browser history and of
//! bookmarks) and keeps it in the tab's session storage. It follows
//! `/api/events` for live updates.

use axum::http::header;
use axum::response::{Html, IntoResponse};

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// `GET /`: the page, never cached, never framed, and sending no referrer
/// (its address may still hold the key while it loads).
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(PAGE),
    )
}
