//! The routes: each handler parses and checks its request on the I/O thread, then hands
//! catalogue work to the blocking pool and solves to the worker pool. Their `utoipa::path`
//! attributes are the OpenAPI document.

use crate::catalogue::{CatalogueError, TableEntry};
use crate::plans::{self, FrontierAnswer, FrontierEvent, FrontierRequest, PlanRequest, Prepared};
use crate::reports;
use crate::{Shared, catalogue};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bitsearch_records::Plan;
use bitsearch_solver::SolverError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
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

/// An error answer: a status and one line naming what was wrong.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One line.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1.replace('\n', " ") })).into_response()
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        let status = match e {
            CatalogueError::NotATable(_) | CatalogueError::Partial { .. } => StatusCode::BAD_REQUEST,
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

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"))
}

/// Runs `f` on the blocking pool: catalogue work (SQLite, hashing, file writes) stays off the
/// I/O threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(internal("worker failed", e)))
}

/// Waits in the queue for a worker.
async fn worker(state: &Shared) -> Result<OwnedSemaphorePermit, ApiError> {
    state.metrics.queued.fetch_add(1, Ordering::Relaxed);
    let permit = state.workers.clone().acquire_owned().await;
    state.metrics.queued.fetch_sub(1, Ordering::Relaxed);
    permit.map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping".into()))
}

fn unknown_table(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("table '{id}' is not registered (GET /tables lists them)"))
}

fn poisoned<T>(_: T) -> ApiError {
    internal("the catalogue", "unavailable after a failed request")
}

/// Runs `f` on the catalogue, on the blocking pool.
async fn with_catalogue<T: Send + 'static>(
    state: &Shared,
    f: impl FnOnce(&mut catalogue::Catalogue) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    blocking(move || f(&mut *state.catalogue.lock().map_err(poisoned)?)).await
}

/// The file of registered table `id`, or 404.
fn table_path(catalogue: &catalogue::Catalogue, id: &str) -> Result<PathBuf, ApiError> {
    catalogue.table(id)?.ok_or_else(|| unknown_table(id))?;
    Ok(catalogue.path(id))
}

fn parse<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>, what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(&body?).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}

/// Registers a sensitivity table (the Parquet file `bitsearch sensitivity` writes) under the
/// hash of its bytes; registering the same bytes again finds it.
#[utoipa::path(post, path = "/tables",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the table's Parquet file"),
    responses((status = 201, body = TableEntry), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn register(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body?;
    let entry = with_catalogue(&state, move |c| Ok(c.register(&body)?)).await?;
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
    responses((status = 303, body = ReportAnswer, headers(("location" = String))), (status = 404, body = ErrorBody)))]
pub async fn report(State(state): State<Shared>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let source = with_catalogue(&state, move |c| {
        let table_path = table_path(c, &id)?;
        let frontier = c.latest_frontier(&id)?.map(|(_, text)| serde_json::from_str::<FrontierAnswer>(&text));
        let frontier = frontier.transpose().map_err(|e| internal("stored frontier", e))?;
        Ok(reports::Source { plans: c.plans_of(&id)?, table: id, table_path, frontier })
    })
    .await?;
    let root = state.config.data.join(reports::FOLDER);
    let name = if root.join(source.name()).is_dir() {
        source.name()
    } else {
        let permit = worker(&state).await?;
        let name = blocking(move || {
            let _permit = permit;
            reports::build(&root, &source).map_err(|e| internal("report", e))
        })
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
            Some(other) => Err(ApiError(StatusCode::BAD_REQUEST, format!("format '{other}': expected json or yaml"))),
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
    let plan: Plan = serde_norway::from_str(&text).map_err(|e| internal("stored plan", e))?;
    let s = &plan.solver;
    let (status, gap, seconds) = (s.status.clone(), s.gap, s.seconds);
    Ok(Json(PlanAnswer { id, cached, status, gap, seconds, plan }).into_response())
}

/// The plan for a table under budgets, as `bitsearch solve --budget` chooses it; identical
/// requests are answered from the catalogue.
#[utoipa::path(post, path = "/plans", params(Format), request_body = PlanRequest,
    responses((status = 200, body = PlanAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "no plan meets the budgets; the message names the smallest feasible budget", body = ErrorBody)))]
