//! Asks a vision-language model about an image, printing the answer token by token.
//!
//! ```text
//! # One question (greedy by default)
//! cargo run --release --example chat -- --checkpoint runs/llava-qwen/step-1000 \
//!     --image photo.jpg --prompt "What is in this picture?"
//!
//! # A conversation at the `you> ` prompt: the image is shown at the first turn; /help lists
//! # the commands, /clear starts over (keeping the image), /quit or Ctrl-D quits
//! cargo run --release --example chat -- --llava ~/models/llava-qwen --image photo.jpg
//!
//! # Many questions at once: lines {"id", "image", "question"} in, lines {"id", "answer"} out
//! cargo run --release --example chat -- --batch questions.jsonl --output answers.jsonl
//! ```
//!
//! Runs on the backend the Cargo features pick (`--features cuda` for an NVIDIA GPU).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use vlm::backend::{device, Inference};
use vlm::burn::tensor::{Device, Tensor, TensorData};
use vlm::cli::{LoadError, LoadedModel, ModelArgs};
use vlm::data::chat::Marker;
use vlm::data::{
    ChatTemplate, Conversation, EncoderError, InvalidRecord, Role, TextStreamer, TokenizerError,
    Turn, IMAGE_PLACEHOLDER,
};
use vlm::image::{ImageError, ImageProcessor};
use vlm::model::{
    Answerer, AnyProjector, ChatSession, EvaluationError, ModelError, Prompt, QwenVlm, VisionTower,
};
use vlm::qwen::{Decoding, GenerationConfig, QwenModel, SamplingParams};
use vlm::vision::VisionEncoder;

type B = Inference;

/// Chats with a LLaVA-style model about an image: one answer with --prompt, else a
/// conversation read line by line from stdin at a `you> ` prompt. Lines starting with `/` are
/// commands, never sent to the model: /help lists them, /clear forgets the conversation and
/// its cache (the image is shown again with the next question), /quit (or end of input) quits.
///
/// The model: --checkpoint DIR (a vlm checkpoint; its vlm_config.json names the language
/// model and vision tower, which --llm and --vision, when given, must match) or --llava DIR
/// (a Hugging Face LLaVA folder). With neither (and no --llm), the checkpoint the quickstart
/// trains, target/quickstart/model/checkpoint (under the working directory, else under the
/// repository): run `cargo run --release --example quickstart` first. Prompts use the chat
/// template the checkpoint records (ChatML); the image goes at the start of the first user
/// message.
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

    /// The system prompt [default: the checkpoint's, else none] (alias: --system).
    #[arg(long = "system-prompt", alias = "system", value_name = "TEXT")]
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

    /// Answers a JSONL file of questions instead of chatting: each line
    /// `{"id": .., "image": "PATH", "question": ".."}` (image optional, relative to the file's
    /// folder). Writes `{"id", "answer"}` lines in input order; bad lines are reported on
    /// stderr with their line number and skipped.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["prompt", "prompt_ids", "image"])]
    pub batch: Option<PathBuf>,

    /// Where --batch writes its answers [default: stdout].
    #[arg(long, value_name = "OUT.jsonl", requires = "batch")]
    pub output: Option<PathBuf>,

    /// How many --batch questions are answered together (left-padded, one generation).
    #[arg(long, value_name = "N", default_value_t = 8, requires = "batch")]
    pub batch_size: usize,
}

