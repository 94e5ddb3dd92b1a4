//! The browser editor's files, embedded in the binary at build time (`web/build.rs` builds
//! `web/ui` and generates the table), and how they are served: `/` and `/d/<doc id>` get the
//! page, `/assets/*` the hashed bundle files with a year-long immutable cache, everything with
//! its content type, gzip when the browser accepts it, and `ETag` revalidation. Without a
//! bundle (no Node.js at build time) the pages explain how to build it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

/// One embedded file.
pub struct UiAsset {
    /// URL path, e.g. `/assets/editor-1a2b3c.js`.
    pub path: &'static str,
    /// The file.
    pub body: &'static [u8],
    /// The file gzipped, when that is smaller.
    pub gzip: Option<&'static [u8]>,
    /// Strong validator derived from the content (quoted).
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The page every editor URL serves.
const PAGE: &str = "/index.html";
/// Where Vite puts content-hashed files (safe to cache forever).
const HASHED_PREFIX: &str = "/assets/";
/// Cache policy of content-hashed files: a year, never revalidated.
const CACHE_HASHED: &str = "public, max-age=31536000, immutable";
/// Cache policy of the page: always revalidate (its ETag makes that a 304).
const CACHE_PAGE: &str = "no-cache";

/// Whether `path` is served from the embedded bundle: the pages and the bundle's files.
pub fn handles(path: &str) -> bool {
    is_page(path) || path.starts_with(HASHED_PREFIX) || lookup(path).is_some()
}

/// Serves `path` (one that [`handles`] accepts).
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if !UI_BUILT {
        return if is_page(path) {
            not_built_page()
        } else {
            plain(StatusCode::NOT_FOUND, "not found\n")
        };
    }
    let (asset, cache) = if is_page(path) {
        (lookup(PAGE), CACHE_PAGE)
    } else if path.starts_with(HASHED_PREFIX) {
        (lookup(path), CACHE_HASHED)
    } else {
        (lookup(path), CACHE_PAGE)
    };
    let Some(asset) = asset else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut response = if etag_matches(headers, asset.etag) {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let gzip = asset.gzip.filter(|_| accepts_gzip(headers));
        let mut r = Response::new(Full::new(Bytes::from_static(gzip.unwrap_or(asset.body))));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(asset.path)),
        );
        if gzip.is_some() {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    response
}

/// `/`, `/index.html` and `/d/<anything>` (the page checks the document id itself).
fn is_page(path: &str) -> bool {
    path == "/" || path == PAGE || (path.starts_with("/d/") && path.len() > "/d/".len())
}

fn lookup(path: &str) -> Option<&'static UiAsset> {
    UI_ASSETS.iter().find(|a| a.path == path)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|part| {
            let mut pieces = part.split(';');
            let coding = pieces.next().unwrap_or("").trim();
            let refused = pieces.any(
                |p| matches!(p.trim().strip_prefix("q="), Some(q) if q.trim().parse::<f32>().is_ok_and(|q| q == 0.0)),
            );
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == etag || tag.trim() == "*")
        })
}

/// Content type from the file extension.
fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "ttf" => "font/ttf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The page served when the binary was built without the editor bundle.
fn not_built_page() -> Response<Full<Bytes>> {
    let reason = escape_html(UI_MISSING_REASON);
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chorus: editor not built</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;\
         background:#1e1e1e;color:#d4d4d4}}pre,code{{background:#2d2d2d;padding:.15rem .35rem;border-radius:4px}}\
         pre{{padding:.75rem;white-space:pre-wrap}}</style></head><body>\
         <h1>The editor bundle was not built</h1>\
         <p>This Chorus node is running and its WebSocket API (<code>/ws</code>) works, but the browser \
         editor was not built into this binary:</p><pre>{reason}</pre>\
         <p>To fix it, install <a href=\"https://nodejs.org/\">Node.js</a> 20 or newer (with npm) and build \
         again; the build runs <code>npm ci</code> and the bundler in <code>web/ui</code> by itself:</p>\
         <pre>cargo run --release --bin chorus</pre>\
         <p>Or build the bundle by hand, then rebuild the node:</p>\
         <pre>cd web/ui &amp;&amp; npm ci &amp;&amp; npm run build</pre></body></html>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn pages_and_assets_are_routed_here() {
        assert!(handles("/"));
        assert!(handles("/d/src/main.rs"));
        assert!(handles("/assets/anything.js"));
        assert!(!handles("/d/"));
        assert!(!handles("/ws"));
        assert!(!handles("/readyz"));
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(
            content_type("/assets/a-1.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/assets/a-1.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/assets/codicon-1.ttf"), "font/ttf");
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }

    #[test]
    fn gzip_is_negotiated() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "br;q=1.0, gzip;q=0.8"
        )])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "br")])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    #[test]
    fn etags_revalidate() {
        assert!(etag_matches(
            &headers(&[("if-none-match", "\"abc\"")]),
            "\"abc\""
        ));
        assert!(etag_matches(
            &headers(&[("if-none-match", "W/\"abc\", \"x\"")]),
            "\"abc\""
        ));
        assert!(!etag_matches(
            &headers(&[("if-none-match", "\"abd\"")]),
            "\"abc\""
        ));
    }

    #[test]
    fn the_page_is_served_or_explained() {
        let response = serve(&Method::GET, "/d/notes/a.md", &headers(&[]));
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("text/html; charset=utf-8"));
        if UI_BUILT {
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers().get(header::CACHE_CONTROL).unwrap(),
                CACHE_PAGE
            );
        } else {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[test]
    fn hashed_assets_are_cached_for_good() {
        let Some(asset) = UI_ASSETS.iter().find(|a| a.path.starts_with(HASHED_PREFIX)) else {
            return; // built without the bundle
        };
        let response = serve(
            &Method::GET,
            asset.path,
            &headers(&[("accept-encoding", "gzip")]),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(header::CACHE_CONTROL).unwrap(),
            CACHE_HASHED
        );
        let again = serve(
            &Method::GET,
            asset.path,
            &headers(&[("if-none-match", asset.etag)]),
        );
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let missing = serve(&Method::GET, "/assets/nope-123.js", &headers(&[]));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_not_built_page_says_how_to_fix_it() {
        let response = not_built_page();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
