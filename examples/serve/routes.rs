//! The HTTP routes: the chat page and its script and style (embedded in the binary), the
//! OpenAI-style `GET /v1/models[/{id}]` and `POST /v1/chat/completions` (JSON or server-sent
//! events), `GET /health` and `GET /metrics`, and OpenAI-shaped JSON errors for everything
//! else. Every request goes through [`track`]: request id, status count and access log.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, error::TrySendError, UnboundedReceiver};
use tokio::sync::Semaphore;

use crate::api::{ChatRequest, RequestLimits};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::prompt::{Prompt, Prompter};
use crate::worker::{Event, Finish, Job};

/// What every handler shares.
pub struct AppState {
    /// The model thread's queue.
    pub jobs: mpsc::Sender<Job>,
    /// Turns requests into prompts.
    pub prompter: Prompter,
    /// Bounds on requests.
    pub limits: RequestLimits,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// The model's name in responses and `/v1/models`.
    pub model_name: String,
    /// Other names a request's `model` may give (`--served-model-name`).
    pub aliases: Vec<String>,
    /// When the server started (Unix seconds), the model's `created`.
    pub started: u64,
    /// The next completion's number, for its id.
    pub next_id: AtomicU64,
    /// The next generated request id's number.
    pub next_request: AtomicU64,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Permits to parse, decode and tokenize a request (`--max-preprocess`).
    pub preprocess: Arc<Semaphore>,
    /// The longest a request body may take to arrive.
    pub body_timeout: Duration,
}

impl AppState {
    /// Whether `name` is the served model's id or one of its aliases.
    pub fn serves(&self, name: &str) -> bool {
        name == self.model_name || self.aliases.iter().any(|alias| alias == name)
    }

    /// `Ok` when `name` is served, else OpenAI's 404 `model_not_found`.
    fn check_model(&self, name: &str) -> Result<(), ApiError> {
        match self.serves(name) {
            true => Ok(()),
            false => Err(ApiError::model_not_found(name)),
        }
    }
}

/// The server's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(script))
        .route("/page.css", get(style))
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route("/v1/models", get(models).fallback(method_not_allowed))
        .route("/v1/models/{id}", get(model).fallback(method_not_allowed))
        .route(
            "/v1/chat/completions",
            post(completions).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn script() -> impl IntoResponse {
    let js = include_str!("page.js");
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        js,
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("page.css"),
    )
}

