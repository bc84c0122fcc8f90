//! The routes: each handler parses and checks its request on the I/O thread, then hands
//! catalogue work to the blocking pool and solves to the worker pool. Their `utoipa::path`
//! attributes are the OpenAPI document.

use crate::catalogue::{CatalogueError, TableEntry};
use crate::errors::{self, ApiError, ErrorBody};
use crate::plans::{self, FrontierAnswer, FrontierEvent, FrontierRequest, Outcome, PlanRequest, Prepared};
use crate::{AppState, Shared, catalogue, limits, reports, work};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bitsearch_records::Plan;
use bitsearch_solver::SolverError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "bitsearch serve", description = "Bit-allocation plans on demand from registered sensitivity tables."),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags((name = "bitsearch"))
)]
pub struct Doc;

/// The bearer token `--token-file` asks for.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        match e {
            CatalogueError::NotATable(_) | CatalogueError::Partial { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            CatalogueError::Database(_) | CatalogueError::File { .. } => ApiError::internal("the catalogue", e),
        }
    }
}

impl From<SolverError> for ApiError {
    fn from(e: SolverError) -> Self {
        match e {
            SolverError::Config { .. } => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            // The table read back from the catalogue's own file: a server fault, not the client's.
            SolverError::File { .. } => ApiError::internal("reading the table", e),
            // Budgets no plan meets, and programs this table cannot make or HiGHS cannot solve.
            _ => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        }
    }
}

/// Runs `f` on the blocking pool: catalogue work (SQLite, hashing, file writes) stays off the
/// I/O threads. A panic in `f` is this request's failure alone; the catalogue's lock does not
/// stay poisoned (see [`catalogue`]).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(move || errors::caught(f)).await {
        Ok(answer) => answer,
        Err(e) => Err(ApiError::internal("a worker", e)),
    }
}

/// How long a solve takes here, for a refused request's `Retry-After`.
fn typical_solve(state: &Shared) -> Duration {
    state.metrics.solves.mean().unwrap_or(Duration::from_secs(1))
}

/// Waits in the queue for a worker, or is refused 503 when the queue is full.
async fn worker(state: &Shared) -> Result<work::Worker, ApiError> {
    state.queue.worker(typical_solve(state)).await
}

fn unknown_table(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("table '{id}' is not registered (GET /tables lists them)"))
}

/// The catalogue, locked. A panic while it was held leaves SQLite consistent (a transaction not
/// committed is rolled back), so the lock is taken even when poisoned.
fn catalogue(state: &AppState) -> MutexGuard<'_, catalogue::Catalogue> {
    state.catalogue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on the catalogue, on the blocking pool.
async fn with_catalogue<T: Send + 'static>(
    state: &Shared,
    f: impl FnOnce(&mut catalogue::Catalogue) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    blocking(move || f(&mut catalogue(&state))).await
}

/// The file of registered table `id`, or 404.
fn table_path(catalogue: &catalogue::Catalogue, id: &str) -> Result<PathBuf, ApiError> {
    catalogue.table(id)?.ok_or_else(|| unknown_table(id))?;
    Ok(catalogue.path(id))
}

/// The request's body, refused past the route's limit (413) or when it takes longer than
/// `--body-timeout` to arrive (408).
async fn read_body(state: &Shared, path: &str, body: Body) -> Result<Bytes, ApiError> {
    let errors::BodyLimit { bytes: limit, flag, value } = errors::body_limit(&state.config.limits, path);
    let timeout = state.config.limits.body_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_over_limit(&e) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body: more than {limit} bytes, more than this service takes ({flag} {value})"),
        )),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("request body: {e}"))),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body: not received within --body-timeout {} s", timeout.as_secs_f64()),
        )),
    }
}

fn is_over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

async fn parse<T: serde::de::DeserializeOwned>(
    state: &Shared,
    path: &str,
    body: Body,
    what: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(state, path, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}

/// A request's count within its limit, or 400 naming the flag.
fn at_most(what: &str, asked: usize, flag: &str, limit: usize) -> Result<(), ApiError> {
    limits::at_most(what, asked, flag, limit).map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))
}

