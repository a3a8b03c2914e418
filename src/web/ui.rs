//! The web UI: one page that reads the aggregator's JSON API and shows where each
//! joule earns most (the comparison table, revenue per kWh over time, power and
//! energy per workload, fleet health).
//!
//! The page is plain HTML, CSS and JavaScript under `src/web/ui/`, embedded in the
//! binary with `include_str!`, so an aggregator serves it with nothing to install
//! and a browser loads nothing from anywhere else (the Content-Security-Policy
//! says so too). The page itself holds no data, so it is served without a token;
//! its script reads `?token=` from the page's address and sends it as a header on
//! every API call, which is where access is checked.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file of the page.
pub struct Asset {
    /// URL path under which the page refers to it.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// Everything the page loads. `/` is the page itself; the rest live under `/ui/`.
pub const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("ui/index.html") },
    Asset { path: "/ui/app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("ui/app.js") },
    Asset { path: "/ui/app.css", content_type: "text/css; charset=utf-8", body: include_str!("ui/app.css") },
    Asset { path: "/ui/icon.svg", content_type: "image/svg+xml", body: include_str!("ui/icon.svg") },
];

/// Only this server, for everything: no CDN, no fonts, no analytics.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Routes for the page and its assets, to merge into the aggregator's router
/// (`api_router.merge(web::ui::router())`). Generic over the state so it merges
/// into a router of any state type.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("/", &headers) }))
        .route("/index.html", get(|headers: HeaderMap| async move { serve("/", &headers) }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move { serve(&format!("/ui/{file}"), &headers) }),
        )
}

/// Weak validators (CRC-32 of each body) computed once, so a reload costs a 304.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|a| format!("W/\"{:08x}\"", crc32fast::hash(a.body.as_bytes()))).collect())
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "no such file in the web UI").into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // Revalidate every time: the assets change with the binary, and a 304 is cheap.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The page's address may carry `?token=`; never send it anywhere as a referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_stays_under_300_kb() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 300 * 1024, "the page's assets total {total} bytes, over 300 KB");
    }

    #[test]
    fn page_refers_to_no_other_host() {
        for asset in ASSETS {
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                for (at, _) in asset.body.match_indices(scheme) {
                    let rest = &asset.body[at..];
                    assert!(
                        rest.starts_with("http://www.w3.org/2000/svg"),
                        "{} refers to another host: {}",
                        asset.path,
                        &rest[..rest.len().min(60)]
                    );
                }
            }
        }
    }

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let html = ASSETS[0].body;
        let mut named = 0;
        for attr in ["href=\"", "src=\""] {
            for (at, _) in html.match_indices(attr) {
                let value = &html[at + attr.len()..];
                let value = &value[..value.find('"').unwrap()];
                if value.starts_with('#') || value.starts_with("api/") {
                    continue;
                }
                named += 1;
                let path = format!("/{value}");
                assert!(ASSETS.iter().any(|a| a.path == path), "index.html names {value}, which is not embedded");
            }
        }
        assert!(named >= 3, "expected the stylesheet, script and icon, found {named}");
    }

    #[tokio::test]
    async fn serves_page_assets_with_validators_and_policy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router::<()>()).await });
        let client = reqwest::Client::new();
        let base = format!("http://{addr}");

        let page = client.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("connect-src 'self'"));
        assert_eq!(page.headers()[header::REFERRER_POLICY], "no-referrer");
        let etag = page.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert!(page.text().await.unwrap().contains("Where each kWh earns most"));

        let again = client.get(format!("{base}/")).header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
        assert_eq!(again.status(), 304);

        for asset in &ASSETS[1..] {
            let r = client.get(format!("{base}{}", asset.path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", asset.path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(r.text().await.unwrap(), asset.body);
        }
        let missing = client.get(format!("{base}/ui/nope.js")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        server.abort();
    }
}