pub async fn plans(
    State(state): State<Shared>,
    Query(format): Query<Format>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let yaml = format.yaml()?;
    let request: PlanRequest = parse(body, "plan request")?;
    let key = request.key();
    let (table, lookup) = (request.table.clone(), key.clone());
    let (path, hit) = with_catalogue(&state, move |c| Ok((table_path(c, &table)?, c.cached(&lookup)?))).await?;
    if let Some((id, text)) = hit {
        state.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        return plan_response(id, text, true, yaml);
    }
    let permit = worker(&state).await?;
    let (shared, limit) = (state.clone(), state.config.time_limit);
    let started = Instant::now();
    let (id, text) = blocking(move || {
        let _permit = permit;
        let plan = plans::answer(&request, &path, limit)?;
        let text = serde_norway::to_string(&plan).map_err(|e| internal("plan", e))?;
        let id = shared.catalogue.lock().map_err(poisoned)?.store(&key, &request.table, &text)?;
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
    let text = text.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("plan '{id}' was never answered here")))?;
    plan_response(id, text, true, yaml)
}

/// `?stream=true` sends the frontier as it is solved.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Streamed {
    /// One JSON line per point (`application/x-ndjson`), the last `{"done": …}`; a stream that
    /// ends without it was cut short.
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
        (status = 422, description = "no budget of the sweep can be met (whole answers only)", body = ErrorBody)))]
pub async fn frontiers(
    State(state): State<Shared>,
    Query(streamed): Query<Streamed>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: FrontierRequest = parse(body, "frontier request")?;
    request.sweep()?;
    let key = request.key();
    let (table, lookup) = (request.table.clone(), key.clone());
    let (path, hit) = with_catalogue(&state, move |c| Ok((table_path(c, &table)?, c.frontier(&lookup)?))).await?;
    if let Some(text) = hit {
        state.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        let mut answer: FrontierAnswer = serde_json::from_str(&text).map_err(|e| internal("stored frontier", e))?;
        answer.cached = true;
        return if streamed.stream { Ok(lines(answer.events())) } else { whole(answer) };
    }
    let permit = worker(&state).await?;
    let config = request.config(state.config.time_limit);
    let (prepared, permit) = blocking(move || Ok((Prepared::new(&config, &path)?, permit))).await?;
    let (events, received) = tokio::sync::mpsc::channel(16);
    let shared = state.clone();
    let solving = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let send = |event: FrontierEvent| !streamed.stream || events.blocking_send(event).is_ok();
        let started = Instant::now();
        let solved = plans::sweep(&request, &prepared, |event| {
            if matches!(event, FrontierEvent::Point(_)) {
                shared.metrics.solves.observe(started.elapsed());
            }
            send(event)
        });
        let Some(swept) = solved? else { return Ok(None) };
        let text = serde_json::to_string(&swept.answer).map_err(|e| internal("frontier", e))?;
        shared.catalogue.lock().map_err(poisoned)?.store_frontier(&key, &request.table, &text, &swept.plans)?;
        shared.metrics.frontiers.fetch_add(1, Ordering::Relaxed);
        let a = &swept.answer;
        send(FrontierEvent::Done { id: a.id.clone(), solved: a.solved, of: a.of, cached: false });
        Ok::<_, ApiError>(Some(swept.answer))
    });
    if !streamed.stream {
        let answer = solving.await.map_err(|e| internal("worker failed", e))??;
        return whole(answer.ok_or_else(|| internal("frontier", "the sweep stopped"))?);
    }
    tokio::spawn(async move {
        match solving.await {
            Ok(Err(e)) => log::error!("frontier: {}", e.1),
            Err(e) => log::error!("frontier: {e}"),
            Ok(Ok(_)) => {}
        }
    });
    let lines = ReceiverStream::new(received).map(|event| Ok::<_, std::convert::Infallible>(line_of(&event)));
    Ok(ndjson(Body::from_stream(lines)))
}

/// A whole frontier, or 422 when none of its budgets could be met.
fn whole(answer: FrontierAnswer) -> Result<Response, ApiError> {
    if answer.solved == 0 {
        let first = answer.left_out.first().map(|l| format!(": {}: {}", l.budget, l.error)).unwrap_or_default();
        let message = format!("none of the sweep's {} budgets can be met{first}", answer.of);
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, message));
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
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