/// Registers a sensitivity table (the Parquet file `bitsearch sensitivity` writes) under the
/// hash of its bytes; registering the same bytes again finds it.
#[utoipa::path(post, path = "/tables",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the table's Parquet file"),
    responses((status = 201, body = TableEntry),
        (status = 400, description = "not a whole, valid table, or past a limit (the message names its flag)", body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn register(State(state): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(&state, "/tables", body).await?;
    let id = bitsearch_types::sha256_hex(&body);
    let lookup = id.clone();
    let entry = match with_catalogue(&state, move |c| Ok(c.table(&lookup)?)).await? {
        Some(entry) => entry,
        None => {
            let shared = state.clone();
            // Read and checked without the catalogue's lock: a slow or failing decode holds up
            // nobody else.
            let upload =
                blocking(move || Ok(catalogue::Upload::check(&shared.tables, id, &body, &shared.config.limits)?))
                    .await?;
            with_catalogue(&state, move |c| Ok(c.add(upload)?)).await?
        }
    };
    state.metrics.registrations.fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

/// The registered tables.
#[utoipa::path(get, path = "/tables", responses((status = 200, body = Vec<TableEntry>)))]
pub async fn list(State(state): State<Shared>) -> Result<Json<Vec<TableEntry>>, ApiError> {
    with_catalogue(&state, |c| Ok(c.tables()?)).await.map(Json)
}

/// One registered table.
#[utoipa::path(get, path = "/tables/{id}", params(("id" = String, Path, description = "the table's sha256")),
    responses((status = 200, body = TableEntry), (status = 404, body = ErrorBody)))]
pub async fn table(State(state): State<Shared>, UrlPath(id): UrlPath<String>) -> Result<Json<TableEntry>, ApiError> {
    with_catalogue(&state, move |c| c.table(&id)?.ok_or_else(|| unknown_table(&id))).await.map(Json)
}

/// Where a built report is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportAnswer {
    /// The report's page, under `/reports/`.
    pub report: String,
}

/// The HTML report of a table with the plans asked of it and its newest frontier, built when
/// they have changed; answers with a redirect to the page, served with its figures under
/// `/reports/`.
#[utoipa::path(get, path = "/tables/{id}/report", params(("id" = String, Path, description = "the table's sha256")),
    responses((status = 303, body = ReportAnswer, headers(("location" = String))), (status = 404, body = ErrorBody),
        (status = 503, description = "every worker is busy and the queue is full; `Retry-After` says when to come back", body = ErrorBody, headers(("retry-after" = u64)))))]
pub async fn report(State(state): State<Shared>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let source = with_catalogue(&state, move |c| {
        let table_path = table_path(c, &id)?;
        let frontier = c.latest_frontier(&id)?.map(|(_, text)| serde_json::from_str::<FrontierAnswer>(&text));
        let frontier = frontier.transpose().map_err(|e| ApiError::internal("reading a stored frontier", e))?;
        Ok(reports::Source { plans: c.plans_of(&id)?, table: id, table_path, frontier })
    })
    .await?;
    let root = state.config.data.join(reports::FOLDER);
    let name = if root.join(source.name()).is_dir() {
        source.name()
    } else {
        let name = worker(&state)
            .await?
            .run(move || reports::build(&root, &source).map_err(|e| ApiError::internal("building the report", e)))
            .await?;
        state.metrics.reports.fetch_add(1, Ordering::Relaxed);
        name
    };
    let page = format!("/reports/{name}/index.html");
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, page.clone())], Json(ReportAnswer { report: page })).into_response())
}

/// `?format=yaml` answers the plan file itself.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Format {
    /// `json` (the default) or `yaml`.
    format: Option<String>,
}

impl Format {
    fn yaml(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("yaml") => Ok(true),
            Some(other) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, format!("format '{other}': expected json or yaml")))
            }
        }
    }
}

/// A plan with how it was solved.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanAnswer {
    /// The plan's id, for `GET /plans/{id}`.
    pub id: String,
    /// Answered from the catalogue, not solved for this request.
    pub cached: bool,
    /// The solver's status: `optimal`, or how it stopped.
    pub status: String,
    /// Relative MIP gap of the plan HiGHS returned.
    pub gap: f64,
    /// Seconds the solve took.
    pub seconds: f64,
    /// The plan, as `bitsearch solve` writes it (YAML there).
    #[schema(value_type = Object)]
    pub plan: Plan,
}

fn plan_response(id: String, text: String, cached: bool, yaml: bool) -> Result<Response, ApiError> {
    if yaml {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response());
    }
    let plan: Plan = serde_norway::from_str(&text).map_err(|e| ApiError::internal("reading a stored plan", e))?;
    let s = &plan.solver;
    let (status, gap, seconds) = (s.status.clone(), s.gap, s.seconds);
    Ok(Json(PlanAnswer { id, cached, status, gap, seconds, plan }).into_response())
}

/// The plan for a table under budgets, as `bitsearch solve --budget` chooses it; identical
/// requests are answered from the catalogue.
#[utoipa::path(post, path = "/plans", params(Format), request_body = PlanRequest,
    responses((status = 200, body = PlanAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "no plan meets the budgets (the message names the smallest feasible budget), or the table cannot make a program", body = ErrorBody),
        (status = 503, description = "every worker is busy and the queue is full; `Retry-After` says when to come back", body = ErrorBody, headers(("retry-after" = u64)))))]
