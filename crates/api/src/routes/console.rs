//! The web console: `GET /` (its page) and `GET /console/{asset}` (its scripts, styles and
//! icon), every file compiled into the binary from `crates/api/console/` (no CDN, no build
//! step). The console is a client of the public `/api/v1` like any other (docs/console.md).
//!
//! Each answer carries a strong `ETag` (a hash of the file, computed once) and
//! `Cache-Control: no-cache`, so a browser keeps the file but revalidates it (304) and an
//! upgraded binary is picked up at once; the compression middleware gzips it. The
//! Content-Security-Policy of these answers is [`crate::middleware::CONSOLE_CSP`].

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(console_page).service(console_asset);
}

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: HeaderValue,
}

const JS: &str = "text/javascript; charset=utf-8";

/// `(name, content type, bytes)` of every file of the console.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../console/icon.svg"),
    ),
    ("app.js", JS, include_bytes!("../../console/app.js")),
    ("api.js", JS, include_bytes!("../../console/api.js")),
    ("dom.js", JS, include_bytes!("../../console/dom.js")),
    ("auth.js", JS, include_bytes!("../../console/auth.js")),
    (
        "documents.js",
        JS,
        include_bytes!("../../console/documents.js"),
    ),
    ("chat.js", JS, include_bytes!("../../console/chat.js")),
    ("org.js", JS, include_bytes!("../../console/org.js")),
    ("usage.js", JS, include_bytes!("../../console/usage.js")),
    ("admin.js", JS, include_bytes!("../../console/admin.js")),
];

/// 64-bit FNV-1a: enough to tell two versions of a file apart (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, content_type, bytes)| Asset {
            name,
            content_type,
            bytes,
            etag: HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(bytes)))
                .unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
        })
        .collect()
});

/// The answer for `asset`: 304 when the request names its current `ETag`.
fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let fresh = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/").as_bytes() == asset.etag.as_bytes()
        });
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, asset.etag.clone()))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, asset.content_type))
        .body(asset.bytes)
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The web console (an HTML page whose scripts and styles are served under `/console/`).
#[utoipa::path(
    tag = "platform",
    responses((status = 200, description = "the console's page", content_type = "text/html", body = String))
)]
#[get("/")]
async fn console_page(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    find("index.html")
        .map(|a| serve(&req, a))
        .ok_or(ApiError::NotFound)
}

/// A file of the web console (script, style sheet or icon), compiled into the binary.
#[utoipa::path(
    tag = "platform",
    params(("asset" = String, Path, description = "the file's name, such as `app.js`")),
    responses(
        (status = 200, description = "the file: a script, the style sheet or the icon",
            content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"))),
        (status = 304, description = "the copy the client holds (`If-None-Match`) is current")
    )
)]
#[get("/console/{asset}")]
async fn console_asset(
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    find(&name)
        .filter(|a| a.name != "index.html")
        .map(|a| serve(&req, a))
        .ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_its_own_tag() {
        let mut tags: Vec<_> = ASSETS.iter().map(|a| a.etag.clone()).collect();
        tags.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        tags.dedup();
        assert_eq!(tags.len(), FILES.len());
        let total: usize = FILES.iter().map(|(_, _, b)| b.len()).sum();
        assert!(
            total < 600 * 1024,
            "the console is {total} bytes uncompressed"
        );
    }
}
