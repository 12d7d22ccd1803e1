//! The footer API's routes (see `docs/CONTRACT.md`, section 8):
//!
//! ```text
//! GET /v1/articles/{article_id}/footer       JSON footer, 404 unknown, 400 invalid id
//! GET /v1/articles/{article_id}/footer.html  the lines under the story, as HTML
//! GET /v1/footers?ids=a,b,c                  a JSON list (footer.max_ids at most)
//! ```
//!
//! Routing is done here on the raw path, not by a router's extractor, so
//! that every refusal (a malformed percent-escape, a `/` or `..` smuggled
//! into an id) is a JSON 400 that names the rule, and nothing about an id
//! is decoded twice.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Extension;
use newsflow_http::RequestStarted;
use newsflow_settings::FooterSettings;
use newsflow_telemetry::{FooterRoute, Metrics};

use crate::follow::{Freshness, Shared};
use crate::held::Footer;
use crate::render;

/// The API's state.
pub struct Api {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    max_ids: usize,
    cors_origins: Vec<String>,
    cache_control: HeaderValue,
}

impl Api {
    /// The API over the footers `shared` holds.
    pub fn new(settings: &FooterSettings, shared: Arc<Shared>, metrics: Arc<Metrics>) -> Api {
        // A CDN may serve an answer as long as the service would take to
        // see a change anyway.
        let max_age = settings.poll_interval.as_secs().max(1);
        Api {
            shared,
            metrics,
            max_ids: settings.max_ids,
            cors_origins: settings.cors_origins.clone(),
            cache_control: HeaderValue::from_str(&format!("public, max-age={max_age}"))
                .expect("digits are a valid header value"),
        }
    }
}