pub async fn plans(
    State(state): State<Shared>,
    Query(format): Query<Format>,
    body: Body,
) -> Result<Response, ApiError> {
    let yaml = format.yaml()?;
    let request: PlanRequest = parse(&state, "/plans", body, "plan request").await?;
    at_most("budgets", request.budgets.len(), "--max-budgets", state.config.limits.budgets)?;
    let key = request.key();
    let (table, lookup) = (request.table.clone(), key.clone());
    let (path, hit) = with_catalogue(&state, move |c| Ok((table_path(c, &table)?, c.cached(&lookup)?))).await?;
    if let Some((id, text)) = hit {
        state.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        return plan_response(id, text, true, yaml);
    }
    let worker = worker(&state).await?;
    let shared = state.clone();
    let limit = state.config.time_limit.min(state.config.limits.request_time.as_secs_f64());
    let started = Instant::now();
    let (id, text) = worker
        .run(move || {
            let plan = plans::answer(&request, &path, limit)?;
            let text = serde_norway::to_string(&plan).map_err(|e| ApiError::internal("writing the plan", e))?;
            let id = catalogue(&shared).store(&key, &request.table, &text)?;
            Ok((id, text))
        })
        .await?;
    state.metrics.solves.observe(started.elapsed());
    plan_response(id, text, false, yaml)
}

/// A plan answered before, by its id (from `POST /plans` or a frontier's point).
#[utoipa::path(get, path = "/plans/{id}", params(("id" = String, Path), Format),
    responses((status = 200, body = PlanAnswer), (status = 404, body = ErrorBody)))]
pub async fn plan(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(format): Query<Format>,
) -> Result<Response, ApiError> {
    let yaml = format.yaml()?;
    let lookup = id.clone();
    let text = with_catalogue(&state, move |c| Ok(c.plan(&lookup)?)).await?;
    let text =
        text.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("plan '{id}' was never answered here")))?;
    plan_response(id, text, true, yaml)
}

/// `?stream=true` sends the frontier as it is solved.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Streamed {
    /// One JSON line per point (`application/x-ndjson`), the last `{"done": …}`, or `{"error": …}`
    /// when the sweep ran past `--request-time-limit`; a stream that ends without either was cut
    /// short.
    #[serde(default)]
    stream: bool,
}

/// The Pareto frontier of a sweep, as `bitsearch solve --sweep` computes it: the program's plan
/// at each budget (budgets no plan meets left out), then the uniform plans; whole, or streamed
/// point by point. Each point's plan is kept under the id its `plan` field names.
#[utoipa::path(post, path = "/frontiers", params(Streamed), request_body = FrontierRequest,
    responses((status = 200, description = "whole, or with ?stream=true one FrontierEvent per line",
            content((FrontierAnswer = "application/json"), (FrontierEvent = "application/x-ndjson"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "no budget of the sweep can be met (whole answers only)", body = ErrorBody),
        (status = 503, description = "every worker is busy and the queue is full (`Retry-After` says when to come back), or a whole sweep ran past `--request-time-limit`", body = ErrorBody, headers(("retry-after" = u64)))))]
pub async fn frontiers(
    State(state): State<Shared>,
    Query(streamed): Query<Streamed>,
    body: Body,
) -> Result<Response, ApiError> {
    let request: FrontierRequest = parse(&state, "/frontiers", body, "frontier request").await?;
    let limits = &state.config.limits;
    at_most("sweep points", request.sweep()?.points, "--max-sweep-points", limits.sweep_points)?;
    at_most("budgets", request.budgets.len(), "--max-budgets", limits.budgets)?;
    let key = request.key();
    let (table, lookup) = (request.table.clone(), key.clone());
    let (path, hit) = with_catalogue(&state, move |c| Ok((table_path(c, &table)?, c.frontier(&lookup)?))).await?;
    if let Some(text) = hit {
        state.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        let mut answer: FrontierAnswer =
            serde_json::from_str(&text).map_err(|e| ApiError::internal("reading a stored frontier", e))?;
        answer.cached = true;
        return if streamed.stream { Ok(lines(answer.events())) } else { whole(answer) };
    }
    // Dropped with this handler's future, or with the stream's body: either way the client is gone.
    let (hold, stop) = work::hold(state.config.limits.request_time);
    let worker = worker(&state).await?;
    let config = request.config(state.config.time_limit);
    let prepared = worker.run(move || Ok(Prepared::new(&config, &path)?)).await?;
    let (events, received) = tokio::sync::mpsc::channel(16);
    let shared = state.clone();
    let runtime = tokio::runtime::Handle::current();
    let send_stop = stop.clone();
    // A stream's reader that stops reading holds the sweep only until the request's time is up.
    let send = move |event: FrontierEvent| {
        // The timer is made inside the runtime: the solver threads are not its own.
        let sent = async { tokio::time::timeout(send_stop.remaining(), events.send(event)).await };
        !streamed.stream || runtime.block_on(sent).is_ok_and(|s| s.is_ok())
    };
    let solving = async move { worker.run(move || solve_sweep(&shared, &request, &prepared, &stop, send)).await };
    if !streamed.stream {
        let answer = solving.await?;
        drop(hold);
        return whole(answer.ok_or_else(|| ApiError::internal("the sweep", "stopped with its client present"))?);
    }
    tokio::spawn(async move {
        if let Err(e) = solving.await {
            log::info!("frontier: {}", e.message);
        }
    });
    let lines = ReceiverStream::new(received).map(move |event| {
        let _held = &hold;
        Ok::<_, std::convert::Infallible>(line_of(&event))
    });
    Ok(ndjson(Body::from_stream(lines)))
}

