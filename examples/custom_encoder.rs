//! Your own vision encoder in a VLM: a small CNN implementing `vlm::vision::VisionEncoder`,
//! trained end to end with the library's training code on the bundled sample data.
//!
//! ```sh
//! cargo run --release --example custom_encoder
//! ```
//!
//! The VLM needs four things from an encoder (`VisionEncoder`): features of the pixels, their
//! width, how many tokens an image becomes and the preprocessing its pixels go through.
//! [`SmallCnn`] below gives them with three stride-2 3 x 3 convolutions: a 64 x 64 image
//! becomes an 8 x 8 feature map, read row by row as 64 tokens. Everything else is the
//! library's, exactly as `train` uses it:
//!
//! - data: `data/sample/train.jsonl` through `vlm::data::Dataset` (image decoding and
//!   preprocessing, ChatML template, label masks, batching) and `vlm::train::DatasetSource`;
//! - tokenizer: the real Qwen2 tokenizer cut down by `vlm::sample::CompactVocab` to the tokens
//!   the data uses (about 480 of 151,665, written to `OUT/tokenizer.json`), so that a tiny
//!   LLM can hold the whole vocabulary;
//! - model: `vlm::model::VisionLanguageModel` of the CNN, a pixel-shuffle projector (64
//!   patches -> 16 image tokens) and the committed tiny random Qwen2 (`data/fixtures/
//!   qwen2_tied`: 2 layers, width 64, 512 embedding rows);
//! - training: `vlm::train::Trainer` (AdamW, warmup + cosine, clipping), everything trained,
//!   the encoder included (`train_vision`).
//!
//! It prints the mean loss of the first and last steps, the exact match of the greedy answers
//! to the first question of every held-out record (`data/sample/heldout.jsonl`: 50 English
//! questions, 50 Chinese captions) and a few of them. `--steps` and `--batch-size` change the
//! run.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use clap::Parser;
use vlm::backend::{device, Inference, Train};
use vlm::data::{
    ChatTemplate, Conversation, Dataset, EncoderConfig, LoaderOptions, SampleEncoder, Tokenizer,
};
use vlm::hf::{ImageSize, PreprocessorConfig};
use vlm::image::ImageProcessor;
use vlm::model::{Answerer, PixelShuffleProjector, Prompt, Question, VisionLanguageModel};
use vlm::qwen::{GenerationConfig, QwenModel};
use vlm::sample::CompactVocab;
use vlm::train::{
    DatasetSource, LrSchedule, Resume, StepReport, TrainBatch, TrainConfig, TrainMode, Trainer,
};
use vlm::vision::{VisionEncoder, VisionError};

/// Side of the images the CNN takes, in pixels.
const SIDE: usize = 64;
/// Channels of the CNN's three convolutions; the last is the feature width.
const CHANNELS: [usize; 3] = [32, 64, 64];
/// Image tokens after the 2 x 2 pixel shuffle of the 8 x 8 feature map.
const IMAGE_TOKENS: usize = 16;
/// Longest training sequence (the tiny LLM's context is 256).
const MAX_LEN: usize = 256;

#[derive(Parser)]
#[command(about = "Train a VLM whose vision encoder is a small custom CNN, on the sample data")]
struct Args {
    /// Optimizer steps.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Output folder (compact tokenizer, metrics.jsonl, loss.png).
    #[arg(long, default_value = "target/custom_encoder")]
    out: PathBuf,
}

/// A small CNN vision encoder: three 3 x 3 stride-2 convolutions with GELU, whose last
/// feature map, read row by row, is the image's tokens.
#[derive(Module, Debug)]
pub struct SmallCnn<B: Backend> {
    convs: Vec<Conv2d<B>>,
    #[module(skip)]
    preprocessing: PreprocessorConfig,
}

impl<B: Backend> SmallCnn<B> {
    /// A randomly initialised CNN for `SIDE`-pixel images, SigLIP-normalised.
    pub fn new(device: &B::Device) -> Self {
        let inputs = [3, CHANNELS[0], CHANNELS[1]];
        let convs = inputs
            .into_iter()
            .zip(CHANNELS)
            .map(|(input, output)| {
                Conv2dConfig::new([input, output], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device)
            })
            .collect();
        let side = SIDE as u32;
        let preprocessing = PreprocessorConfig {
            size: ImageSize::Exact {
                height: side,
                width: side,
            },
            ..PreprocessorConfig::siglip_default()
        };
        Self {
            convs,
            preprocessing,
        }
    }

