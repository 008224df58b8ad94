//! Accuracy of a vision-language model on held-out questions: exact match and contains-match
//! of its greedy answers against the reference answers, with a per-question JSONL of answers.
//!
//! ```text
//! cargo run --release --example eval -- --checkpoint runs/llava-qwen/step-1000 \
//!     --data data/sample/heldout.jsonl --out heldout_answers.jsonl
//! ```
//!
//! The data: a JSONL manifest of conversations (what `prepare_data` writes, e.g.
//! `data/sample/heldout.jsonl`) or a LLaVA-Instruct JSON file (`.json`); image paths are
//! relative to `--images` (default: the data file's folder). Every assistant turn is a
//! question: the conversation up to it is the prompt (earlier reference answers included), its
//! text the reference. Questions are answered in left-padded batches of `--batch-size`.
//!
//! Scoring: both texts are trimmed, lower-cased, their whitespace collapsed and a final `.`,
//! `!` or `。` dropped; exact match compares them, contains-match checks that the answer
//! contains the reference.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use vlm::backend::{device, Inference};
use vlm::burn::tensor::{Device, Tensor, TensorData};
use vlm::cli::{stop_token_ids, LoadError, LoadedModel, ModelArgs};
use vlm::data::source::{read_source, ReadOptions, SourceError, SourceKind, SourceSpec};
use vlm::data::{
    ChatTemplate, Conversation, EncoderConfig, EncoderError, InvalidRecord, Role, SampleEncoder,
    TokenizerError, IMAGE_PLACEHOLDER,
};
use vlm::image::{ImageError, ImageProcessor};
use vlm::model::{ModelError, VlmBatch};
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

    /// Where to write one JSON line per question (id, question, reference, answer, scores).
    #[arg(long, value_name = "FILE", default_value = "eval_answers.jsonl")]
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
    /// Decoding an answer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// An image could not be decoded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Generation failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// One question: the prompt conversation (ending with the user's turn), its image and the
