//! `bitsearch serve`: the bit-allocation search as an HTTP/JSON service. One sensitivity table
//! per model is registered once; plans for any budget are then answered on demand, solved on a
//! bounded pool of threads beside the server's I/O (HiGHS never runs on them), and kept in the
//! catalogue so that a repeated request, even after a restart, costs a lookup.

mod catalogue;
mod plans;

pub use catalogue::{Catalogue, CatalogueError, TableEntry};
pub use plans::{PlanRequest, answer};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitsearch_records::Plan;
use bitsearch_solver::SolverError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Catalogue database and table files.
    pub data: PathBuf,
    /// Every request but `/health` must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Solves at once; further requests wait in the queue.
    pub workers: usize,
    /// Seconds HiGHS may spend on one request.
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

/// Counters `/metrics` reports.
#[derive(Debug, Default)]
struct Metrics {
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    registrations: AtomicU64,
    solves: AtomicU64,
    solve_micros: AtomicU64,
    cache_hits: AtomicU64,
    queued: AtomicU64,
}

struct AppState {
    catalogue: Mutex<Catalogue>,
    config: ServeConfig,
    workers: tokio::sync::Semaphore,
    metrics: Metrics,
}

type Shared = Arc<AppState>;

/// An error answer: a status and one line naming what was wrong.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1.replace('\n', " ") }))).into_response()
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        let status = match e {
            CatalogueError::NotATable(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<SolverError> for ApiError {
    fn from(e: SolverError) -> Self {
        let status = match e {
            SolverError::Infeasible { .. } | SolverError::Unreachable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            SolverError::Solver(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        ApiError(e.status(), format!("request body: {}", e.body_text()))
    }
}

/// Runs `f` on the blocking pool: catalogue work (SQLite, hashing, file writes) stays off the
/// I/O threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}"))))
}

/// The service's routes over an opened catalogue.
pub fn router(config: ServeConfig) -> Result<Router, ServeError> {
    let catalogue = Catalogue::open(&config.data)?;
    let state = Arc::new(AppState {
        catalogue: Mutex::new(catalogue),
        workers: tokio::sync::Semaphore::new(config.workers.max(1)),
        metrics: Metrics::default(),
        config,
    });
    let limit = state.config.max_body;
    Ok(Router::new()
        .route("/tables", post(register).get(list))
        .route("/tables/{id}", get(table))
        .route("/plans", post(plans))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route("/health", get(|| async { "ok\n" }))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state))
}

/// Serves until interrupted, printing the address it listens on first (port 0 picks one).
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let listen = config.listen;
    if !listen.ip().is_loopback() && config.token.is_none() {
        log::warn!("listening on {listen} without --token-file: anyone who reaches it can use the service");
    }
    let app = router(config)?;
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
            return ApiError(StatusCode::UNAUTHORIZED, "missing bearer token (Authorization: Bearer …)".into())
                .into_response();
        };
        if !same(given.as_bytes(), token.as_bytes()) {
            return ApiError(StatusCode::FORBIDDEN, "wrong bearer token".into()).into_response();
        }
    }
    next.run(request).await
}

/// Equality in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn register(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body?;
    let shared = state.clone();
    let entry = blocking(move || Ok(shared.catalogue.lock().map_err(poisoned)?.register(&body)?)).await?;
    state.metrics.registrations.fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

async fn list(State(state): State<Shared>) -> Result<Json<Vec<TableEntry>>, ApiError> {
    blocking(move || Ok(state.catalogue.lock().map_err(poisoned)?.tables()?)).await.map(Json)
}

async fn table(State(state): State<Shared>, UrlPath(id): UrlPath<String>) -> Result<Json<TableEntry>, ApiError> {
    blocking(move || state.catalogue.lock().map_err(poisoned)?.table(&id)?.ok_or_else(|| unknown_table(&id)))
        .await
        .map(Json)
}

fn unknown_table(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("table '{id}' is not registered (GET /tables lists them)"))
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the catalogue is unavailable after a failed request".into())
}

/// `?format=yaml` answers the plan file itself.
#[derive(Debug, Deserialize)]
struct Format {
    format: Option<String>,
}

async fn plans(
    State(state): State<Shared>,
    Query(format): Query<Format>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let yaml = match format.format.as_deref() {
        None | Some("json") => false,
        Some("yaml") => true,
        Some(other) => {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("format '{other}': expected json or yaml")));
        }
    };
    let request: PlanRequest =
        serde_json::from_slice(&body?).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("plan request: {e}")))?;
    let key = request.key();
    let shared = state.clone();
    let (table, lookup) = (request.table.clone(), key.clone());
    let (path, hit) = blocking(move || {
        let catalogue = shared.catalogue.lock().map_err(poisoned)?;
        catalogue.table(&table)?.ok_or_else(|| unknown_table(&table))?;
        Ok((catalogue.path(&table), catalogue.cached(&lookup)?))
    })
    .await?;
    let (text, cached) = match hit {
        Some(text) => {
            state.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            (text, true)
        }
        None => (solve(&state, request, key, path).await?, false),
    };
    if yaml {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response());
    }
    let plan: Plan = serde_norway::from_str(&text)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("stored plan: {e}")))?;
    let s = &plan.solver;
    let answer = serde_json::json!({
        "cached": cached, "status": s.status, "gap": s.gap, "seconds": s.seconds, "plan": plan,
    });
    Ok(Json(answer).into_response())
}

/// Solves on the worker pool (waiting in the queue for a worker), then stores the plan.
async fn solve(state: &Shared, request: PlanRequest, key: String, path: PathBuf) -> Result<String, ApiError> {
    state.metrics.queued.fetch_add(1, Ordering::Relaxed);
    let permit = state.workers.acquire().await;
    state.metrics.queued.fetch_sub(1, Ordering::Relaxed);
    let _permit = permit.map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping".into()))?;
    let (shared, limit) = (state.clone(), state.config.time_limit);
    let started = Instant::now();
    let text = blocking(move || {
        let plan = answer(&request, &path, limit)?;
        let text = serde_norway::to_string(&plan)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("plan: {e}")))?;
        shared.catalogue.lock().map_err(poisoned)?.store(&key, &request.table, &text)?;
        Ok(text)
    })
    .await?;
    state.metrics.solves.fetch_add(1, Ordering::Relaxed);
    state.metrics.solve_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    Ok(text)
}

async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let m = &state.metrics;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        text += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    metric("bitsearch_requests_total", "counter", "HTTP requests received.", get(&m.requests).to_string());
    metric("bitsearch_client_errors_total", "counter", "Requests answered 4xx.", get(&m.client_errors).to_string());
    metric("bitsearch_server_errors_total", "counter", "Requests answered 5xx.", get(&m.server_errors).to_string());
    metric("bitsearch_registrations_total", "counter", "Table registrations.", get(&m.registrations).to_string());
    metric("bitsearch_solves_total", "counter", "Plans solved (cache misses).", get(&m.solves).to_string());
    let seconds = get(&m.solve_micros) as f64 / 1e6;
    metric("bitsearch_solve_seconds_total", "counter", "Wall time of the solves.", format!("{seconds:.6}"));
    metric(
        "bitsearch_plan_cache_hits_total",
        "counter",
        "Plans answered from the catalogue.",
        get(&m.cache_hits).to_string(),
    );
    metric("bitsearch_solve_queue_depth", "gauge", "Plan requests waiting for a worker.", get(&m.queued).to_string());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
