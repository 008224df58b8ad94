//! The quickstart: build a small vision-language model from scratch on the CPU, train it on
//! the bundled synthetic dataset (`data/sample/`: shapes, colours and positions, with
//! questions about them), and show that it learned to read the image.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! What it does, in about eight minutes on two cores:
//!
//! 1. Reads the LLaVA-format conversations of `data/sample/` (train and held-out splits) and
//!    adds more training scenes drawn by the same generator (`vlm_data::sample`, another seed;
//!    any scene whose shapes equal a held-out scene's is left out, so the held-out layouts stay
//!    unseen). Images go through the `vlm-data` image processor (64 x 64, SigLIP-style
//!    normalisation), conversations through the real Qwen2 tokenizer and ChatML template with
//!    `vlm-data`'s label masks (only the answers and their `<|im_end|>` are learned).
//! 2. Builds the model from two Hugging Face folders with random weights that it writes and
//!    then loads like any checkpoint: a SigLIP vision tower (`vlm_vision::SiglipVisionTower`,
//!    2 layers, 64 patches of 8 x 8 pixels, every token kept) and a 2-layer
//!    Qwen2-architecture LLM (`vlm-qwen`), joined by nanoVLM's pixel-shuffle projector (64
//!    patches -> 16 image tokens). `--help` lists the flags that change these sizes.
//!
//!    The vocabulary: Qwen's 151,646 tokens would make the embedding and LM head 99% of the
//!    model and of the compute. The dataset uses a few dozen of them, so the LLM gets a
//!    compact vocabulary (`vlm_data::CompactVocab`): Qwen's tokenizer cut down to the tokens
//!    the data uses (train and held-out prompts and answers, the ChatML and image tokens), the
//!    merges that build them and the 256 byte tokens. The data is encoded with the real Qwen
//!    tokenizer and template and its ids mapped into the compact ones; the same text gives the
//!    same tokens under the compact `tokenizer.json`, which ships with the saved model.
//! 3. Trains in two stages with `vlm-train` (AdamW, warmup + cosine, clipping, a progress bar,
//!    `metrics.jsonl` and `loss.png` in `OUT/pretrain/` and `OUT/run/`). Stage 1 pretrains the
//!    vision tower, as CLIP and SigLIP are pretrained before a LLaVA uses them: a linear head
//!    on the mean of its tokens names what is at each of the five places of the generated
//!    training scenes. Stage 2 is LLaVA's: the tower frozen, the projector (at its own
//!    learning rate) and the whole LLM trained on the conversations. Trained end to end from
//!    random weights in one stage, the same model stalls at the answer prior (about 47%: it
//!    counts, and answers the other questions with one word each), in PyTorch as in Burn.
//! 4. Evaluates exact match on every held-out question (each asked in its conversation, the
//!    earlier answers given), again with every image blanked (the model must then guess:
//!    near chance), and answers one held-out question. `--train-probe N` also scores N
//!    training conversations, to tell under- from over-fitting.
//! 5. Saves the trained model to `OUT/model/` (`llm/` and `vision/` as Hugging Face folders,
//!    `checkpoint/` as a vlm checkpoint naming them), which `chat` and `serve` load when no
//!    model is given.

mod pretrain;
mod random_model;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use serde::Deserialize;
use vlm::backend::{device, Inference, Train};
use vlm::data::sample::{generate, scenes, write_sample_data, SampleConfig, Split};
use vlm::data::{
    ChatTemplate, CompactVocab, Conversation, EncoderConfig, SampleEncoder, Tokenizer, Turn,
    IGNORE_INDEX,
};
use vlm::hf::{ImageSize, PreprocessorConfig};
use vlm::image::ImageProcessor;
use vlm::model::{
    ChatTemplateConfig, PixelShuffleProjector, StagedCheckpoint, VisionLanguageModel,
    VisionTowerConfig, VlmBatch, VlmConfig, TOKENIZER_FILE,
};
use vlm::qwen::{GenerationConfig, QwenModel};
use vlm::train::{LrSchedule, Resume, ShuffledData, TrainBatch, TrainConfig, TrainMode, Trainer};
use vlm::vision::{FeatureSelection, SelectStrategy, SiglipVisionTower};