/// reference answer.
struct Question {
    id: String,
    image: Option<PathBuf>,
    prompt: Conversation,
    reference: String,
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
    let mut questions = questions(read_conversations(&args.data, &images)?, &images);
    questions.truncate(args.limit.unwrap_or(usize::MAX));
    if questions.is_empty() {
        let data = args.data.display();
        return Err(EvalError::Usage(format!(
            "no question in {data} (records whose image is missing under --images are skipped)"
        )));
    }
    let dev = device();
    let loaded = args.model.load::<B>(&dev)?;
    let evaluator = Evaluator::new(&loaded, args.max_new_tokens, dev)?;
    let out_error = |source| EvalError::Io {
        path: args.out.clone(),
        source,
    };
    let mut out = BufWriter::new(File::create(&args.out).map_err(out_error)?);
    let bar = progress_bar(questions.len());
    let mut score = Score::default();
    for batch in questions.chunks(args.batch_size) {
        let answers = evaluator.answer(batch)?;
        for (question, answer) in batch.iter().zip(&answers) {
            let graded = grade(question, answer);
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

/// The conversations of a JSONL manifest, or of a LLaVA JSON file (`.json`).
fn read_conversations(data: &Path, images: &Path) -> Result<Vec<Conversation>, EvalError> {
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
        read_source(&spec, &ReadOptions::default(), &mut conversations)?;
        return Ok(conversations);
    }
    let io_error = |source| EvalError::Io {
        path: data.to_path_buf(),
        source,
    };
    let file = File::open(data).map_err(io_error)?;
    let mut conversations = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let conversation = serde_json::from_str(&line).map_err(|source| EvalError::Json {
            path: data.to_path_buf(),
            line: index + 1,
            source,
        })?;
        conversations.push(conversation);
    }
    Ok(conversations)
}

/// One question per assistant turn, the conversation before it as the prompt.
fn questions(conversations: Vec<Conversation>, images: &Path) -> Vec<Question> {
    let mut questions = Vec::new();
    for conversation in conversations {
        let image = conversation.image.as_ref().map(|path| images.join(path));
        for (index, turn) in conversation.turns.iter().enumerate() {
            if turn.role != Role::Assistant || index == 0 {
                continue;
            }
            questions.push(Question {
                id: format!("{}#{}", conversation.id, index / 2),
                image: image.clone(),
                prompt: Conversation {
                    id: conversation.id.clone(),
                    image: conversation.image.clone(),
                    turns: conversation.turns[..index].to_vec(),
                },
                reference: turn.text.clone(),
            });
        }
    }
    questions
}

/// The scores of one answer.
fn grade<'a>(question: &'a Question, answer: &'a str) -> Graded<'a> {
    let (reference, normalized) = (normalize(&question.reference), normalize(answer));
    let asked = question
        .prompt
        .turns
        .last()
        .map_or("", |turn| turn.text.as_str());
    Graded {
        id: &question.id,
        question: asked.replace(IMAGE_PLACEHOLDER, "").trim().to_string(),
        reference: &question.reference,
        answer,
        exact: normalized == reference,
        contains: !reference.is_empty() && normalized.contains(&reference),
    }
}

/// Lower case, whitespace collapsed, a final `.`, `!` or `。` dropped.
fn normalize(text: &str) -> String {
    let text = text.trim().trim_end_matches(['.', '!', '。', '！']);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The model with what answering questions needs.
struct Evaluator<'m> {
    loaded: &'m LoadedModel<B>,
    encoder: SampleEncoder,
    processor: ImageProcessor,
    config: GenerationConfig,
    device: Device<B>,
}

impl<'m> Evaluator<'m> {
    fn new(
        loaded: &'m LoadedModel<B>,
        max_new_tokens: usize,
        device: Device<B>,
    ) -> Result<Self, EvalError> {
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
        let encoder = SampleEncoder::new(tokenizer.clone(), template, encoder_config)?;
        let vocab_size = model.language_model().config().vocab_size;
        let mut config = GenerationConfig::greedy(max_new_tokens);
        config.stop_token_ids = stop_token_ids(tokenizer, vocab_size);
        config.pad_token_id = encoder.pad_id();
        Ok(Self {
            loaded,
            processor: ImageProcessor::new(model.vision().preprocessing().clone()),
            encoder,
            config,
            device,
        })
    }

    /// The greedy answers to a batch of questions, decoded without special tokens, trimmed.
    fn answer(&self, questions: &[Question]) -> Result<Vec<String>, EvalError> {
        let prompts = questions
            .iter()
            .map(|q| Ok(self.encoder.encode_prompt(&q.prompt)?.input_ids))
            .collect::<Result<Vec<_>, EvalError>>()?;
        let batch = VlmBatch::left_padded(
            &prompts,
            self.config.pad_token_id,
            self.pixels(questions)?,
            &self.device,
        )?;
        let replies = self.loaded.model.generate(batch, &self.config, |_| {})?;
        replies
            .iter()
            .map(|ids| {
                let end = ids
                    .iter()
                    .position(|id| self.config.stop_token_ids.contains(id))
                    .unwrap_or(ids.len());
                let text = self.loaded.tokenizer.decode(&ids[..end], true)?;
                Ok(text.trim().to_string())
            })
            .collect()
    }

    /// `[images, 3, H, W]` of the questions that show an image, in order.
    fn pixels(&self, questions: &[Question]) -> Result<Option<Tensor<B, 4>>, EvalError> {
        let mut data = Vec::new();
        let mut count = 0;
        let mut shape = [0; 3];
        for path in questions.iter().filter_map(|q| q.image.as_ref()) {
            let pixels = self.processor.process_path(path)?;
            shape = pixels.shape;
            data.extend(pixels.data);
            count += 1;
        }
        if count == 0 {
            return Ok(None);
        }
        let [channels, height, width] = shape;
        let data = TensorData::new(data, [count, channels, height, width]);
        Ok(Some(Tensor::from_data(data, &self.device)))
    }
}
