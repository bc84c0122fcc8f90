//! `bitsearch serve`: the bit-allocation search as an HTTP/JSON service. One sensitivity table
//! per model is registered once; plans and frontiers for any budget are then answered on
//! demand, solved on a bounded pool of threads beside the server's I/O (HiGHS never runs on
//! them), and kept in the catalogue so that a repeated request, even after a restart, costs a
//! lookup. The routes and their types are described by an OpenAPI document built from this
//! code (`GET /openapi.json`).

mod api;
mod catalogue;
mod errors;
mod http;
mod limits;
mod memory;
mod metrics;
mod plans;
mod reports;
mod work;

pub use catalogue::{Catalogue, CatalogueError, TableEntry};
pub use limits::Limits;
pub use plans::{FrontierAnswer, FrontierEvent, FrontierRequest, LeftOut, PlanRequest, Prepared, answer};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use errors::ApiError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Catalogue database, table files and reports.
    pub data: PathBuf,
    /// Every request but `/health` must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Solves (plans, sweeps, report builds) at once; further requests wait in the queue.
    pub workers: usize,
    /// Seconds HiGHS may spend on one plan (on each point of a sweep).
    pub time_limit: f64,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("{0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("starting the service's threads: {0}")]
    Runtime(std::io::Error),
}

struct AppState {
    catalogue: Mutex<Catalogue>,
    /// Where uploads are written before they are registered.
    tables: PathBuf,
    config: ServeConfig,
    queue: work::Queue,
    metrics: metrics::Metrics,
    /// This service's OpenAPI document, known once the routes are.
    openapi: std::sync::OnceLock<utoipa::openapi::OpenApi>,
}

type Shared = Arc<AppState>;

/// The service's routes over an opened catalogue, and the OpenAPI document describing them.
pub fn app(config: ServeConfig) -> Result<(Router, utoipa::openapi::OpenApi), ServeError> {
    let state = state(config)?;
    let reports = state.config.data.join(reports::FOLDER);
    let guarded = OpenApiRouter::new()
        .routes(routes!(api::register, api::list))
        .routes(routes!(api::table))
        .routes(routes!(api::report))
        .routes(routes!(api::plans))
        .routes(routes!(api::plan))
        .routes(routes!(api::frontiers))
        .routes(routes!(api::metrics))
        .routes(routes!(api::openapi))
        .nest_service("/reports", tower_http::services::ServeDir::new(reports))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    let (router, openapi) = OpenApiRouter::with_openapi(api::Doc::openapi())
        .merge(guarded)
        .routes(routes!(api::health))
        .with_state(state.clone())
        .split_for_parts();
    let router = router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(errors::panicked))
        .layer(middleware::from_fn_with_state(state.clone(), errors::heads))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(middleware::from_fn(errors::json_errors));
    let _ = state.openapi.set(openapi.clone());
    Ok((router, openapi))
}

/// The service's state over the catalogue in `config.data`, opened.
fn state(config: ServeConfig) -> Result<Shared, ServeError> {
    let catalogue = Catalogue::open(&config.data)?;
    let reports = config.data.join(reports::FOLDER);
    reports::tidy(&reports).map_err(|e| CatalogueError::File { path: reports.clone(), message: e.to_string() })?;
    Ok(Arc::new(AppState {
        catalogue: Mutex::new(catalogue),
        tables: catalogue::tables_folder(&config.data),
        queue: work::Queue::new(config.workers, config.limits.queue).map_err(ServeError::Runtime)?,
        metrics: metrics::Metrics::default(),
        openapi: std::sync::OnceLock::new(),
        config,
    }))
}

/// Threads of the blocking pool (solves have threads of their own): catalogue work, one at a
/// time behind its lock, needs few, and a flood of requests must not start hundreds.
const CATALOGUE_THREADS: usize = 4;

/// Serves on a runtime of its own until interrupted.
pub fn run(config: ServeConfig) -> Result<(), ServeError> {
    memory::configure();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(CATALOGUE_THREADS)
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(serve(config))
}

/// Serves until interrupted, printing the address it listens on first (port 0 picks one).
async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let listen = config.listen;
    if !listen.ip().is_loopback() && config.token.is_none() {
        log::warn!("listening on {listen} without --token-file: anyone who reaches it can use the service");
    }
    let limits = config.limits;
    let (app, _) = app(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| ServeError::Listen(listen, e))?;
    let bound = listener.local_addr().map_err(|e| ServeError::Listen(listen, e))?;
    println!("bitsearch serve: listening on http://{bound}");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    http::run(listener, app, &limits, stop).await;
    Ok(())
}

async fn count(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let _in_flight = memory::request();
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let response = next.run(request).await;
    let counter = match response.status().as_u16() {
        400..=499 => Some(&state.metrics.client_errors),
        500.. => Some(&state.metrics.server_errors),
        _ => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn authorize(State(state): State<Shared>, headers: HeaderMap, request: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token {
        let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer) else {
            let message = "missing bearer token (Authorization: Bearer …)";
            return ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
        };
        if !same(given.as_bytes(), token.as_bytes()) {
            return ApiError::new(StatusCode::FORBIDDEN, "wrong bearer token").into_response();
        }
    }
    next.run(request).await
}

/// The token of an `Authorization` value of the Bearer scheme, its name in any case (RFC 9110
/// makes schemes case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equality in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
