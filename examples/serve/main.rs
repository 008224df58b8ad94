//! A web chat page and an OpenAI-compatible HTTP API over a vision-language model.
//!
//! ```text
//! cargo run --release --example serve -- --checkpoint runs/llava-qwen/step-1000
//! # then open http://127.0.0.1:8080/ or point an OpenAI client at http://127.0.0.1:8080/v1
//! ```
//!
//! - `GET /`: the chat page (upload or paste an image, multi-turn chat, streamed answers,
//!   sampling settings, a clear button); its script and style are embedded in the binary,
//!   nothing is loaded from elsewhere.
//! - `POST /v1/chat/completions`: OpenAI's chat API: `messages` whose `content` is a string
//!   or `text` and `image_url` parts (images inline as base64 `data:` URLs, JPEG or PNG; the
//!   server fetches no URL), `max_tokens`, `temperature`, `top_p`, `stop`, `seed`, `stream`
//!   (server-sent events in OpenAI's chunk format, ending with `data: [DONE]`) and `usage`.
//! - `GET /v1/models` and `GET /v1/models/{id}`: the model served, under its id and its
//!   aliases (`--served-model-name`); a request's `model` must be one of them (else 404
//!   `model_not_found`). Fields of OpenAI's API that the server does not implement
//!   (`logprobs`, `tools`, `response_format`, `n` > 1, ...) are refused (400), not ignored.
//! - `GET /health`: liveness (200 while the server runs).
//! - `GET /metrics`: Prometheus text: requests by status, time to first token and
//!   inter-token latency histograms, queue length, running sequences, the decode batch's size
//!   and bound, tokens generated.
//!
//! Every answer carries `x-request-id` (the client's, or a new one), and every request ends with
//! one JSON access-log line on stderr (method, path, status, duration, request id).
//!
//! Errors are OpenAI's JSON (`{"error": {"message", "type", "param", "code"}}`): 4xx for a bad
//! request, 5xx for the server's own failures. Requests wait in a bounded queue (`--queue`) for the
//! model thread, which decodes up to `--max-batch-size` answers together (continuous batching:
//! a request joins the running batch between decode steps and leaves it as soon as its answer
//! ends; greedy answers are the same as one at a time); a full queue answers 503 with
//! `Retry-After`.
//! Bounds: the request body (`--body-limit`, read within `--body-timeout`), the message text
//! (measured before tokenizing: at most the context times the longest token's bytes), the
//! image's pixels (checked in its header before decoding), `max_tokens` and the context;
//! parsing, image decoding and tokenizing run at most `--max-preprocess` at a time; at most
//! `--max-connections` connections are served at once (more wait to be accepted), and a
//! connection that sends no complete request head within `--idle-timeout` (a slow client, or
//! an idle keep-alive connection) is closed. Binds 127.0.0.1 unless `--host` says otherwise;
//! Ctrl-C or SIGTERM stops accepting connections, finishes the answers under way and exits.

mod api;
mod error;
mod image;
mod metrics;
mod prompt;
mod routes;
mod server;
mod stop;
mod worker;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vlm::backend::{device, Inference};
use vlm::cli::{stop_token_ids, LoadError, ModelArgs};
use vlm::image::{DecodeLimits, ImageProcessor};
use vlm::model::ImageFeatureCache;
use vlm::vision::VisionEncoder;

use crate::api::RequestLimits;
use crate::metrics::Metrics;
use crate::prompt::{max_token_bytes, Prompter};
use crate::routes::AppState;
use crate::server::ConnectionLimits;
use crate::worker::Worker;

