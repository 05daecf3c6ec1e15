//! The operator console: plain ES modules and CSS under
//! `examples/csms/console/`, embedded in the binary (no build step, nothing
//! generated), served on the admin listener at `/` and `/console/{file}`.
//!
//! The page reads the operator API with the key typed into its login form
//! or passed once as `/?key=...`: it takes the key out of its address at
//! once (`history.replaceState`, so it stays out of the browser history and
//! of bookmarks) and keeps it in the tab's session storage. It follows
//! `/api/events` for live updates.
//!
//! Every answer carries a Content-Security-Policy that allows scripts,
//! styles and connections to this origin only (no inline script), is never
//! framed, never sniffed, and sends no referrer (the page's address may
//! still hold the key while it loads).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page's security policy: this origin only, no inline script, no
/// plugins, never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its path under `/console/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../console/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the console but the page itself.
static ASSETS: &[Asset] = &[
    asset!("console.css", CSS),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/format.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/live.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/schema-form.js", JS),
    asset!("js/pages/overview.js", JS),
    asset!("js/pages/stations.js", JS),
    asset!("js/pages/station.js", JS),
    asset!("js/pages/tokens.js", JS),
    asset!("js/pages/tariffs.js", JS),
    asset!("js/pages/sessions.js", JS),
    asset!("js/pages/billing.js", JS),
    asset!("js/pages/drivers.js", JS),
    asset!("js/pages/fleets.js", JS),
    asset!("js/pages/invoices.js", JS),
    asset!("js/pages/roaming.js", JS),
    asset!("js/pages/firmware.js", JS),
    asset!("js/pages/alerts.js", JS),
    asset!("js/pages/maintenance.js", JS),
    asset!("js/pages/streams.js", JS),
    asset!("js/pages/site.js", JS),
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
    asset!("vendor/LICENSE", "text/plain; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The page.
pub const PAGE: &str = include_str!("../console/index.html");

/// The console's routes: `/` (the page) and `/console/{*file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/console/{*file}", get(file))
}

fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// `GET /`: the page, never cached.
async fn page() -> Response {
    with_headers("text/html; charset=utf-8", PAGE.as_bytes())
}

/// `GET /console/{file}`: one of the embedded files, or a JSON 404.
async fn file(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == file) {
        Some(a) => with_headers(a.content_type, a.bytes),
        None => crate::api::ApiError::new(StatusCode::NOT_FOUND, format!("no console file {file}"))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `console/` is served, and only those.
    #[test]
    fn every_console_file_is_embedded() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(
                        p.strip_prefix(base)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        walk(&base, &base, &mut on_disk);
        on_disk.retain(|p| p != "index.html" && p != "vendor/README.md");
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served);
        for a in ASSETS {
            let ok = if a.path.ends_with(".js") {
                a.content_type == JS
            } else if a.path.ends_with(".css") {
                a.content_type == CSS
            } else {
                true
            };
            assert!(ok, "{} served as {}", a.path, a.content_type);
        }
    }

    /// The page loads its scripts from files: the policy forbids inline ones.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let lower = PAGE.to_ascii_lowercase();
        for (at, _) in lower.match_indices("<script") {
            let tag = &lower[at..at + lower[at..].find('>').unwrap()];
            assert!(tag.contains("src="), "inline script: {tag}");
        }
        assert!(!lower.contains("<style"), "inline style");
        assert!(!lower.contains(" style="), "style attribute");
        assert!(!lower.contains(" onclick="), "inline handler");
    }
}
