//! The portal (`/portal/`): a web page for approvers, auditors and
//! operators, served by the gate itself and embedded in the binary. It adds
//! no endpoint of its own: everything it shows comes from the existing API
//! under the signed-in caller's roles, and everything it verifies is checked
//! in the browser on keys the person pinned. The page's script is the
//! TypeScript SDK's verifier and `sdk/typescript/portal/app.ts`, bundled by
//! `npm run portal` into `portal/app.js` (a test in the SDK keeps the
//! committed bundle equal to what its sources build).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../portal/index.html");
const APP: &str = include_str!("../../portal/app.js");
const CSS: &str = include_str!("../../portal/portal.css");

/// No inline script or style, nothing from elsewhere, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The portal's routes, merged into the gate's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route(
            "/portal/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/portal/receipts/{receipt_id}",
            get(|Path(_id): Path<String>| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/portal/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/portal/portal.css",
            get(|| async { page("text/css; charset=utf-8", CSS) }),
        )
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}