    /// Side of the final feature map.
    fn grid(&self) -> usize {
        SIDE >> self.convs.len()
    }
}

impl<B: Backend> VisionEncoder<B> for SmallCnn<B> {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        let [_, channels, height, width] = pixels.dims();
        if [channels, height, width] != [3, SIDE, SIDE] {
            return Err(VisionError::PixelShape {
                actual: pixels.dims(),
                channels: 3,
                image_size: SIDE,
            });
        }
        let features = self
            .convs
            .iter()
            .fold(pixels, |x, conv| gelu(conv.forward(x)));
        Ok(features.flatten::<3>(2, 3).swap_dims(1, 2))
    }

    fn output_dim(&self) -> usize {
        CHANNELS[CHANNELS.len() - 1]
    }

    fn tokens_per_image(&self) -> usize {
        self.grid() * self.grid()
    }

    fn image_size(&self) -> usize {
        SIDE
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        &self.preprocessing
    }
}

type CnnVlm<B> = VisionLanguageModel<B, SmallCnn<B>, PixelShuffleProjector<B>, QwenModel<B>>;

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("data/sample");
    let dev = device();
    fs::create_dir_all(&args.out)?;

    let encoder = compact_encoder(root, &sample, &args.out)?;
    let llm = QwenModel::<Train>::load(root.join("data/fixtures/qwen2_tied"), &dev)?;
    let vocab_size = llm.config().vocab_size;
    if encoder.tokenizer().vocab_size() > vocab_size {
        return Err(format!("the compact vocabulary exceeds the LLM's {vocab_size} rows").into());
    }
    Train::seed(&dev, 0);
    let cnn = SmallCnn::<Train>::new(&dev);
    let images = ImageProcessor::new(cnn.preprocessing().clone());
    let projector =
        PixelShuffleProjector::new(cnn.output_dim(), llm.config().hidden_size, 2, &dev)?;
    let image_id = encoder.image_token_id();
    let model = VisionLanguageModel::new(cnn, projector, llm, image_id)?;

    let mut options = LoaderOptions::new(args.batch_size);
    options.seed = 0;
    let dataset = Dataset::open(
        sample.join("train.jsonl"),
        &sample,
        encoder.clone(),
        images.clone(),
        options,
    )?;
    let start = Instant::now();
    let outcome = Trainer::new(
        train_config(&args),
        dev,
        |m: &CnnVlm<Train>, b: TrainBatch<Train>| m.forward_loss(b.inputs, b.labels),
    )?
    .fit(model, &mut DatasetSource::new(dataset), Resume::No)?;
    println!(
        "trained {} steps on {} in {:.0} s: mean loss {:.3} over the first 20 steps, {:.3} over the last 20",
        outcome.state.step,
        sample.join("train.jsonl").display(),
        start.elapsed().as_secs_f64(),
        mean_loss(outcome.steps.iter().take(20)),
        mean_loss(outcome.steps.iter().rev().take(20)),
    );
    let questions = heldout_questions(&encoder, &images, &sample)?;
    let answers = answers(&outcome.model.valid(), &questions, &encoder)?;
    report(&questions, &answers);
    Ok(())
}

/// A sample encoder over the Qwen2 tokenizer cut down to the tokens of the sample data
/// (written to `out/tokenizer.json`).
fn compact_encoder(
    root: &Path,
    sample: &Path,
    out: &Path,
) -> Result<SampleEncoder, Box<dyn Error>> {
    let qwen2 = root.join("data/tokenizer/qwen2/tokenizer.json");
    let full = sample_encoder(Tokenizer::from_file(&qwen2)?)?;
    let mut used = vec![full.pad_id()];
    for manifest in ["train.jsonl", "heldout.jsonl"] {
        for conversation in read_manifest(&sample.join(manifest))? {
            used.extend(full.encode(&conversation)?.input_ids);
        }
    }
    let vocab = CompactVocab::from_file(&qwen2, used)?;
    let path = out.join("tokenizer.json");
    vocab.write(&path)?;
    println!(
        "tokenizer: {} of Qwen2's {} tokens, in {}",
        vocab.len(),
        full.tokenizer().vocab_size(),
        path.display()
    );
    sample_encoder(Tokenizer::from_file(&path)?)
}