/// Every request: routed, answered, counted.
pub async fn handle(
    State(api): State<Arc<Api>>,
    started: Option<Extension<RequestStarted>>,
    request: Request,
) -> Response {
    let started = started.map_or_else(tokio::time::Instant::now, |Extension(s)| s.0);
    let (route, mut response) = api.answer(&request);
    api.add_cors(request.headers(), &mut response);
    api.metrics.footer_request(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// What a request asks for.
enum Route<'a> {
    Footer(&'a str),
    FooterHtml(&'a str),
    Footers(&'a str),
}

impl<'a> Route<'a> {
    /// The route of `uri`, with the raw id or query it carries.
    fn of(uri: &'a axum::http::Uri) -> Option<Route<'a>> {
        let path = uri.path();
        if path == "/v1/footers" {
            return Some(Route::Footers(uri.query().unwrap_or("")));
        }
        let rest = path.strip_prefix("/v1/articles/")?;
        // `.html` first: `/footer` is a suffix of neither.
        if let Some(id) = rest.strip_suffix("/footer.html") {
            return Some(Route::FooterHtml(id));
        }
        rest.strip_suffix("/footer").map(Route::Footer)
    }

    fn label(&self) -> FooterRoute {
        match self {
            Route::Footer(_) => FooterRoute::Footer,
            Route::FooterHtml(_) => FooterRoute::FooterHtml,
            Route::Footers(_) => FooterRoute::Footers,
        }
    }
}

impl Api {
    fn answer(&self, request: &Request) -> (FooterRoute, Response) {
        let route = Route::of(request.uri());
        let label = route.as_ref().map_or(FooterRoute::Other, Route::label);
        let method = request.method();
        if method == Method::OPTIONS && route.is_some() {
            return (FooterRoute::Preflight, self.preflight(request.headers()));
        }
        let Some(route) = route else {
            return (
                label,
                problem(
                    StatusCode::NOT_FOUND,
                    "no_such_route",
                    "see docs/CONTRACT.md for the routes",
                ),
            );
        };
        if method != Method::GET && method != Method::HEAD {
            let mut response = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the footer API answers GET and HEAD",
            );
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            return (label, response);
        }
        if !self.shared.is_loaded() {
            let mut response = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "loading",
                "the footers are being loaded from article_totals; try again in a moment",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return (label, response);
        }
        let if_none_match = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        let response = match route {
            Route::Footer(raw) => self.one(raw, if_none_match, false),
            Route::FooterHtml(raw) => self.one(raw, if_none_match, true),
            Route::Footers(query) => self.many(query, if_none_match),
        };
        (label, response)
    }

    /// One article's footer, as JSON or HTML.
    fn one(&self, raw_id: &str, if_none_match: Option<&str>, html: bool) -> Response {
        let id = match article_id(raw_id) {
            Ok(id) => id,
            Err(response) => return *response,
        };
        let freshness = self.shared.freshness();
        let footers = self.shared.footers();
        let Some(footer) = footers.get(&id) else {
            drop(footers);
            let response = problem(
                StatusCode::NOT_FOUND,
                "unknown_article",
                format!("no footer for article `{id}`: none of its events has been counted yet"),
            );
            return self.current(response, &freshness, None);
        };
        let etag = render::footer_etag(&footer);
        if if_none_match.is_some_and(|tags| render::none_match(tags, &etag)) {
            drop(footers);
            return self.current(not_modified(), &freshness, Some(&etag));
        }
        let (body, content_type) = if html {
            (render::footer_html(&footer), "text/html; charset=utf-8")
        } else {
            let mut body = String::with_capacity(256);
            render::footer_json(&mut body, &footer, &freshness);
            (body, "application/json")
        };
        drop(footers);
        self.current(
            with_body(StatusCode::OK, content_type, body),
            &freshness,
            Some(&etag),
        )
    }

    /// The footers of the ids a front page asks for: a JSON list, in the
    /// order asked, of the articles that have one.
    fn many(&self, query: &str, if_none_match: Option<&str>) -> Response {
        let raw_ids = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("ids="))
            .flat_map(|list| list.split(','))
            .filter(|id| !id.is_empty());
        let mut ids = Vec::new();
        for raw in raw_ids {
            if ids.len() == self.max_ids {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "too_many_ids",
                    format!(
                        "ask for at most {} ids at once (footer.max_ids)",
                        self.max_ids
                    ),
                );
            }
            match article_id(raw) {
                Ok(id) => ids.push(id),
                Err(response) => return *response,
            }
        }
        if ids.is_empty() {
            return problem(
                StatusCode::BAD_REQUEST,
                "no_ids",
                "name the articles as ?ids=a,b,c",
            );
        }
        let freshness = self.shared.freshness();
        let footers = self.shared.footers();
        let found: Vec<Footer<'_>> = ids.iter().filter_map(|id| footers.get(id)).collect();
        let asked: Vec<&str> = ids.iter().map(String::as_str).collect();
        let etag = render::list_etag(&asked, &found);
        if if_none_match.is_some_and(|tags| render::none_match(tags, &etag)) {
            drop(found);
            drop(footers);
            return self.current(not_modified(), &freshness, Some(&etag));
        }
        let body = render::footers_json(&found, &freshness);
        drop(found);
        drop(footers);
        self.current(
            with_body(StatusCode::OK, "application/json", body),
            &freshness,
            Some(&etag),
        )
    }

    /// Adds what says how current an answer is: its entity tag, how long
    /// it may be cached, and how stale it is while the store is not read.
    fn current(
        &self,
        mut response: Response,
        freshness: &Freshness,
        etag: Option<&str>,
    ) -> Response {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert(header::ETAG, tag);
        }
        if let Some(stale) = freshness.stale_seconds {
            headers.insert("x-newsflow-stale", HeaderValue::from(stale));
        }
        response
    }

    /// The origin to allow for a request from `origin`, if any.
    fn allowed_origin<'a>(&self, origin: &'a str) -> Option<&'a str> {
        if self.cors_origins.iter().any(|o| o == "*") {
            return Some("*");
        }
        self.cors_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    fn add_cors(&self, request: &HeaderMap, response: &mut Response) {
        if self.cors_origins.is_empty() {
            return;
        }
        let headers = response.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        let origin = request.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let Some(allowed) = origin.and_then(|o| self.allowed_origin(o)) else {
            return;
        };
        if let Ok(value) = HeaderValue::from_str(allowed) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("ETag, X-Newsflow-Stale"),
            );
        }
    }

    /// A CORS preflight: which methods and headers a page may use.
    fn preflight(&self, request: &HeaderMap) -> Response {
        let mut response = with_body(StatusCode::NO_CONTENT, "text/plain", String::new());
        let allowed = request
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| self.allowed_origin(o).is_some());
        if allowed {
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("If-None-Match"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
        }
        response
    }
}

/// The article id of a path segment or list item: percent-decoded
/// strictly, then held to the contract's rule. An error is the 400 to
/// send.
fn article_id(raw: &str) -> Result<String, Box<Response>> {
    let decoded = percent_decode(raw).ok_or_else(|| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "malformed_percent_encoding",
            "an id holds a `%` not followed by two hex digits, or bytes that are not UTF-8",
        ))
    })?;
    newsflow_core::event::check_article_id(&decoded).map_err(|rejection| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "invalid_article_id",
            rejection.detail,
        ))
    })?;
    Ok(decoded)
}

/// `%XX` escapes decoded; `None` for a malformed escape or bytes that are
/// not UTF-8. (`+` stays `+`: ids never hold spaces.)
fn percent_decode(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_string());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes.get(at + 1..at + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn with_body(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn not_modified() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response
}

/// A JSON error: a stable code and a sentence for people.
fn problem(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": error, "detail": detail.into() }).to_string();
    with_body(status, "application/json", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_strictly() {
        assert_eq!(percent_decode("a%3Ab").as_deref(), Some("a:b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%2e%2E").as_deref(), Some(".."));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn ids_outside_the_rule_are_refused_after_decoding() {
        assert_eq!(article_id("seed-article").unwrap(), "seed-article");
        for bad in ["..", "%2e%2e", "a%2Fb", "a/b", "%00", &"x".repeat(129)] {
            let response = article_id(bad).unwrap_err();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