/// Why a chat failed; every message names the file, flag or token involved.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The flags do not describe a chat.
    #[error("{0} (see --help)")]
    Usage(String),
    /// The model flags did not give a model.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The tokenizer could not be used.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The tokenizer lacks a token of the chat template.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The question cannot be made a prompt (it holds a special token or `<image>`).
    #[error(transparent)]
    Prompt(#[from] InvalidRecord),
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
    /// The --batch file could not be read, or the --output file written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Answering a batch of questions failed.
    #[error(transparent)]
    Answer(#[from] EvaluationError),
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
    let result = match args.batch {
        Some(_) => run_batch(&args, &mut stdout).map(|summary| eprintln!("{summary}")),
        None => run(&args, stdin.lock(), &mut stdout).map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
    let mut config = generation_config(args)?;
    let dev = device();
    let loaded = args.model.load::<B>(&dev)?;
    let model = &loaded.model;
    config.stop_token_ids = loaded.stop_token_ids();
    let image = match &args.image {
        Some(path) => Some(pixels(model, path, &dev)?),
        None => None,
    };
    let chat = Chat {
        loaded: &loaded,
        config,
        system: args.system.clone(),
        image,
    };
    if let Some(ids) = &args.prompt_ids {
        check_ids(ids, loaded.vocab_size(), "--prompt-ids")?;
        let mut session = model.chat();
        let image = chat.image.is_some();
        return Ok(vec![chat.answer(&mut session, ids, image, out)?]);
    }
    if let Some(prompt) = &args.prompt {
        let ids = chat.prompt_ids(prompt, None)?;
        return Ok(vec![chat.answer(&mut model.chat(), &ids, true, out)?]);
    }
    chat.converse(input, out)
}

/// What the REPL prints before reading each line.
pub const PROMPT_MARKER: &str = "you> ";

/// What `/help` prints.
pub const HELP: &str = "\
commands:
  /help   this list
  /clear  forget the conversation and its cache (the image is shown again with the next question)
  /quit   exit (as does end of input, Ctrl-D)
any other line is a question to the model";

/// A line typed at the REPL: a question, or a command, which never reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line<'a> {
    /// Nothing but whitespace: ignored.
    Blank,
    /// Anything not starting with `/`.
    Question(&'a str),
    /// `/help`.
    Help,
    /// `/clear`.
    Clear,
    /// `/quit` (or `/exit`).
    Quit,
    /// Any other `/word`.
    Unknown(&'a str),
}

impl<'a> Line<'a> {
    fn parse(line: &'a str) -> Self {
        let text = line.trim();
        match text {
            "" => Line::Blank,
            "/help" => Line::Help,
            "/clear" => Line::Clear,
            "/quit" | "/exit" => Line::Quit,
            command if command.starts_with('/') => Line::Unknown(command),
            question => Line::Question(question),
        }
    }
}

/// The settings of a chat once the model and tokenizer are known.
struct Chat<'a> {
    loaded: &'a LoadedModel<B>,
    config: GenerationConfig,
    /// `--system-prompt`, which replaces the checkpoint's system prompt.
    system: Option<String>,
    image: Option<Tensor<B, 4>>,
}

impl Chat<'_> {
    /// The REPL: prints [`PROMPT_MARKER`], reads a line, answers it or runs its command,
    /// until `/quit` or the end of `input`; returns the replies.
    fn converse(&self, input: impl BufRead, out: &mut impl Write) -> Result<Vec<Reply>, ChatError> {
        let mut session = self.loaded.model.chat();
        let mut previous: Option<Vec<u32>> = None;
        let mut replies = Vec::new();
        let mut lines = input.lines();
        loop {
            write!(out, "{PROMPT_MARKER}")?;
            out.flush()?;
            let Some(line) = lines.next() else {
                writeln!(out)?;
                return Ok(replies);
            };
            let line = line?;
            match Line::parse(&line) {
                Line::Blank => {}
                Line::Help => writeln!(out, "{HELP}")?,
                Line::Quit => return Ok(replies),
                Line::Unknown(command) => {
                    writeln!(out, "unknown command {command}: /help lists the commands")?
                }
                Line::Clear => {
                    session = self.loaded.model.chat();
                    previous = None;
                    writeln!(out, "(conversation cleared)")?;
                }
                Line::Question(text) => {
                    let ids = self.prompt_ids(text, previous.as_deref())?;
                    let reply = self.answer(&mut session, &ids, previous.is_none(), out)?;
                    previous = Some(reply.ids.clone());
                    replies.push(reply);
                }
            }
        }
    }

    /// A turn's ids in the checkpoint's chat template: the system message and the image at
    /// the first turn; after a reply (`previous`), the end of that reply's message first.
    fn prompt_ids(&self, text: &str, previous: Option<&[u32]>) -> Result<Vec<u32>, ChatError> {
        let with_image = previous.is_none() && self.image.is_some();
        self.turn_ids(text, previous, with_image)
    }

    /// As [`prompt_ids`](Self::prompt_ids), the image shown when `with_image`.
    fn turn_ids(
        &self,
        text: &str,
        previous: Option<&[u32]>,
        with_image: bool,
    ) -> Result<Vec<u32>, ChatError> {
        let first = previous.is_none();
        let template = match first {
            true => self.loaded.chat_template(self.system.clone()),
            false => ChatTemplate::without_system(),
        };
        let text = match with_image {
            true => format!("{IMAGE_PLACEHOLDER}\n{text}"),
            false => text.to_string(),
        };
        let question = Conversation {
            id: "chat".into(),
            image: with_image.then(|| "image".into()),
            turns: vec![Turn {
                role: Role::User,
                text,
            }],
        };
        let mut ids = match previous {
            Some(reply) => self.reply_end(reply)?,
            None => Vec::new(),
        };
        let encoder = self.loaded.prompt_encoder(template)?;
        ids.extend(encoder.encode_prompt(&question)?.input_ids);
        let tokenizer = self.loaded.tokenizer.path().display().to_string();
        check_ids(&ids, self.loaded.vocab_size(), &tokenizer)?;
        Ok(ids)
    }

    /// What closes a reply's message before the next one: its `<|im_end|>` when the reply
    /// did not emit one, then the template's newline.
    fn reply_end(&self, reply: &[u32]) -> Result<Vec<u32>, ChatError> {
        let tokenizer = &self.loaded.tokenizer;
        let end = tokenizer.token_id(Marker::ImEnd.as_str())?;
        let mut ids = Vec::new();
        if reply.last() != Some(&end) {
            ids.push(end);
        }
        ids.extend(tokenizer.encode("\n")?);
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
        let mut streamer = TextStreamer::new(&self.loaded.tokenizer, true);
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
    let image = image_processor(model).process_path(path)?;
    let [channels, height, width] = image.shape;
    let data = TensorData::new(image.data, [1, channels, height, width]);
    Ok(Tensor::from_data(data, dev))
}

/// What `--batch` did: the questions answered and the lines skipped.
#[derive(Debug, Default)]
pub struct BatchSummary {
    /// Answers written.
    pub answered: usize,
    /// The lines left out, each with why.
    pub skipped: Vec<SkippedLine>,
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let skipped = self.skipped.len();
        write!(f, "{} answered, {skipped} lines skipped", self.answered)
    }
}

/// A `--batch` line that was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// Its number in the file, from 1.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

impl std::fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {} (skipped)", self.line, self.reason)
    }
}