/// Solves and stores a sweep, each line handed to `send`: the answer, or None when its client
/// left first.
fn solve_sweep(
    state: &AppState,
    request: &FrontierRequest,
    prepared: &Prepared,
    stop: &work::Stop,
    send: impl Fn(FrontierEvent) -> bool,
) -> Result<Option<FrontierAnswer>, ApiError> {
    let started = Instant::now();
    let outcome = plans::sweep(request, prepared, stop, |event| {
        if matches!(event, FrontierEvent::Point(_)) {
            state.metrics.solves.observe(started.elapsed());
        }
        send(event)
    })?;
    let swept = match outcome {
        Outcome::Swept(swept) => swept,
        Outcome::Left => return Ok(None),
        Outcome::OutOfTime { done, of } => {
            let limit = state.config.limits.request_time.as_secs_f64();
            let message = format!(
                "the sweep ran past --request-time-limit {limit} s after {done} of its {of} budgets: ask for \
                 fewer points"
            );
            send(FrontierEvent::Error(message.clone()));
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message));
        }
    };
    let text = serde_json::to_string(&swept.answer).map_err(|e| ApiError::internal("writing the frontier", e))?;
    catalogue(state).store_frontier(&request.key(), &request.table, &text, &swept.plans)?;
    state.metrics.frontiers.fetch_add(1, Ordering::Relaxed);
    let a = &swept.answer;
    send(FrontierEvent::Done { id: a.id.clone(), solved: a.solved, of: a.of, cached: false });
    Ok(Some(swept.answer))
}

/// A whole frontier, or 422 when none of its budgets could be met.
fn whole(answer: FrontierAnswer) -> Result<Response, ApiError> {
    if answer.solved == 0 {
        let first = answer.left_out.first().map(|l| format!(": {}: {}", l.budget, l.error)).unwrap_or_default();
        let message = format!("none of the sweep's {} budgets can be met{first}", answer.of);
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message));
    }
    Ok(Json(answer).into_response())
}

fn line_of(event: &FrontierEvent) -> String {
    let mut line = serde_json::to_string(event).unwrap_or_default();
    line.push('\n');
    line
}

fn lines(events: Vec<FrontierEvent>) -> Response {
    ndjson(Body::from(events.iter().map(line_of).collect::<String>()))
}

fn ndjson(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// Counters in Prometheus' text format: requests, errors, registrations, cache hits, sweeps,
/// reports, the solve queue's depth and a histogram of solve times.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(state.queue.waiting()))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object)))]
pub async fn openapi(State(state): State<Shared>) -> Response {
    Json(state.openapi.get()).into_response()
}

/// `ok` while the service runs; needs no token.
#[utoipa::path(get, path = "/health", security(()), responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn health() -> &'static str {
    "ok\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_its_request_s_422_and_never_poisons_the_catalogue() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data: dir.path().to_path_buf(),
            token: None,
            workers: 1,
            time_limit: 1.0,
            limits: crate::Limits::DEFAULT,
        };
        let state = crate::state(config).unwrap();
        let failed = blocking(|| -> Result<(), ApiError> { panic!("a decoder's bug") }).await.unwrap_err();
        assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!failed.message.contains("decoder's bug"), "the panic's text stays in the log");
        // A panic with the catalogue locked poisons its mutex; the next request still gets it.
        let failed = with_catalogue(&state, |_| -> Result<(), ApiError> { panic!("inside the lock") }).await;
        assert_eq!(failed.unwrap_err().status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(state.catalogue.is_poisoned());
        let tables = with_catalogue(&state, |c| Ok(c.tables()?)).await.unwrap();
        assert!(tables.is_empty());
    }
}
