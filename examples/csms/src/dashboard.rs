//! The operator dashboard: one page, no build step. It reads the API with
//! the key given in the page (kept in the browser's local storage, or passed
//! as `/?key=...`) and follows `/api/events` for live updates.

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");