/// One question of a `--batch` file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchQuestion {
    /// Echoed in the answer line, whatever its JSON type.
    id: serde_json::Value,
    /// The image, relative to the file's folder.
    image: Option<PathBuf>,
    question: String,
}

/// One line of `--batch`'s answers.
#[derive(Debug, serde::Serialize)]
struct BatchAnswer<'a> {
    id: &'a serde_json::Value,
    answer: &'a str,
}

/// A question of a `--batch` file that parsed, with its line number.
struct Numbered {
    line: usize,
    question: BatchQuestion,
}

/// Answers the questions of `--batch` in batches of `--batch-size` through the library's
/// left-padded batched generation, writing one `{"id", "answer"}` line per answered question
/// (in input order) to `--output`, else to `out`.
pub fn run_batch(args: &Args, out: &mut impl Write) -> Result<BatchSummary, ChatError> {
    let path = args
        .batch
        .as_deref()
        .ok_or_else(|| usage("--batch FILE.jsonl is needed"))?;
    if args.batch_size == 0 {
        return Err(usage("--batch-size must be at least 1"));
    }
    let mut config = generation_config(args)?;
    let dev = device();
    let loaded = args.model.load::<B>(&dev)?;
    config.stop_token_ids = loaded.stop_token_ids();
    config.pad_token_id = loaded.prompt_encoder(loaded.chat_template(None))?.pad_id();
    let mut summary = BatchSummary::default();
    let questions = read_batch(path, &mut summary.skipped)?;
    let batches = Batches {
        chat: Chat {
            loaded: &loaded,
            config: config.clone(),
            system: args.system.clone(),
            image: None,
        },
        answerer: Answerer::new(&loaded.model, &loaded.tokenizer, config, dev),
        processor: image_processor(&loaded.model),
        path,
        bar: progress_bar(questions.len()),
    };
    for skipped in &summary.skipped {
        batches.report(skipped);
    }
    let mut file = match &args.output {
        Some(output) => Some(create(output)?),
        None => None,
    };
    let out: &mut dyn Write = match &mut file {
        Some(file) => file,
        None => out,
    };
    for batch in questions.chunks(args.batch_size) {
        batches.answer(batch, out, &mut summary)?;
    }
    batches.bar.finish_and_clear();
    summary.skipped.sort_by_key(|skipped| skipped.line);
    Ok(summary)
}

