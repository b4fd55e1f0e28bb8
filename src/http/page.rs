//! The status page: `static/` (plain HTML, CSS and JavaScript, no build step) embedded in the
//! binary, so the release binary serves it from any working directory, at `/lb/`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::http::error::only;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");
const ROUTES_JS: &str = include_str!("../../static/routes.js");
const STYLE_CSS: &str = include_str!("../../static/style.css");
const FAVICON_SVG: &str = include_str!("../../static/favicon.svg");

/// Registers `/lb` (redirect), `/lb/`, `/lb/app.js`, `/lb/routes.js`, `/lb/style.css` and the
/// page's icon,
/// `/lb/favicon.svg` (linked from the page, so a browser asks for it here rather than for
/// `/favicon.ico`, which would be proxied), inside the `/lb` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(only("", web::get().to(to_slash)))
        .service(only("/", web::get().to(index)))
        .service(only("/app.js", web::get().to(app_js)))
        .service(only("/routes.js", web::get().to(routes_js)))
        .service(only("/style.css", web::get().to(style_css)))
        .service(only("/favicon.svg", web::get().to(favicon)));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn to_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/lb/"))
        .finish()
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn routes_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", ROUTES_JS)
}

async fn style_css() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn favicon() -> HttpResponse {
    asset("image/svg+xml", FAVICON_SVG)
}
