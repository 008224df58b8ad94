//! Asks a vision-language model about an image, printing the answer token by token.
//!
//! ```text
//! # One question (greedy by default)
//! cargo run --release --example chat -- --checkpoint runs/llava-qwen/step-1000 \
//!     --image photo.jpg --prompt "What is in this picture?"
//!
//! # A conversation on stdin: the image is shown at the first turn, /clear starts over,
//! # end of input (Ctrl-D) quits
//! cargo run --release --example chat -- --llava ~/models/llava-qwen --image photo.jpg
//! ```
//!
//! Runs on the backend the Cargo features pick (`--features cuda` for an NVIDIA GPU).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vlm::backend::{device, Inference};
use vlm::burn::tensor::{Device, Tensor, TensorData};
use vlm::cli::{stop_token_ids, LoadError, ModelArgs};
use vlm::data::{TextStreamer, Tokenizer, TokenizerError};
use vlm::image::{ImageError, ImageProcessor};
use vlm::model::{AnyProjector, ChatSession, ModelError, QwenVlm, VisionTower};
use vlm::qwen::{Decoding, GenerationConfig, QwenModel, SamplingParams};
use vlm::vision::VisionEncoder;

type B = Inference;

/// Chats with a LLaVA-style model about an image: one answer with --prompt, else a
/// conversation read line by line from stdin (/clear starts over; end of input quits).
///
/// The model: --checkpoint DIR (a vlm checkpoint; its vlm_config.json names the language
/// model and vision tower, which --llm and --vision, when given, must match) or --llava DIR
/// (a Hugging Face LLaVA folder). With neither (and no --llm), the checkpoint the quickstart
/// trains, target/quickstart/model/checkpoint (under the working directory, else under the
/// repository): run `cargo run --release --example quickstart` first. Prompts use the ChatML
/// template; the image goes at the start of the first user message.
#[derive(Debug, Parser)]
#[command(name = "chat", verbatim_doc_comment)]
pub struct Args {
    /// The model (--checkpoint, --llava, --llm, --vision, --tokenizer).
    #[command(flatten)]
    pub model: ModelArgs,

    /// The image to ask about (JPEG, PNG), shown once, at the first turn.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,

    /// The question; without it, a conversation on stdin.
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,

    /// Raw prompt token ids (comma separated), fed as they are, without template or
    /// image placeholders (include a run of them to use --image): for debugging tiny models
    /// whose vocabulary is smaller than the tokenizer's.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,

    /// The system prompt [default: the checkpoint's, else none].
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// Most tokens per answer.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_new_tokens: usize,

    /// Sampling temperature; 0 (the default) is greedy decoding.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f32,

    /// Sample only among the K most likely tokens (with --temperature).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,

    /// Sample only among the most likely tokens reaching this probability mass, in (0, 1].
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,

    /// Hugging Face repetition penalty (1.0 = off).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub repetition_penalty: f32,

    /// Seed of the sampler: equal seeds give equal answers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

/// Why a chat failed; every message names the file, flag or token involved.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The flags do not describe a chat.
    #[error("{0} (see --help)")]
    Usage(String),
    /// The tokenizer could not be read or used.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The image could not be decoded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The model failed to load or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The prompt holds a token the model does not have (a tokenizer of another model).
    #[error(
        "token id {id} is outside the model's vocabulary of {vocab_size}: {tokenizer} does not \
         belong to this model (give --tokenizer)"
    )]
    TokenOutOfVocab {
        /// The offending id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
        /// The tokenizer (or `--prompt-ids`).
        tokenizer: String,
    },
    /// Reading stdin or writing stdout failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<LoadError> for ChatError {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::Usage(message) => Self::Usage(message),
            LoadError::Tokenizer(err) => Self::Tokenizer(err),
            LoadError::Model(err) => Self::Model(err),
        }
    }
}