use pretrain::{place_classes, pretrain_vision, PLACES};
use random_model::{write_random_qwen2, write_random_siglip};

/// Image side in pixels.
const SIDE: usize = 64;
/// The vision features the LLM sees: the last layer, every patch.
const SELECTION: FeatureSelection = FeatureSelection {
    layer: -1,
    strategy: SelectStrategy::Full,
};
/// Qwen2's tokenizer, relative to the repository.
const QWEN_TOKENIZER: &str = "data/tokenizer/qwen2/tokenizer.json";

/// The sizes of the model, as flags so that they can be explored without editing the program.
#[derive(clap::Args, Clone, Copy)]
struct Arch {
    /// Side of a vision patch in pixels (64 must be a multiple of it).
    #[arg(long, default_value_t = 8)]
    patch: usize,
    /// Width of the vision tower.
    #[arg(long, default_value_t = 96)]
    vit_dim: usize,
    /// Encoder layers of the vision tower.
    #[arg(long, default_value_t = 2)]
    vit_layers: usize,
    /// Attention heads of the vision tower.
    #[arg(long, default_value_t = 4)]
    vit_heads: usize,
    /// Pixel-shuffle factor of the projector: each `s x s` square of patches becomes one
    /// image token.
    #[arg(long, default_value_t = 2)]
    shuffle: usize,
    /// Width of the LLM.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Width of the LLM's MLP.
    #[arg(long, default_value_t = 256)]
    intermediate: usize,
    /// Decoder layers of the LLM.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Query heads of the LLM.
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Key/value heads of the LLM (grouped-query attention; must divide `heads`).
    #[arg(long, default_value_t = 4)]
    kv_heads: usize,
}

#[derive(Parser)]
#[command(about = "Train a small VLM from scratch on the bundled synthetic dataset, on the CPU")]
struct Args {
    /// Optimizer steps of stage 1, the vision tower's pretraining.
    #[arg(long, default_value_t = 1000)]
    pretrain_steps: usize,
    /// Optimizer steps of stage 2, the vision-language model.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Extra training scenes drawn by the dataset's generator (another seed; held-out
    /// layouts excluded), on top of the bundled train split.
    #[arg(long, default_value_t = 16000)]
    extra_train: usize,
    /// Peak learning rate of the LLM and the vision tower.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Peak learning rate of the projector.
    #[arg(long, default_value_t = 2e-3)]
    projector_lr: f64,
    /// Also score this many training conversations after training, per question kind
    /// (training against held-out accuracy tells under- from over-fitting).
    #[arg(long, default_value_t = 0)]
    train_probe: usize,
    #[command(flatten)]
    arch: Arch,
    /// Output folder (checkpoint, metrics.jsonl, loss.png).
    #[arg(long, default_value = "target/quickstart")]
    out: PathBuf,
    /// The sample dataset folder; when it has no dataset, the default instance is generated
    /// into the output folder.
    #[arg(long, default_value = "data/sample")]
    data: PathBuf,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let start = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dev = device();

    // 1. Data.
    let mut data_dir = resolve(root, &args.data);
    if !data_dir.join("llava_heldout.json").is_file() {
        data_dir = args.out.join("sample");
        println!("generating the sample dataset into {}", data_dir.display());
        write_sample_data(&data_dir, &SampleConfig::default())?;
    }
    let tokenizer = Tokenizer::from_file(root.join(QWEN_TOKENIZER))?;
    let arch = args.arch;
    let tokens_per_image = (SIDE / arch.patch / arch.shuffle).pow(2);
    let encoder = SampleEncoder::new(
        tokenizer,
        ChatTemplate::without_system(),
        EncoderConfig::new(tokens_per_image, 512),
    )?;
    let images = ImageProcessor::new(PREPROCESSING.clone());

