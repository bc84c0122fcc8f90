//! `bitsearch serve`: the bit-allocation search as an HTTP/JSON service. One sensitivity table
//! per model is registered once; plans and frontiers for any budget are then answered on
//! demand, solved on a bounded pool of threads beside the server's I/O (HiGHS never runs on
//! them), and kept in the catalogue so that a repeated request, even after a restart, costs a
//! lookup. The routes and their types are described by an OpenAPI document built from this
//! code (`GET /openapi.json`).

mod api;
mod catalogue;
mod metrics;
mod plans;
mod reports;

pub use catalogue::{Catalogue, CatalogueError, TableEntry};
pub use plans::{FrontierAnswer, FrontierEvent, FrontierRequest, LeftOut, PlanRequest, Prepared, answer};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
    /// Largest request body, bytes.
    pub max_body: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("{0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

struct AppState {
    catalogue: Mutex<Catalogue>,
    config: ServeConfig,
    workers: Arc<tokio::sync::Semaphore>,
    metrics: metrics::Metrics,
    /// This service's OpenAPI document, known once the routes are.
    openapi: std::sync::OnceLock<utoipa::openapi::OpenApi>,
}

type Shared = Arc<AppState>;

/// The service's routes over an opened catalogue, and the OpenAPI document describing them.
pub fn app(config: ServeConfig) -> Result<(Router, utoipa::openapi::OpenApi), ServeError> {
    let catalogue = Catalogue::open(&config.data)?;
    let reports = config.data.join(reports::FOLDER);
    reports::tidy(&reports).map_err(|e| CatalogueError::File { path: reports.clone(), message: e.to_string() })?;
    let state = Arc::new(AppState {
        catalogue: Mutex::new(catalogue),
        workers: Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
        metrics: metrics::Metrics::default(),
        openapi: std::sync::OnceLock::new(),
        config,
    });
    let limit = state.config.max_body;
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
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone())
        .split_for_parts();
    let _ = state.openapi.set(openapi.clone());
    Ok((router, openapi))
}

/// Serves until interrupted, printing the address it listens on first (port 0 picks one).
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let listen = config.listen;
    if !listen.ip().is_loopback() && config.token.is_none() {
        log::warn!("listening on {listen} without --token-file: anyone who reaches it can use the service");
    }
    let (app, _) = app(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| ServeError::Listen(listen, e))?;
    let bound = listener.local_addr().map_err(|e| ServeError::Listen(listen, e))?;
    println!("bitsearch serve: listening on http://{bound}");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app).with_graceful_shutdown(stop).await.map_err(|e| ServeError::Listen(bound, e))
}

async fn count(State(state): State<Shared>, request: Request, next: Next) -> Response {
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
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(given) = given else {
            return api::ApiError(StatusCode::UNAUTHORIZED, "missing bearer token (Authorization: Bearer …)".into())
                .into_response();
        };
        if !same(given.as_bytes(), token.as_bytes()) {
            return api::ApiError(StatusCode::FORBIDDEN, "wrong bearer token".into()).into_response();
        }
    }
    next.run(request).await
}

/// Equality in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