/// One answer: its token ids (the stop token included when one was emitted) and the text
/// that was printed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Generated ids.
    pub ids: Vec<u32>,
    /// The streamed text, special tokens left out.
    pub text: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    match run(&args, stdin.lock(), &mut stdout) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = stdout.flush();
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the model, answers `--prompt` (or each line of `input`), streaming the answers to
/// `out`, and returns them.
pub fn run(
    args: &Args,
    input: impl BufRead,
    out: &mut impl Write,
) -> Result<Vec<Reply>, ChatError> {
    let config = generation_config(args)?;
    let dev = device();
    let loaded = args.model.load::<B>(&dev)?;
    let (model, tokenizer, system) = (loaded.model, loaded.tokenizer, loaded.system_prompt);
    let mut config = config;
    let vocab_size = model.language_model().config().vocab_size;
    config.stop_token_ids = stop_token_ids(&tokenizer, vocab_size);
    let image = match &args.image {
        Some(path) => Some(pixels(&model, path, &dev)?),
        None => None,
    };
    let chat = Chat {
        model: &model,
        tokenizer: &tokenizer,
        config,
        system: args.system.clone().or(system),
        image,
    };
    if let Some(ids) = &args.prompt_ids {
        check_ids(ids, vocab_size, "--prompt-ids")?;
        let mut session = model.chat();
        let image = chat.image.is_some();
        return Ok(vec![chat.answer(&mut session, ids, image, out)?]);
    }
    let mut session = model.chat();
    if let Some(prompt) = &args.prompt {
        let ids = chat.prompt_ids(prompt, true, None)?;
        return Ok(vec![chat.answer(&mut session, &ids, true, out)?]);
    }
    let mut replies = Vec::new();
    let mut previous: Option<Vec<u32>> = None;
    for line in input.lines() {
        let line = line?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text == "/clear" {
            session = model.chat();
            previous = None;
            writeln!(out, "(conversation cleared)")?;
            continue;
        }
        let ids = chat.prompt_ids(text, previous.is_none(), previous.as_deref())?;
        let reply = chat.answer(&mut session, &ids, previous.is_none(), out)?;
        previous = Some(reply.ids.clone());
        replies.push(reply);
    }
    Ok(replies)
}

/// The settings of a chat once the model and tokenizer are known.
struct Chat<'a> {
    model: &'a QwenVlm<B>,
    tokenizer: &'a Tokenizer,
    config: GenerationConfig,
    system: Option<String>,
    image: Option<Tensor<B, 4>>,
}

