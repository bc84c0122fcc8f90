//! Every 4xx and 5xx the service sends has one body: `{"error": "<one line>"}`. Handlers
//! answer with [`ApiError`]; answers made elsewhere (the router's 404 and 405, a query string
//! that does not parse, a panic) are rewritten into it by [`json_errors`]. A 5xx never carries
//! the fault's own text, which may hold a panic message or a server path: that goes to the
//! log, and the client reads what failed.

use crate::Shared;
use crate::limits::{self, MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer: a status, one line naming what was wrong, and for 503 when to retry.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One line.
    pub error: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    /// A fault of the service, not of the request: `detail` goes to the log only.
    pub fn internal(what: &str, detail: impl std::fmt::Display) -> Self {
        log::error!("{what}: {detail}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed on the server (its log says why)"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: one_line(&self.message) })).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// At most 500 characters on one line.
fn one_line(text: &str) -> String {
    let line: String = text.trim().replace(['\n', '\r'], " ");
    match line.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// Refuses heads larger than the service reads (414, 431), and bodies whose announced length
/// is past the route's limit (413) before a byte of them is read.
pub async fn heads(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let limits = &state.config.limits;
    let uri = request.uri().to_string().len();
    if uri > MAX_URI_BYTES {
        let message = format!("request target of {uri} bytes: at most {MAX_URI_BYTES}");
        return ApiError::new(StatusCode::URI_TOO_LONG, message).into_response();
    }
    let headers = request.headers();
    let head: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if headers.len() > MAX_HEADERS || head > MAX_HEAD_BYTES {
        let message = format!(
            "{} headers of {head} bytes: at most {MAX_HEADERS} headers of {MAX_HEAD_BYTES} bytes",
            headers.len()
        );
        return ApiError::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, message).into_response();
    }
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let limit = body_limit(limits, request.uri().path());
    if let Some(length) = announced.filter(|&n| n > limit.bytes as u64) {
        let BodyLimit { flag, value, .. } = limit;
        let message = format!("request body: {length} bytes is more than this service takes ({flag} {value})");
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    next.run(request).await
}

/// The largest body a route reads: tables are uploads, the rest are small JSON requests.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub bytes: usize,
    /// The flag that sets it, and the flag's value (in its own unit).
    pub flag: &'static str,
    pub value: usize,
}

pub fn body_limit(limits: &limits::Limits, path: &str) -> BodyLimit {
    if path == "/tables" {
        BodyLimit { bytes: limits.table_bytes, flag: "--max-body-mb", value: limits.table_bytes / 1_000_000 }
    } else {
        BodyLimit { bytes: limits.request_bytes, flag: "--max-request-kb", value: limits.request_bytes / 1024 }
    }
}

/// Rewrites any error answer not already in the JSON form: the text the framework wrote (a
/// rejected query string says what was wrong) for a 4xx, the status alone for a 5xx.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let json = response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes() == b"application/json");
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error");
    let text = String::from_utf8_lossy(&text);
    let message = if status.is_server_error() || text.trim().is_empty() {
        format!("{reason}: {method} {}", one_line(&path))
    } else {
        text.into_owned()
    };
    let mut answer = ApiError::new(status, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// `f`'s answer; a panic in it becomes this request's failure alone (the panic hook logged it).
pub fn caught<T>(f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_panic| {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this request could not be answered: its table or request made the solver fail",
        ))
    })
}

/// The answer to a panic in a handler: the panic's text goes to the log (the panic hook
/// printed it), not to the client.
pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the request failed on the server (its log says why)")
        .into_response()
}