    let mut train = read_llava(&data_dir.join("llava_train.json"))?
        .into_iter()
        .map(|(conv, image)| {
            let pixels = images
                .process_path(data_dir.join("images").join(&image))?
                .data;
            Ok((conv, Pixels::from(pixels)))
        })
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    let heldout = read_llava(&data_dir.join("llava_heldout.json"))?
        .into_iter()
        .map(|(conv, image)| {
            let pixels = images
                .process_path(data_dir.join("images").join(&image))?
                .data;
            Ok((conv, image, Pixels::from(pixels)))
        })
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    let bundled = train.len();
    let generated = extra_scenes(args.extra_train, &images)?;
    train.extend(
        generated
            .iter()
            .map(|s| (s.conversation.clone(), s.pixels.clone())),
    );
    println!(
        "data: {bundled} bundled + {} generated training conversations, {} held-out ({:.1} s)",
        train.len() - bundled,
        heldout.len(),
        start.elapsed().as_secs_f64()
    );

    let probe = questions_in(&training_probe(&train, args.train_probe));
    let prior = frequent_answers(&train);
    // The compact vocabulary: every Qwen id the data's prompts and answers use.
    let encoded: Vec<_> = train
        .iter()
        .map(|(conv, _)| encoder.encode(conv))
        .collect::<Result<_, _>>()?;
    let questions = questions_in(&heldout);
    let prompts = encode_prompts(&encoder, &questions)?;
    let im_end = encoder.tokenizer().token_id("<|im_end|>")?;
    let mut used: BTreeSet<u32> = [encoder.pad_id(), encoder.image_token_id(), im_end].into();
    used.extend(encoded.iter().flat_map(|s| s.input_ids.iter().copied()));
    used.extend(prompts.iter().flatten().copied());
    for q in &questions {
        used.extend(encoder.tokenizer().encode(&q.answer)?);
    }
    let vocab = Vocab::new(&root.join(QWEN_TOKENIZER), used)?;
    println!(
        "vocabulary: {} of Qwen's {} tokens",
        vocab.len(),
        encoder.tokenizer().vocab_size()
    );

    let samples: Vec<QsSample> = encoded
        .into_iter()
        .zip(train)
        .map(|(sample, (_, pixels))| QsSample {
            ids: sample
                .input_ids
                .iter()
                .map(|&id| vocab.compact(id))
                .collect(),
            labels: sample
                .labels
                .iter()
                .map(|&l| {
                    if l == IGNORE_INDEX {
                        l
                    } else {
                        i64::from(vocab.compact(l as u32))
                    }
                })
                .collect(),
            pixels,
        })
        .collect();

    // 2. The model.
    let llm_dir = args.out.join("llm-init");
    write_random_qwen2(&llm_dir, vocab.len(), &arch)?;
    let vision_dir = args.out.join("vision-init");
    write_random_siglip(&vision_dir, &arch)?;
    Train::seed(&dev, 0);
    let llm = QwenModel::<Train>::load(&llm_dir, &dev)?;
    let vision = SiglipVisionTower::<Train>::load(&vision_dir, SELECTION, &dev)?;
    let vision = pretrain_vision(vision, &generated, &args, &dev)?;
    let projector = PixelShuffleProjector::new(arch.vit_dim, arch.hidden, arch.shuffle, &dev)?;
    let image_id = vocab.compact(encoder.image_token_id());
    let model = VisionLanguageModel::new(vision, projector, llm, image_id)?;

    // 3. Training (stage 2): the tower frozen, as LLaVA has it.
    let config = train_config(&args, "run", args.steps, args.projector_lr, false);
    let pad = vocab.compact(encoder.pad_id());
    let mut data = ShuffledData::new(
        samples,
        args.batch_size,
        0,
        move |batch: &[&QsSample], dev: &burn::tensor::Device<Train>| Ok(collate(batch, pad, dev)),
    );
    let loss = |m: &QsVlm<Train>, b: TrainBatch<Train>| Ok(m.forward_loss(b.inputs, b.labels)?.1);
    let train_start = Instant::now();
    let outcome = Trainer::new(config, dev, loss)?.fit(model, &mut data, Resume::No)?;
    println!(
        "stage 2: trained {} steps in {:.0} s; final loss {:.4}; metrics in {}{}",
        outcome.state.step,
        train_start.elapsed().as_secs_f64(),
        outcome.state.last_loss.unwrap_or(f64::NAN),
        outcome.metrics.display(),
        outcome
            .loss_curve
            .as_ref()
            .map(|p| format!(", loss curve {}", p.display()))
            .unwrap_or_default()
    );