fn sample_encoder(tokenizer: Tokenizer) -> Result<SampleEncoder, Box<dyn Error>> {
    let config = EncoderConfig::new(IMAGE_TOKENS, MAX_LEN);
    Ok(SampleEncoder::new(
        tokenizer,
        ChatTemplate::without_system(),
        config,
    )?)
}

fn read_manifest(path: &Path) -> Result<Vec<Conversation>, Box<dyn Error>> {
    fs::read_to_string(path)?
        .lines()
        .map(|line| Ok(serde_json::from_str(line)?))
        .collect()
}

fn train_config(args: &Args) -> TrainConfig {
    TrainConfig {
        output_dir: args.out.join("run"),
        // The program's own scratch folder: a rerun replaces the previous run.
        overwrite_output_dir: true,
        mode: TrainMode::Full,
        train_vision: true,
        per_device_train_batch_size: args.batch_size,
        gradient_accumulation_steps: 1,
        max_steps: Some(args.steps),
        learning_rate: args.lr,
        feature_proj_lr: Some(args.lr),
        weight_decay: 0.01,
        warmup_ratio: 0.05,
        lr_scheduler_type: LrSchedule::Cosine,
        save_steps: 0,
        logging_steps: 50,
        seed: 0,
        ..TrainConfig::default()
    }
}

fn mean_loss<'a>(steps: impl Iterator<Item = &'a StepReport>) -> f64 {
    let losses: Vec<f64> = steps.filter_map(|step| step.loss).collect();
    losses.iter().sum::<f64>() / losses.len().max(1) as f64
}

/// The first question of every held-out record that shows an image, ready to ask.
fn heldout_questions(
    encoder: &SampleEncoder,
    images: &ImageProcessor,
    sample: &Path,
) -> Result<Vec<(Question, Prompt)>, Box<dyn Error>> {
    let mut questions = Vec::new();
    for conversation in read_manifest(&sample.join("heldout.jsonl"))? {
        let (Some(image), Some(question)) =
            (&conversation.image, Question::all_of(&conversation).next())
        else {
            continue;
        };
        let prompt = Prompt {
            ids: encoder.encode_prompt(&question.prompt)?.input_ids,
            pixels: Some(images.process_path(sample.join(image))?),
        };
        questions.push((question, prompt));
    }
    Ok(questions)
}

/// The model's greedy answers to `questions`, 25 at a time.
fn answers(
    model: &CnnVlm<Inference>,
    questions: &[(Question, Prompt)],
    encoder: &SampleEncoder,
) -> Result<Vec<String>, Box<dyn Error>> {
    let tokenizer = encoder.tokenizer();
    let config = GenerationConfig {
        stop_token_ids: vec![tokenizer.token_id("<|im_end|>")?],
        pad_token_id: encoder.pad_id(),
        ..GenerationConfig::greedy(64)
    };
    let prompts: Vec<Prompt> = questions.iter().map(|(_, p)| p.clone()).collect();
    Ok(Answerer::new(model, tokenizer, config, device()).answer_all(&prompts, 25)?)
}

/// Prints the exact-match score on the held-out questions and a few of them.
fn report(questions: &[(Question, Prompt)], answers: &[String]) {
    let correct = questions
        .iter()
        .zip(answers)
        .filter(|((q, _), a)| q.reference == **a)
        .count();
    println!(
        "held-out exact match (first question of each record): {correct}/{}",
        questions.len()
    );
    for ((question, _), answer) in questions.iter().zip(answers).take(3) {
        let asked = question.prompt.turns[0].text.replace('\n', " ");
        println!(
            "  {asked:?}\n    expected {:?}, model {:?}",
            question.reference, answer
        );
    }
}