async fn not_found() -> ApiError {
    ApiError::refused(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::refused(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// The request id header, accepted from the client and echoed on every answer.
const REQUEST_ID: &str = "x-request-id";
/// The longest client request id kept; a longer or non-printable one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// Around every request: takes or makes its request id, echoes it, counts the status and
/// writes one JSON access-log line on stderr (the duration is until the answer's head: a
/// streamed answer goes on after it).
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(&request, &state);
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.count_request(status);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let line = json!({
        "method": method,
        "path": path,
        "status": status,
        // Milliseconds to the microsecond.
        "duration_ms": start.elapsed().as_micros() as f64 / 1e3,
        "request_id": id,
    });
    eprintln!("{line}");
    response
}

/// The client's `x-request-id` when it is short printable ASCII, else a new `req-<n>-<t>`.
fn request_id(request: &Request, state: &AppState) -> String {
    let given = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID);
    match given {
        Some(id) => id.to_string(),
        None => format!(
            "req-{}-{}",
            state.started,
            state.next_request.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Prometheus text exposition of [`Metrics`], with the model queue's length.
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let queued = state.jobs.max_capacity() - state.jobs.capacity();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(queued),
    )
}

/// The served model under `name` (its id or an alias), as `/v1/models` lists it.
fn model_object(state: &AppState, name: &str) -> Value {
    json!({
        "id": name,
        "object": "model",
        "created": state.started,
        "owned_by": "vlm",
        "root": state.model_name,
        "status": "ready",
    })
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let names = std::iter::once(&state.model_name).chain(&state.aliases);
    let data: Vec<Value> = names.map(|name| model_object(&state, name)).collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`: the model, or OpenAI's 404 `model_not_found`.
async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.check_model(&id)?;
    Ok(Json(model_object(&state, &id)))
}

/// `POST /v1/chat/completions`.
async fn completions(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let body = read_body(&state, request).await?;
    let shared = Arc::clone(&state);
    // Parsing, image decoding and tokenizing take CPU time: off the async threads, a bounded
    // number at once (the permit lives as long as the work, even if the client goes).
    let permit = Arc::clone(&state.preprocess)
        .acquire_owned()
        .await
        .map_err(|err| internal(format!("request preparation failed: {err}")))?;
    let prepared = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        prepare(&shared, &body)
    });
    let (request, prompt) = prepared
        .await
        .map_err(|err| internal(format!("request preparation failed: {err}")))??;
    let (events, answer) = mpsc::unbounded_channel();
    let job = Job {
        prompt,
        sampling: request.sampling.clone(),
        events,
        arrived,
    };
    state.jobs.try_send(job).map_err(|err| match err {
        TrySendError::Full(_) => ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests are waiting for the model; retry later",
        ),
        TrySendError::Closed(_) => ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ),
    })?;
    let meta = Completion {
        id: format!("chatcmpl-{}", state.next_id.fetch_add(1, Ordering::Relaxed)),
        created: unix_now(),
        model: state.model_name.clone(),
    };
    if request.stream {
        Ok(stream(answer, meta, request.include_usage).into_response())
    } else {
        Ok(Json(collect(answer, &meta).await?).into_response())
    }
}

fn prepare(state: &AppState, body: &[u8]) -> Result<(ChatRequest, Prompt), ApiError> {
    let request = ChatRequest::parse(body, state.limits)?;
    if let Some(model) = &request.model {
        state.check_model(model)?;
    }
    let prompt = state
        .prompter
        .prompt(&request.messages, request.sampling.max_tokens)?;
    Ok((request, prompt))
}

/// The request body, within the body limit and `--body-timeout`.
async fn read_body(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(state.body_timeout, Bytes::from_request(request, &())).await {
        Ok(body) => body.map_err(|rejection| body_error(&rejection, state.body_limit)),
        Err(_) => Err(ApiError::refused(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                state.body_timeout.as_secs()
            ),
        )),
    }
}

fn body_error(rejection: &BytesRejection, limit: usize) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over this server's limit of {limit} bytes"),
        ),
        status => ApiError::refused(status, rejection.body_text()),
    }
}

fn internal(message: String) -> ApiError {
    ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
}

/// The identity every chunk of one completion repeats.
struct Completion {
    id: String,
    created: u64,
    model: String,
}

impl Completion {
    fn object(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        let choice = json!({
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        });
        self.object("chat.completion.chunk", json!([choice]))
    }
}

fn usage(finish: &Finish) -> Value {
    json!({
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    })
}

/// Waits for the whole answer and returns the `chat.completion` object.
async fn collect(
    mut answer: UnboundedReceiver<Event>,
    meta: &Completion,
) -> Result<Value, ApiError> {
    let mut text = String::new();
    while let Some(event) = answer.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Failed(message) => return Err(internal(message)),
            Event::Done(finish) => {
                let choice = json!({
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": null,
                    "finish_reason": finish.reason,
                });
                let mut object = meta.object("chat.completion", json!([choice]));
                object["usage"] = usage(&finish);
                return Ok(object);
            }
        }
    }
    Err(internal("the model thread stopped".into()))
}

/// The answer as server-sent events in OpenAI's chunk format, ending with `data: [DONE]`.
fn stream(
    mut answer: UnboundedReceiver<Event>,
    meta: Completion,
    include_usage: bool,
) -> impl IntoResponse {
    let (events, sse) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        // Ends when the answer is complete or the client is gone (the stream was dropped),
        // which drops `answer` and so tells the model thread to stop.
        let first = meta.chunk(json!({"role": "assistant", "content": ""}), None);
        if events.send(first).is_err() {
            return;
        }
        while let Some(event) = answer.recv().await {
            let (chunks, last) = sse_chunks(&meta, event, include_usage);
            if chunks.into_iter().any(|chunk| events.send(chunk).is_err()) || last {
                return;
            }
        }
    });
    let chunks = futures_util::stream::unfold(Some(sse), |state| async move {
        let mut sse = state?;
        match sse.recv().await {
            Some(value) => Some((sse_data(value.to_string()), Some(sse))),
            None => Some((sse_data("[DONE]".into()), None)),
        }
    });
    Sse::new(chunks)
}

/// The chunks one model event becomes, and whether it was the last.
fn sse_chunks(meta: &Completion, event: Event, include_usage: bool) -> (Vec<Value>, bool) {
    match event {
        Event::Text(piece) => (vec![meta.chunk(json!({"content": piece}), None)], false),
        Event::Failed(message) => (vec![internal(message).body()], true),
        Event::Done(finish) => {
            let mut chunks = vec![meta.chunk(json!({}), Some(finish.reason))];
            if include_usage {
                let mut last = meta.object("chat.completion.chunk", json!([]));
                last["usage"] = usage(&finish);
                chunks.push(last);
            }
            (chunks, true)
        }
    }
}

fn sse_data(data: String) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().data(data))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
