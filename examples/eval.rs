//! Accuracy of a vision-language model on held-out questions: exact match and contains-match
//! of its greedy answers against the reference answers, with a per-question JSONL of answers.
//!
//! ```text
//! cargo run --release --example eval -- --checkpoint runs/llava-qwen/step-1000 \
//!     --data data/sample/heldout.jsonl --output heldout_answers.jsonl
//! ```
//!
//! The data: a JSONL manifest of conversations (what `prepare_data` writes, e.g.
//! `data/sample/heldout.jsonl`) or a LLaVA-Instruct JSON file (`.json`); image paths are
//! relative to `--images` (default: the data file's folder). Every assistant turn is a
//! question: the conversation up to it is the prompt (earlier reference answers included), its
//! text the reference. Questions are answered in left-padded batches of `--batch-size`, with a
//! progress bar on stderr (drawn only on a terminal). Records that give no question (no
//! assistant turn, or refused by the LLaVA reader) are counted and reported, not scored.
//!
//! Scoring (`vlm::model::Question::grade`, the library's evaluation): both texts are trimmed,
//! lower-cased, their whitespace collapsed and a final `.`, `!` or `。` dropped; exact match
//! compares them, contains-match checks that the answer contains the reference.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use vlm::backend::{device, Inference};
use vlm::cli::{stop_token_ids, LoadError, LoadedModel, ModelArgs};
use vlm::data::source::{read_source, ReadOptions, SourceError, SourceKind, SourceSpec};
use vlm::data::{
    ChatTemplate, Conversation, EncoderConfig, EncoderError, InvalidRecord, SampleEncoder,
};
use vlm::hf::{read_line_bounded, MAX_RECORD_BYTES};
use vlm::image::{ImageError, ImageProcessor};
use vlm::model::{Answerer, EvaluationError, Prompt, Question};
use vlm::qwen::GenerationConfig;
use vlm::vision::VisionEncoder;

type B = Inference;

/// Scores a model's greedy answers to held-out questions (exact and contains-match) and
/// writes every answer to a JSONL file.
#[derive(Debug, Parser)]
#[command(name = "eval", verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    model: ModelArgs,

    /// The questions: a JSONL manifest of conversations, or a LLaVA-Instruct JSON file (.json).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,

    /// The folder image paths are relative to [default: the data file's folder].
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,

    /// Where to write one JSON line per question (id, question, reference, answer, scores)
    /// (alias: --out).
    #[arg(
        long = "output",
        alias = "out",
        value_name = "FILE",
        default_value = "eval_answers.jsonl"
    )]
    out: PathBuf,

    /// Questions answered together (left-padded batch).
    #[arg(long, value_name = "N", default_value_t = 8)]
    batch_size: usize,

    /// Most tokens per answer.
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_new_tokens: usize,

    /// Score only the first N questions.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