impl Chat<'_> {
    /// A turn's ChatML ids: the system message and the image at the first turn; after a
    /// reply, the end of that reply's message (its `<|im_end|>` when it did not emit one).
    fn prompt_ids(
        &self,
        text: &str,
        first: bool,
        previous: Option<&[u32]>,
    ) -> Result<Vec<u32>, ChatError> {
        let tokenizer = self.tokenizer;
        let start = tokenizer.token_id("<|im_start|>")?;
        let end = tokenizer.token_id("<|im_end|>")?;
        let mut ids = Vec::new();
        if let Some(previous) = previous {
            if previous.last() != Some(&end) {
                ids.push(end);
            }
            ids.extend(tokenizer.encode("\n")?);
        }
        if first {
            if let Some(system) = &self.system {
                ids.push(start);
                ids.extend(tokenizer.encode(&format!("system\n{system}"))?);
                ids.push(end);
                ids.extend(tokenizer.encode("\n")?);
            }
        }
        ids.push(start);
        ids.extend(tokenizer.encode("user\n")?);
        if first && self.image.is_some() {
            let placeholders = self.model.tokens_per_image();
            ids.extend(std::iter::repeat_n(
                self.model.image_token_id(),
                placeholders,
            ));
            ids.extend(tokenizer.encode("\n")?);
        }
        ids.extend(tokenizer.encode(text)?);
        ids.push(end);
        ids.extend(tokenizer.encode("\n")?);
        ids.push(start);
        ids.extend(tokenizer.encode("assistant\n")?);
        let vocab_size = self.model.language_model().config().vocab_size;
        let name = self.tokenizer.path().display().to_string();
        check_ids(&ids, vocab_size, &name)?;
        Ok(ids)
    }

    /// Generates the answer to `ids` (with the image when `with_image`), printing it as it
    /// comes; a failure to print stops nothing but is reported at the end.
    fn answer(
        &self,
        session: &mut Session<'_>,
        ids: &[u32],
        with_image: bool,
        out: &mut impl Write,
    ) -> Result<Reply, ChatError> {
        let image = self.image.clone().filter(|_| with_image);
        let mut streamer = TextStreamer::new(self.tokenizer, true);
        let mut text = String::new();
        let mut failure: Option<ChatError> = None;
        let mut emit = |chunk: Option<String>, out: &mut dyn Write| {
            if let Some(chunk) = chunk {
                if let Err(err) = out.write_all(chunk.as_bytes()).and_then(|()| out.flush()) {
                    failure.get_or_insert(err.into());
                }
                text.push_str(&chunk);
            }
        };
        let mut stream_error = None;
        let ids = session.turn(ids, image, &self.config, |id| match streamer.push(id) {
            Ok(chunk) => emit(chunk, out),
            Err(err) => {
                stream_error.get_or_insert(err);
            }
        })?;
        if let Some(err) = stream_error {
            return Err(err.into());
        }
        emit(streamer.finish()?, out);
        if let Some(err) = failure {
            return Err(err);
        }
        writeln!(out)?;
        Ok(Reply { ids, text })
    }
}

/// A conversation with the loaded model.
type Session<'m> = ChatSession<'m, B, VisionTower<B>, AnyProjector<B>, QwenModel<B>>;

/// Fails on the first id outside the vocabulary.
fn check_ids(ids: &[u32], vocab_size: usize, source: &str) -> Result<(), ChatError> {
    match ids.iter().find(|&&id| id as usize >= vocab_size) {
        Some(&id) => Err(ChatError::TokenOutOfVocab {
            id,
            vocab_size,
            tokenizer: source.to_string(),
        }),
        None => Ok(()),
    }
}

/// The sampling flags as generation settings (greedy at temperature 0), checked.
fn generation_config(args: &Args) -> Result<GenerationConfig, ChatError> {
    if args.max_new_tokens == 0 {
        return Err(usage("--max-new-tokens must be at least 1"));
    }
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        return Err(usage("--temperature must be a finite number >= 0"));
    }
    if !(args.repetition_penalty > 0.0 && args.repetition_penalty.is_finite()) {
        return Err(usage("--repetition-penalty must be a finite number > 0"));
    }
    if let Some(p) = args.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(usage("--top-p must be in (0, 1]"));
        }
    }
    if args.top_k == Some(0) {
        return Err(usage("--top-k must be at least 1"));
    }
    let mut config = GenerationConfig::greedy(args.max_new_tokens);
    config.repetition_penalty = args.repetition_penalty;
    if args.temperature > 0.0 {
        config.decoding = Decoding::Sample(SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        });
    } else if args.top_k.is_some() || args.top_p.is_some() {
        return Err(usage("--top-k and --top-p need --temperature > 0"));
    }
    Ok(config)
}

fn usage(message: &str) -> ChatError {
    ChatError::Usage(message.to_string())
}

/// The image preprocessed as the tower wants, `[1, 3, H, W]`.
fn pixels(model: &QwenVlm<B>, path: &Path, dev: &Device<B>) -> Result<Tensor<B, 4>, ChatError> {
    let processor = ImageProcessor::new(model.vision().preprocessing().clone());
    let image = processor.process_path(path)?;
    let [channels, height, width] = image.shape;
    let data = TensorData::new(image.data, [1, channels, height, width]);
    Ok(Tensor::from_data(data, dev))
}