/// `path` created for writing, buffered.
fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, ChatError> {
    let file = std::fs::File::create(path).map_err(|source| ChatError::File {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(std::io::BufWriter::new(file))
}

/// What answering the `--batch` file at `path` needs, batch after batch.
struct Batches<'a> {
    chat: Chat<'a>,
    answerer: Answerer<'a, B, VisionTower<B>, AnyProjector<B>, QwenModel<B>>,
    processor: ImageProcessor,
    path: &'a Path,
    bar: ProgressBar,
}

impl Batches<'_> {
    /// Answers one batch (its lines that make a prompt), writing the answers to `out`.
    fn answer(
        &self,
        batch: &[Numbered],
        out: &mut dyn Write,
        summary: &mut BatchSummary,
    ) -> Result<(), ChatError> {
        let folder = self.path.parent().unwrap_or(Path::new("."));
        let mut prompts = Vec::with_capacity(batch.len());
        let mut asked = Vec::with_capacity(batch.len());
        for numbered in batch {
            match self
                .chat
                .batch_prompt(&numbered.question, folder, &self.processor)
            {
                Ok(prompt) => {
                    prompts.push(prompt);
                    asked.push(numbered);
                }
                Err(err) => {
                    let skipped = SkippedLine {
                        line: numbered.line,
                        reason: err.to_string(),
                    };
                    self.report(&skipped);
                    summary.skipped.push(skipped);
                }
            }
        }
        if !prompts.is_empty() {
            for (numbered, answer) in asked.iter().zip(self.answerer.answer(&prompts)?) {
                let id = &numbered.question.id;
                let line = BatchAnswer {
                    id,
                    answer: &answer,
                };
                serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
            out.flush()?;
            summary.answered += prompts.len();
        }
        self.bar.inc(batch.len() as u64);
        Ok(())
    }

    /// Tells stderr about a skipped line, above the progress bar.
    fn report(&self, skipped: &SkippedLine) {
        self.bar
            .suspend(|| eprintln!("{}: {skipped}", self.path.display()));
    }
}

/// The questions of a `--batch` file; each line that is not one goes to `skipped` (blank lines
/// are ignored).
fn read_batch(path: &Path, skipped: &mut Vec<SkippedLine>) -> Result<Vec<Numbered>, ChatError> {
    let file_error = |source| ChatError::File {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(file_error)?;
    let mut questions = Vec::new();
    for (index, text) in text.lines().enumerate() {
        let line = index + 1;
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(text) {
            Ok(question) => questions.push(Numbered { line, question }),
            Err(err) => skipped.push(SkippedLine {
                line,
                reason: format!("not a {{\"id\", \"image\", \"question\"}} object: {err}"),
            }),
        }
    }
    Ok(questions)
}

/// The `--batch` progress bar, on stderr when it is a terminal.
fn progress_bar(questions: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(questions as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} answered {eta}") {
        bar.set_style(style);
    }
    bar
}

impl Chat<'_> {
    /// A `--batch` question as the model's prompt: the first turn of a conversation, with its
    /// image (under `folder`) when it names one.
    fn batch_prompt(
        &self,
        asked: &BatchQuestion,
        folder: &Path,
        processor: &ImageProcessor,
    ) -> Result<Prompt, ChatError> {
        let ids = self.turn_ids(&asked.question, None, asked.image.is_some())?;
        let pixels = match &asked.image {
            Some(image) => Some(processor.process_path(folder.join(image))?),
            None => None,
        };
        Ok(Prompt { ids, pixels })
    }
}

/// The preprocessing the model's vision tower wants.
fn image_processor(model: &QwenVlm<B>) -> ImageProcessor {
    ImageProcessor::new(model.vision().preprocessing().clone())
}