/// Why an evaluation failed; every message names the file or record involved.
#[derive(Debug, thiserror::Error)]
enum EvalError {
    /// The flags do not describe an evaluation.
    #[error("{0} (see --help)")]
    Usage(String),
    /// The model flags did not give a model.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Reading the data or writing the answers failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A manifest line is not a conversation.
    #[error("{}, line {line}: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// The LLaVA JSON file could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A conversation cannot be made a prompt.
    #[error(transparent)]
    Record(#[from] InvalidRecord),
    /// The tokenizer lacks a token of the template.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// An image could not be decoded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Generation or decoding failed.
    #[error(transparent)]
    Evaluation(#[from] EvaluationError),
}

/// One question with the path of its image, if it shows one.
struct Asked {
    question: Question,
    image: Option<PathBuf>,
}

/// One line of the answers file.
#[derive(Debug, Serialize)]
struct Graded<'a> {
    id: &'a str,
    question: String,
    reference: &'a str,
    answer: &'a str,
    exact: bool,
    contains: bool,
}

/// Counts over the questions.
#[derive(Debug, Default, Clone, Copy)]
struct Score {
    questions: usize,
    exact: usize,
    contains: usize,
    /// Records left out because they give no question to score.
    unanswered: usize,
}

/// The records of the data file, and how many of them were refused while reading.
struct Records {
    conversations: Vec<Conversation>,
    refused: usize,
}

impl Score {
    fn percent(count: usize, total: usize) -> f64 {
        100.0 * count as f64 / total.max(1) as f64
    }
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(score) => {
            println!(
                "exact match {}/{} ({:.1}%), contains-match {}/{} ({:.1}%)",
                score.exact,
                score.questions,
                Score::percent(score.exact, score.questions),
                score.contains,
                score.questions,
                Score::percent(score.contains, score.questions),
            );
            if score.unanswered > 0 {
                println!(
                    "{} records without an answer to score were left out",
                    score.unanswered
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Score, EvalError> {
    if args.batch_size == 0 || args.max_new_tokens == 0 {
        let message = "--batch-size and --max-new-tokens must be at least 1";
        return Err(EvalError::Usage(message.into()));
    }
    let images = match &args.images {
        Some(dir) => dir.clone(),
        None => args.data.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let records = read_conversations(&args.data, &images)?;
    let mut questions = questions(&records.conversations);
    let unanswered = records.refused + unanswerable(&records.conversations);
    questions.truncate(args.limit.unwrap_or(usize::MAX));
    if questions.is_empty() {
        let data = args.data.display();
        return Err(EvalError::Usage(format!(
            "no question in {data} (records whose image is missing under --images are skipped)"
        )));
    }
    let dev = device();
    let loaded = args.model.load::<B>(&dev)?;
    let prompter = Prompter::new(&loaded)?;
    let answerer = Answerer::new(
        &loaded.model,
        &loaded.tokenizer,
        generation_config(&loaded, &prompter.encoder, args.max_new_tokens),
        dev,
    );
    let out_error = |source| EvalError::Io {
        path: args.out.clone(),
        source,
    };
    let mut out = BufWriter::new(File::create(&args.out).map_err(out_error)?);
    let bar = progress_bar(questions.len());
    let mut score = Score {
        unanswered,
        ..Score::default()
    };
    for batch in questions.chunks(args.batch_size) {
        let answers = answerer.answer(&prompter.prompts(batch)?)?;
        for (asked, answer) in batch.iter().zip(&answers) {
            let graded = grade(&asked.question, answer);
            score.questions += 1;
            score.exact += usize::from(graded.exact);
            score.contains += usize::from(graded.contains);
            let line = serde_json::to_string(&graded).map_err(|e| out_error(e.into()))?;
            writeln!(out, "{line}").map_err(out_error)?;
        }
        bar.inc(batch.len() as u64);
        bar.set_message(format!("exact {}/{}", score.exact, score.questions));
    }
    out.flush().map_err(out_error)?;
    bar.finish();
    Ok(score)
}

fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} questions {eta} {msg}");
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

/// The conversations of a JSONL manifest, or of a LLaVA JSON file (`.json`), with their image
/// paths resolved against `images`.
fn read_conversations(data: &Path, images: &Path) -> Result<Records, EvalError> {
    if data.extension().is_some_and(|ext| ext == "json") {
        let spec = SourceSpec {
            name: String::new(),
            kind: SourceKind::Llava,
            annotations: data.to_path_buf(),
            images: images.to_path_buf(),
            captions: Default::default(),
            seed: 0,
        };
        let mut conversations = Vec::new();
        let stats = read_source(&spec, &ReadOptions::default(), &mut conversations)?;
        return Ok(Records {
            conversations,
            refused: stats.skipped_total(),
        });
    }
    let io_error = |source| EvalError::Io {
        path: data.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(data).map_err(io_error)?);
    let mut conversations = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        if read_line_bounded(&mut reader, &mut line, MAX_RECORD_BYTES).map_err(io_error)? == 0 {
            break;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let mut conversation: Conversation =
            serde_json::from_slice(&line).map_err(|source| EvalError::Json {
                path: data.to_path_buf(),
                line: number,
                source,
            })?;
        conversation.image = conversation.image.map(|path| images.join(path));
        conversations.push(conversation);
    }
    Ok(Records {
        conversations,
        refused: 0,
    })
}

/// Every question of the conversations, with its image.
fn questions(conversations: &[Conversation]) -> Vec<Asked> {
    conversations
        .iter()
        .flat_map(|conversation| {
            Question::all_of(conversation).map(move |question| Asked {
                question,
                image: conversation.image.clone(),
            })
        })
        .collect()
}

/// How many conversations give no question (no assistant turn after a user turn).
fn unanswerable(conversations: &[Conversation]) -> usize {
    conversations
        .iter()
        .filter(|c| Question::all_of(c).next().is_none())
        .count()
}

/// The answers-file line of one answer.
fn grade<'a>(question: &'a Question, answer: &'a str) -> Graded<'a> {
    let grade = question.grade(answer);
    Graded {
        id: &question.id,
        question: question.text(),
        reference: &question.reference,
        answer,
        exact: grade.exact,
        contains: grade.contains,
    }
}

/// Greedy generation of at most `max_new_tokens`, stopping at the template's end tokens.
fn generation_config(
    loaded: &LoadedModel<B>,
    encoder: &SampleEncoder,
    max_new_tokens: usize,
) -> GenerationConfig {
    let vocab_size = loaded.model.language_model().config().vocab_size;
    GenerationConfig {
        stop_token_ids: stop_token_ids(&loaded.tokenizer, vocab_size),
        pad_token_id: encoder.pad_id(),
        ..GenerationConfig::greedy(max_new_tokens)
    }
}

/// What turns questions into the model's prompts: its template and image preprocessing.
struct Prompter {
    encoder: SampleEncoder,
    processor: ImageProcessor,
}

impl Prompter {
    fn new(loaded: &LoadedModel<B>) -> Result<Self, EvalError> {
        let model = &loaded.model;
        let template = match &loaded.system_prompt {
            Some(system) => ChatTemplate::new(system.clone()),
            None => ChatTemplate::without_system(),
        };
        let mut encoder_config = EncoderConfig::new(model.tokens_per_image(), usize::MAX);
        let tokenizer = &loaded.tokenizer;
        if let Some(name) = tokenizer.inner().id_to_token(model.image_token_id()) {
            encoder_config.image_token = name;
        }
        Ok(Self {
            encoder: SampleEncoder::new(tokenizer.clone(), template, encoder_config)?,
            processor: ImageProcessor::new(model.vision().preprocessing().clone()),
        })
    }

    /// The prompts of a batch of questions: encoded, their images preprocessed.
    fn prompts(&self, batch: &[Asked]) -> Result<Vec<Prompt>, EvalError> {
        batch
            .iter()
            .map(|asked| {
                let pixels = match &asked.image {
                    Some(path) => Some(self.processor.process_path(path)?),
                    None => None,
                };
                let ids = self
                    .encoder
                    .encode_prompt(&asked.question.prompt)?
                    .input_ids;
                Ok(Prompt { ids, pixels })
            })
            .collect()
    }
}