    // 4. The trained model, saved for `chat` and `serve`; then evaluation.
    let model = outcome.model.valid();
    let saved = save_model(&model, &vocab, &llm_dir, &args.out.join("model"))?;
    println!(
        "model saved to {} (chat with it: cargo run --release --example chat -- --image IMAGE \
         --prompt \"How many shapes are there?\")",
        saved.display()
    );
    let stop = vocab.compact(im_end);
    let answers = answer(&model, &questions, &prompts, &vocab, stop, pad, false)?;
    let blanked = answer(&model, &questions, &prompts, &vocab, stop, pad, true)?;
    let (right, blank_right) = (correct(&questions, &answers), correct(&questions, &blanked));
    let percent = |n: usize| 100.0 * n as f64 / questions.len() as f64;
    let chance = questions.iter().map(|q| q.chance).sum::<f64>() / questions.len() as f64;
    let guesses: Vec<String> = questions
        .iter()
        .map(|q| prior.get(&q.question).cloned().unwrap_or_default())
        .collect();
    println!(
        "held-out exact match: {right}/{} = {:.1}%",
        questions.len(),
        percent(right)
    );
    println!(
        "with the image blanked: {blank_right}/{} = {:.1}% (uniform guessing among each \
         question's possible answers: {:.1}%; each question's most frequent training answer: \
         {:.1}%)",
        questions.len(),
        percent(blank_right),
        100.0 * chance,
        percent(correct(&questions, &guesses))
    );
    print_by_kind("", &questions, &answers, Some(&blanked));
    if !probe.is_empty() {
        let probe_prompts = encode_prompts(&encoder, &probe)?;
        let probe_answers = answer(&model, &probe, &probe_prompts, &vocab, stop, pad, false)?;
        println!(
            "training conversations: {}/{} right",
            correct(&probe, &probe_answers),
            probe.len()
        );
        print_by_kind("training ", &probe, &probe_answers, None);
    }
    let q = &questions[0];
    println!(
        "held-out example: {} -- \"{}\" -> model: \"{}\" (expected \"{}\")",
        data_dir.join("images").join(&q.image).display(),
        q.question,
        answers[0],
        q.answer
    );
    println!("total wall time {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The question kinds of the sample dataset, by their first words.
const KINDS: [&str; 4] = ["How many", "What color", "Which shape", "Where"];

/// How many of `answers` equal their question's answer.
fn correct(questions: &[Question], answers: &[String]) -> usize {
    questions
        .iter()
        .zip(answers)
        .filter(|(q, a)| **a == q.answer)
        .count()
}

/// One line per question kind: right answers, and right answers with the image blanked.
fn print_by_kind(
    label: &str,
    questions: &[Question],
    answers: &[String],
    blanked: Option<&[String]>,
) {
    for kind in KINDS {
        let right_of_kind = |answers: &[String]| {
            questions
                .iter()
                .zip(answers)
                .filter(|(q, a)| q.question.starts_with(kind) && **a == q.answer)
                .count()
        };
        let asked = questions
            .iter()
            .filter(|q| q.question.starts_with(kind))
            .count();
        let blank = blanked
            .map(|b| format!(" (blanked {})", right_of_kind(b)))
            .unwrap_or_default();
        println!(
            "  {label}{kind:<12} {:>3}/{asked:<3}{blank}",
            right_of_kind(answers)
        );
    }
}

/// The Qwen ids of every question's prompt (ChatML, ending with the assistant header).
fn encode_prompts(
    encoder: &SampleEncoder,
    questions: &[Question],
) -> Result<Vec<Vec<u32>>, Box<dyn Error>> {
    questions
        .iter()
        .map(|q| Ok(encoder.encode_prompt(&q.prompt)?.input_ids))
        .collect()
}

/// The training configuration of both stages: AdamW with warmup and cosine decay, the
/// projector (the place head in stage 1) at `projector_lr`, logs in `OUT/subdir`.
fn train_config(
    args: &Args,
    subdir: &str,
    steps: usize,
    projector_lr: f64,
    train_vision: bool,
) -> TrainConfig {
    TrainConfig {
        output_dir: args.out.join(subdir),
        mode: TrainMode::Full,
        train_vision,
        per_device_train_batch_size: args.batch_size,
        gradient_accumulation_steps: 1,
        max_steps: Some(steps),
        learning_rate: args.lr,
        feature_proj_lr: Some(projector_lr),
        weight_decay: 0.01,
        warmup_ratio: 0.05,
        lr_scheduler_type: LrSchedule::Cosine,
        max_grad_norm: 1.0,
        save_steps: 0,
        save_total_limit: Some(1),
        logging_steps: 50,
        seed: 0,
        ..TrainConfig::default()
    }
}

/// The first `count` training conversations with their image names and pixels, to be asked
/// like the held-out ones.
fn training_probe(
    train: &[(Conversation, Pixels)],
    count: usize,
) -> Vec<(Conversation, String, Pixels)> {
    train
        .iter()
        .take(count)
        .map(|(conv, pixels)| {
            let image = conv.image.as_ref().map(|p| p.display().to_string());
            (conv.clone(), image.unwrap_or_default(), pixels.clone())
        })
        .collect()
}

fn resolve(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// The image processing of the model: 64 x 64, rescaled and normalised to [-1, 1].
static PREPROCESSING: LazyLock<PreprocessorConfig> = LazyLock::new(|| PreprocessorConfig {
    size: ImageSize::Exact {
        height: SIDE as u32,
        width: SIDE as u32,
    },
    image_mean: [0.5; 3],
    image_std: [0.5; 3],
    ..PreprocessorConfig::siglip_default()
});

#[derive(Deserialize)]
struct LlavaRecord {
    id: String,
    image: String,
    conversations: Vec<LlavaMessage>,
}

#[derive(Deserialize)]
struct LlavaMessage {
    from: String,
    value: String,
}

/// A LLaVA-Instruct JSON file as conversations and their image names.
fn read_llava(path: &Path) -> Result<Vec<(Conversation, String)>, Box<dyn Error>> {
    parse_llava(&std::fs::read(path)?)
}

fn parse_llava(bytes: &[u8]) -> Result<Vec<(Conversation, String)>, Box<dyn Error>> {
    let records: Vec<LlavaRecord> = serde_json::from_slice(bytes)?;
    Ok(records
        .into_iter()
        .map(|r| {
            let turns = r
                .conversations
                .into_iter()
                .map(|m| match m.from.as_str() {
                    "human" => Turn::user(m.value),
                    _ => Turn::assistant(m.value),
                })
                .collect();
            let conversation = Conversation {
                id: r.id,
                image: Some(PathBuf::from(&r.image)),
                turns,
            };
            (conversation, r.image)
        })
        .collect())
}

/// An image's preprocessed values, `[3, SIDE, SIDE]` (shared by the samples that show it).
type Pixels = Arc<[f32]>;

/// A training scene drawn by the generator: its conversation, its pixels, and what is at
/// each place (the labels of the vision tower's pretraining).
struct GeneratedScene {
    conversation: Conversation,
    pixels: Pixels,
    places: [i64; PLACES],
}

/// `count` training scenes from the generator with seed 1, minus any whose shapes (kinds,
/// colours, positions) equal a held-out scene's.
fn extra_scenes(
    count: usize,
    images: &ImageProcessor,
) -> Result<Vec<GeneratedScene>, Box<dyn Error>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let config = SampleConfig {
        seed: 1,
        train: count,
        heldout: 0,
        size: SampleConfig::default().size,
    };
    let heldout: HashSet<_> = scenes(&SampleConfig::default(), Split::Heldout)
        .into_iter()
        .map(|s| s.shapes)
        .collect();
    let drawn = scenes(&config, Split::Train);
    let files = generate(&config)?;
    let by_name: HashMap<PathBuf, &[u8]> = files
        .iter()
        .map(|f| (f.path.clone(), f.bytes.as_slice()))
        .collect();
    let json = by_name
        .get(Path::new("llava_train.json"))
        .ok_or("the generator wrote no llava_train.json")?;
    let mut out = Vec::with_capacity(count);
    for ((conversation, image), scene) in parse_llava(json)?.into_iter().zip(&drawn) {
        if heldout.contains(&scene.shapes) {
            continue;
        }
        let name = Path::new("images").join(&image);
        let bytes = by_name.get(&name).ok_or("a generated image is missing")?;
        let pixels = images
            .process_image(&images.decode_bytes(bytes, &name)?)
            .data;
        out.push(GeneratedScene {
            conversation,
            pixels: pixels.into(),
            places: place_classes(scene),
        });
    }
    Ok(out)
}

/// A question in its conversation.
struct Question {
    /// The conversation up to and including the question (earlier answers given).
    prompt: Conversation,
    question: String,
    answer: String,
    image: String,
    pixels: Pixels,
    /// Probability that a uniform guess among the possible answers is right.
    chance: f64,
}

/// The question answered by turn `answer`, without its image placeholder.
fn question_of(conversation: &Conversation, answer: usize) -> String {
    conversation.turns[answer - 1]
        .text
        .replace("<image>", "")
        .trim()
        .to_string()
}

/// The most frequent answer to each question text of the training conversations (ties: the
/// first in alphabetical order): the best an image-blind model could learn.
fn frequent_answers(train: &[(Conversation, Pixels)]) -> HashMap<String, String> {
    let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for (conv, _) in train {
        for i in (1..conv.turns.len()).step_by(2) {
            let answers = counts.entry(question_of(conv, i)).or_default();
            *answers.entry(conv.turns[i].text.clone()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter_map(|(question, answers)| {
            let best = answers
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))?;
            Some((question, best.0))
        })
        .collect()
}

/// Every question of `conversations` (conversation, image name, pixels), each asked in its
/// conversation with the earlier answers given.
fn questions_in(conversations: &[(Conversation, String, Pixels)]) -> Vec<Question> {
    let mut out = Vec::new();
    for (conv, image, pixels) in conversations {
        for (i, turn) in conv.turns.iter().enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let question = question_of(conv, i);
            let chance = if question.starts_with("How many") {
                1.0 / 3.0
            } else if question.starts_with("What color") {
                1.0 / 4.0
            } else if question.starts_with("Which shape") {
                1.0 / 3.0
            } else {
                1.0 / 5.0
            };
            out.push(Question {
                prompt: Conversation {
                    id: format!("{}#{}", conv.id, i / 2),
                    image: conv.image.clone(),
                    turns: conv.turns[..i].to_vec(),
                },
                question,
                answer: turn.text.clone(),
                image: image.clone(),
                pixels: pixels.clone(),
                chance,
            });
        }
    }
    out
}

/// The compact vocabulary of the model: Qwen's tokenizer cut down to the tokens the data
/// uses (and the merges that build them), so the model ships a real `tokenizer.json`.
struct Vocab(CompactVocab);

impl Vocab {
    fn new(tokenizer: &Path, used: BTreeSet<u32>) -> Result<Self, Box<dyn Error>> {
        Ok(Self(CompactVocab::from_file(tokenizer, used)?))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The model's id of a Qwen id the data uses (every one is kept by construction).
    fn compact(&self, qwen_id: u32) -> u32 {
        self.0
            .new_id(qwen_id)
            .expect("the compact vocabulary keeps every id the data uses")
    }

    /// The Qwen id of a model id (every model id comes from the compact vocabulary).
    fn qwen_id(&self, compact: u32) -> u32 {
        self.0
            .old_id(compact)
            .expect("the model's ids are those of the compact vocabulary")
    }
}

/// A training sample in compact ids.
struct QsSample {
    ids: Vec<u32>,
    labels: Vec<i64>,
    pixels: Pixels,
}

fn collate(
    samples: &[&QsSample],
    pad: u32,
    dev: &burn::tensor::Device<Train>,
) -> TrainBatch<Train> {
    let n = samples.len();
    let seq = samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let (mut ids, mut labels, mut mask, mut pixels) = (vec![], vec![], vec![], vec![]);
    for s in samples {
        let fill = seq - s.ids.len();
        ids.extend(s.ids.iter().map(|&i| i64::from(i)));
        ids.extend(std::iter::repeat_n(i64::from(pad), fill));
        labels.extend(s.labels.iter().copied());
        labels.extend(std::iter::repeat_n(IGNORE_INDEX, fill));
        mask.extend(std::iter::repeat_n(1i64, s.ids.len()));
        mask.extend(std::iter::repeat_n(0i64, fill));
        pixels.extend_from_slice(&s.pixels);
    }
    let int = |v: Vec<i64>| Tensor::<Train, 2, Int>::from_data(TensorData::new(v, [n, seq]), dev);
    let inputs = VlmBatch {
        input_ids: int(ids),
        attention_mask: Some(int(mask)),
        pixel_values: Some(Tensor::from_data(
            TensorData::new(pixels, [n, 3, SIDE, SIDE]),
            dev,
        )),
    };
    TrainBatch::new(inputs, int(labels))
}

type QsVlm<B> =
    VisionLanguageModel<B, SiglipVisionTower<B>, PixelShuffleProjector<B>, QwenModel<B>>;

/// Greedy answers to every question, in batches; with `blank`, every image is replaced by
/// a flat grey one (all zeros after normalisation).
fn answer(
    model: &QsVlm<Inference>,
    questions: &[Question],
    prompts: &[Vec<u32>],
    vocab: &Vocab,
    stop: u32,
    pad: u32,
    blank: bool,
) -> Result<Vec<String>, Box<dyn Error>> {
    let dev = device();
    let config = GenerationConfig {
        stop_token_ids: vec![stop],
        pad_token_id: pad,
        ..GenerationConfig::greedy(8)
    };
    let tokenizer =
        Tokenizer::from_file(Path::new(env!("CARGO_MANIFEST_DIR")).join(QWEN_TOKENIZER))?;
    let mut out = Vec::with_capacity(questions.len());
    for (qs, ps) in questions.chunks(32).zip(prompts.chunks(32)) {
        let compact: Vec<Vec<u32>> = ps
            .iter()
            .map(|p| p.iter().map(|&id| vocab.compact(id)).collect())
            .collect();
        let pixels: Vec<f32> = if blank {
            vec![0.0; qs.len() * 3 * SIDE * SIDE]
        } else {
            qs.iter().flat_map(|q| q.pixels.iter().copied()).collect()
        };
        let pixels = Tensor::from_data(TensorData::new(pixels, [qs.len(), 3, SIDE, SIDE]), &dev);
        let batch = VlmBatch::left_padded(&compact, pad, Some(pixels), &dev)?;
        for tokens in model.generate(batch, &config, |_| {})? {
            let ids: Vec<u32> = tokens
                .into_iter()
                .take_while(|&t| t != stop)
                .map(|t| vocab.qwen_id(t))
                .collect();
            out.push(tokenizer.decode(&ids, true)?.trim().to_string());
        }
    }
    Ok(out)
}

/// Writes the trained model as `dir/{llm, vision, checkpoint}`: the LLM as a Hugging Face
/// Qwen2 folder with its compact `tokenizer.json`, the vision tower as a SigLIP folder, and a
/// vlm checkpoint (projector, a copy of the tokenizer and `vlm_config.json` naming `../llm`,
/// `../vision` and its `tokenizer.json`) that `chat` and `serve` load by default. Returns the
/// checkpoint folder.
fn save_model(
    model: &QsVlm<Inference>,
    vocab: &Vocab,
    llm_init: &Path,
    dir: &Path,
) -> Result<PathBuf, Box<dyn Error>> {
    let llm = dir.join("llm");
    model
        .language_model()
        .save_merged(&llm, llm_init.join("config.json"))?;
    vocab.0.write(llm.join("tokenizer.json"))?;
    model.vision().save(dir.join("vision"))?;
    let vision = VisionTowerConfig::new("../vision", SELECTION);
    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: None,
    };
    let mut config = VlmConfig::for_model(model, PathBuf::from("../llm"), vision, template);
    config.tokenizer = Some(PathBuf::from(TOKENIZER_FILE));
    let staged = StagedCheckpoint::new(dir.join("checkpoint"), model, &config)?;
    vocab.0.write(staged.path().join(TOKENIZER_FILE))?;
    Ok(staged.commit()?)
}