/// Serves a vision-language model: a chat page at / and an OpenAI-compatible API at /v1.
///
/// Prints `listening on http://HOST:PORT` once it accepts connections (`--port 0` picks a
/// free port).
#[derive(Debug, Parser)]
#[command(name = "serve", verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    model: ModelArgs,

    /// Address to listen on (0.0.0.0 exposes the server to the network).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,

    /// The model's name in responses and /v1/models.
    #[arg(long, default_value = "vlm")]
    model_name: String,

    /// Another name a request's `model` may give for the served model (repeatable).
    #[arg(long, value_name = "NAME")]
    served_model_name: Vec<String>,

    /// max_tokens of a request that gives none.
    #[arg(long, value_name = "N", default_value_t = 256)]
    default_max_tokens: usize,

    /// The largest max_tokens a request may ask for.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    max_tokens_limit: usize,

    /// The longest prompt plus answer, in tokens.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    max_context: usize,

    /// The largest request body, in bytes (images travel inside it, base64).
    #[arg(long, value_name = "BYTES", default_value_t = 20 * 1024 * 1024)]
    body_limit: usize,

    /// The largest image width and height, in pixels, read from the image header before
    /// decoding.
    #[arg(long, value_name = "PIXELS", default_value_t = 4096)]
    max_image_side: u32,

    /// Requests that may wait for the model; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 16)]
    queue: usize,

    /// Answers decoded together (continuous batching); 1 answers one request at a time.
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_batch_size: usize,

    /// Images whose projected features are kept (least recently used leaves first), so an
    /// image sent again skips the vision tower; 0 keeps none.
    #[arg(long, value_name = "N", default_value_t = 16)]
    image_cache_size: usize,

    /// Requests parsed, tokenized or image-decoded at once; more wait their turn.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_preprocess: usize,

    /// Connections served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: u32,

    /// Seconds a connection may take to send a request's head, counted from its opening or,
    /// kept alive, from its last answer: idle and slow connections are closed after it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    idle_timeout: u64,

    /// Seconds a request's body may take to arrive (answered 408 after it).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    body_timeout: u64,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    /// The flags are inconsistent.
    #[error("{0} (see --help)")]
    Usage(String),
    /// The model did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Binding or serving failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The model thread ended before the server was ready.
    #[error("the model thread stopped before the model was loaded")]
    ModelThread,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), ServeError> {
    check(&args)?;
    let (jobs, queue) = tokio::sync::mpsc::channel(args.queue);
    let (ready, loaded) = std::sync::mpsc::sync_channel(1);
    let model_args = args.model.clone();
    let prompter_limits = limits(&args);
    let metrics = Arc::new(Metrics::new(args.max_batch_size));
    let max_batch_size = args.max_batch_size;
    let image_cache_size = args.image_cache_size;
    let worker_metrics = Arc::clone(&metrics);
    let model_thread = std::thread::spawn(move || {
        let dev = device();
        let worker = match model_args.load::<Inference>(&dev) {
            Ok(loaded) => {
                let prompter = prompter(&loaded, prompter_limits);
                let _ = ready.send(Ok(prompter));
                Worker {
                    stop_token_ids: stop_token_ids(&loaded.tokenizer, vocab_size(&loaded)),
                    model: loaded.model,
                    tokenizer: loaded.tokenizer,
                    device: dev,
                    metrics: worker_metrics,
                    max_batch_size,
                    image_features: RefCell::new(ImageFeatureCache::new(image_cache_size)),
                }
            }
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        worker.run(queue);
    });
    let prompter = loaded.recv().map_err(|_| ServeError::ModelThread)??;
    let state = Arc::new(AppState {
        jobs,
        prompter,
        limits: RequestLimits {
            default_max_tokens: args.default_max_tokens,
            max_tokens: args.max_tokens_limit,
        },
        body_limit: args.body_limit,
        model_name: args.model_name.clone(),
        aliases: args.served_model_name.clone(),
        started: unix_now(),
        next_id: AtomicU64::new(1),
        next_request: AtomicU64::new(1),
        metrics,
        preprocess: Arc::new(tokio::sync::Semaphore::new(args.max_preprocess)),
        body_timeout: Duration::from_secs(args.body_timeout),
    });
    let connections = ConnectionLimits {
        max_connections: args.max_connections,
        idle_timeout: Duration::from_secs(args.idle_timeout),
    };
    serve(SocketAddr::new(args.host, args.port), state, connections)?;
    // The router (and its queue sender) is gone: the model thread ends after its last job.
    model_thread.join().map_err(|_| ServeError::ModelThread)
}

fn check(args: &Args) -> Result<(), ServeError> {
    let usage = |m: &str| Err(ServeError::Usage(m.to_string()));
    if args.default_max_tokens == 0 || args.default_max_tokens > args.max_tokens_limit {
        return usage("--default-max-tokens must be in 1..=--max-tokens-limit");
    }
    if args.max_context <= args.max_tokens_limit {
        return usage("--max-context must exceed --max-tokens-limit");
    }
    if args.queue == 0 || args.max_image_side == 0 || args.body_limit == 0 {
        return usage("--queue, --max-image-side and --body-limit must be at least 1");
    }
    if args.max_batch_size == 0 {
        return usage("--max-batch-size must be at least 1");
    }
    if args.max_preprocess == 0 || args.max_connections == 0 {
        return usage("--max-preprocess and --max-connections must be at least 1");
    }
    if args.idle_timeout == 0 || args.body_timeout == 0 {
        return usage("--idle-timeout and --body-timeout must be at least 1");
    }
    Ok(())
}

/// What the prompter takes from the flags.
#[derive(Debug, Clone, Copy)]
struct PrompterLimits {
    max_image_side: u32,
    max_context: usize,
}

fn limits(args: &Args) -> PrompterLimits {
    PrompterLimits {
        max_image_side: args.max_image_side,
        max_context: args.max_context,
    }
}

fn vocab_size(loaded: &vlm::cli::LoadedModel<Inference>) -> usize {
    loaded.model.language_model().config().vocab_size
}

/// The prompter for the loaded model: its tokenizer, image processor (with the server's
/// decode limits) and placeholder token.
fn prompter(loaded: &vlm::cli::LoadedModel<Inference>, limits: PrompterLimits) -> Prompter {
    let model = &loaded.model;
    let side = limits.max_image_side;
    let decode = DecodeLimits {
        max_width: side,
        max_height: side,
        // 16-bit RGBA, the widest stored pixel format.
        max_alloc: u64::from(side) * u64::from(side) * 8,
    };
    let processor = ImageProcessor::new(model.vision().preprocessing().clone()).with_limits(decode);
    let image_token = loaded
        .tokenizer
        .inner()
        .id_to_token(model.image_token_id())
        .unwrap_or_default();
    Prompter {
        tokenizer: loaded.tokenizer.clone(),
        processor,
        image_token,
        tokens_per_image: model.tokens_per_image(),
        vocab_size: vocab_size(loaded),
        default_system: loaded.system_prompt.clone(),
        max_context: limits.max_context,
        max_text_bytes: limits
            .max_context
            .saturating_mul(max_token_bytes(&loaded.tokenizer)),
    }
}

/// Serves until Ctrl-C or SIGTERM, then lets the answers under way finish.
fn serve(
    addr: SocketAddr,
    state: Arc<AppState>,
    connections: ConnectionLimits,
) -> Result<(), ServeError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ServeError::Io { what, source }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("cannot start the async runtime"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(&format!("cannot listen on {addr}")))?;
        let local = listener
            .local_addr()
            .map_err(io("cannot read the address"))?;
        println!("listening on http://{local}");
        server::serve(
            listener,
            routes::router(state),
            connections,
            shutdown_signal(),
        )
        .await;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    eprintln!("shutting down: finishing the answers under way");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
