//! The quickstart: build a small vision-language model from scratch on the CPU, train it on
//! the bundled synthetic dataset (`data/sample/`: shapes, colours and positions, with
//! questions about them), and show that it learned to read the image.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! What it does, in about ten minutes on two cores:
//!
//! 1. Reads the LLaVA-format conversations of `data/sample/` (train and held-out splits) and
//!    adds more training scenes drawn by the same generator (`vlm_data::sample`, another seed;
//!    any scene whose shapes equal a held-out scene's is left out, so the held-out layouts stay
//!    unseen). Images go through the `vlm-data` image processor (64 x 64, SigLIP-style
//!    normalisation), conversations through the real Qwen2 tokenizer and ChatML template with
//!    `vlm-data`'s label masks (only the answers and their `<|im_end|>` are learned).
//! 2. Builds the model: a 2-layer ViT written below (64 patches of 8 x 8 pixels; any
//!    `VisionEncoder` plugs in), nanoVLM's pixel-shuffle projector (64 patches -> 16 image
//!    tokens) and a 2-layer Qwen2-architecture LLM with random weights, written as a Hugging
//!    Face folder and loaded by `vlm-qwen` like any checkpoint.
//!
//!    The vocabulary: Qwen's 151,646 tokens would make the embedding and LM head 99% of the
//!    model and of the compute. The dataset uses about a hundred of them, so the LLM gets a
//!    compact vocabulary of exactly the Qwen token ids the data uses (train and held-out
//!    prompts and answers, plus the ChatML and image tokens): ids are mapped into it before
//!    the model and back out before the tokenizer decodes. The text side is still the real
//!    Qwen tokenizer and template; only the embedding table is restricted.
//! 3. Trains everything (projector, LLM, and the vision tower: nothing is pretrained) with
//!    `vlm-train`: AdamW with the projector at its own learning rate, warmup + cosine,
//!    clipping, a progress bar, `metrics.jsonl` and `loss.png` in the output folder.
//! 4. Evaluates exact match on every held-out question (each asked in its conversation, the
//!    earlier answers given), again with every image blanked (the model must then guess:
//!    near chance), and answers one held-out question.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Instant;

use burn::module::{AutodiffModule, Module, Param};
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::Parser;
use serde::Deserialize;
use vlm::backend::{device, Inference, Train};
use vlm::data::image::ImageProcessor;
use vlm::data::sample::{generate, scenes, write_sample_data, SampleConfig, Split};
use vlm::data::{
    ChatTemplate, Conversation, EncoderConfig, SampleEncoder, Tokenizer, Turn, IGNORE_INDEX,
};
use vlm::hf::{ImageSize, PreprocessorConfig};
use vlm::lora::SafetensorsWriter;
use vlm::model::{PixelShuffleProjector, VisionLanguageModel, VlmBatch};
use vlm::qwen::{left_pad, GenerationConfig, QwenModel};
use vlm::train::{LrSchedule, Resume, ShuffledData, TrainBatch, TrainConfig, TrainMode, Trainer};
use vlm::vision::{VisionEncoder, VisionError};

/// Image side in pixels, patch side, ViT width, depth and heads.
const SIDE: usize = 64;
const PATCH: usize = 8;
const VIT_DIM: usize = 96;
const VIT_LAYERS: usize = 2;
const VIT_HEADS: usize = 4;
/// The LLM: width, MLP width, depth, query and key/value heads.
const HIDDEN: usize = 128;
const INTERMEDIATE: usize = 256;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
/// Pixel shuffle: 8 x 8 patches -> 4 x 4 image tokens.
const SHUFFLE: usize = 2;

#[derive(Parser)]
#[command(about = "Train a small VLM from scratch on the bundled synthetic dataset, on the CPU")]
struct Args {
    /// Optimizer steps.
    #[arg(long, default_value_t = 700)]
    steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Extra training scenes drawn by the dataset's generator (another seed; held-out
    /// layouts excluded), on top of the bundled train split.
    #[arg(long, default_value_t = 2400)]
    extra_train: usize,
    /// Peak learning rate of the LLM and the vision tower.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Peak learning rate of the projector.
    #[arg(long, default_value_t = 2e-3)]
    projector_lr: f64,
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
    let tokenizer = Tokenizer::from_file(root.join("data/tokenizer/qwen2/tokenizer.json"))?;
    let tokens_per_image = (SIDE / PATCH / SHUFFLE).pow(2);
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
            Ok((conv, pixels))
        })
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    let heldout = read_llava(&data_dir.join("llava_heldout.json"))?
        .into_iter()
        .map(|(conv, image)| {
            let pixels = images
                .process_path(data_dir.join("images").join(&image))?
                .data;
            Ok((conv, image, pixels))
        })
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    let bundled = train.len();
    train.extend(extra_scenes(args.extra_train, &images)?);
    println!(
        "data: {bundled} bundled + {} generated training conversations, {} held-out ({:.1} s)",
        train.len() - bundled,
        heldout.len(),
        start.elapsed().as_secs_f64()
    );

    // The compact vocabulary: every Qwen id the data's prompts and answers use.
    let encoded: Vec<_> = train
        .iter()
        .map(|(conv, _)| encoder.encode(conv))
        .collect::<Result<_, _>>()?;
    let questions = heldout_questions(&heldout);
    let prompts: Vec<Vec<u32>> = questions
        .iter()
        .map(|q| Ok(encoder.encode_prompt(&q.prompt)?.input_ids))
        .collect::<Result<_, Box<dyn Error>>>()?;
    let im_end = encoder.tokenizer().token_id("<|im_end|>")?;
    let mut used: BTreeSet<u32> = [encoder.pad_id(), encoder.image_token_id(), im_end].into();
    used.extend(encoded.iter().flat_map(|s| s.input_ids.iter().copied()));
    used.extend(prompts.iter().flatten().copied());
    for q in &questions {
        used.extend(encoder.tokenizer().encode(&q.answer)?);
    }
    let vocab = Vocab::new(used);
    println!(
        "vocabulary: {} of Qwen's {} tokens",
        vocab.qwen.len(),
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
    write_random_qwen2(&llm_dir, vocab.qwen.len())?;
    Train::seed(&dev, 0);
    let llm = QwenModel::<Train>::load(&llm_dir, &dev)?;
    let vision = TinyVit::<Train>::new(&dev);
    let projector = PixelShuffleProjector::new(VIT_DIM, HIDDEN, SHUFFLE, &dev)?;
    let image_id = vocab.compact(encoder.image_token_id());
    let model = VisionLanguageModel::new(vision, projector, llm, image_id)?;

    // 3. Training.
    let config = TrainConfig {
        output_dir: args.out.join("run"),
        mode: TrainMode::Full,
        train_vision: true,
        per_device_train_batch_size: args.batch_size,
        gradient_accumulation_steps: 1,
        max_steps: Some(args.steps),
        learning_rate: args.lr,
        feature_proj_lr: Some(args.projector_lr),
        weight_decay: 0.01,
        warmup_ratio: 0.05,
        lr_scheduler_type: LrSchedule::Cosine,
        max_grad_norm: 1.0,
        save_steps: 0,
        save_total_limit: Some(1),
        logging_steps: 50,
        seed: 0,
        ..TrainConfig::default()
    };
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
        "trained {} steps in {:.0} s; final loss {:.4}; metrics in {}{}",
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

    // 4. Evaluation, on the model without autodiff.
    let model = outcome.model.valid();
    let stop = vocab.compact(im_end);
    let answers = answer(&model, &questions, &prompts, &vocab, stop, pad, false)?;
    let blanked = answer(&model, &questions, &prompts, &vocab, stop, pad, true)?;
    let score = |answers: &[String]| {
        let right = questions
            .iter()
            .zip(answers)
            .filter(|(q, a)| **a == q.answer)
            .count();
        (right, 100.0 * right as f64 / questions.len() as f64)
    };
    let (right, accuracy) = score(&answers);
    let (blank_right, blank_accuracy) = score(&blanked);
    let chance = questions.iter().map(|q| q.chance).sum::<f64>() / questions.len() as f64;
    println!(
        "held-out exact match: {right}/{} = {accuracy:.1}%",
        questions.len()
    );
    println!(
        "with the image blanked: {blank_right}/{} = {blank_accuracy:.1}% (uniform guessing \
         among each question's possible answers: {:.1}%)",
        questions.len(),
        100.0 * chance
    );
    for kind in ["How many", "What color", "Which shape", "Where"] {
        let of_kind: Vec<usize> = (0..questions.len())
            .filter(|&i| questions[i].question.starts_with(kind))
            .collect();
        let right = of_kind
            .iter()
            .filter(|&&i| answers[i] == questions[i].answer)
            .count();
        let blank = of_kind
            .iter()
            .filter(|&&i| blanked[i] == questions[i].answer)
            .count();
        println!(
            "  {kind:<12} {right:>3}/{:<3} (blanked {blank})",
            of_kind.len()
        );
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

/// An image's preprocessed values, `[3, SIDE, SIDE]`.
type Pixels = Vec<f32>;

/// `count` training scenes from the generator with seed 1, minus any whose shapes (kinds,
/// colours, positions) equal a held-out scene's, with their pixels.
fn extra_scenes(
    count: usize,
    images: &ImageProcessor,
) -> Result<Vec<(Conversation, Pixels)>, Box<dyn Error>> {
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
    let overlaps: Vec<bool> = scenes(&config, Split::Train)
        .into_iter()
        .map(|s| heldout.contains(&s.shapes))
        .collect();
    let files = generate(&config)?;
    let by_name: HashMap<PathBuf, &[u8]> = files
        .iter()
        .map(|f| (f.path.clone(), f.bytes.as_slice()))
        .collect();
    let json = by_name
        .get(Path::new("llava_train.json"))
        .ok_or("the generator wrote no llava_train.json")?;
    let mut out = Vec::with_capacity(count);
    for (index, (conversation, image)) in parse_llava(json)?.into_iter().enumerate() {
        if overlaps[index] {
            continue;
        }
        let name = Path::new("images").join(&image);
        let bytes = by_name.get(&name).ok_or("a generated image is missing")?;
        let pixels = images
            .process_image(&images.decode_bytes(bytes, &name)?)
            .data;
        out.push((conversation, pixels));
    }
    Ok(out)
}

/// A held-out question in its conversation.
struct Question {
    /// The conversation up to and including the question (earlier answers given).
    prompt: Conversation,
    question: String,
    answer: String,
    image: String,
    pixels: Vec<f32>,
    /// Probability that a uniform guess among the possible answers is right.
    chance: f64,
}

fn heldout_questions(heldout: &[(Conversation, String, Vec<f32>)]) -> Vec<Question> {
    let mut out = Vec::new();
    for (conv, image, pixels) in heldout {
        for (i, turn) in conv.turns.iter().enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let question = conv.turns[i - 1]
                .text
                .replace("<image>", "")
                .trim()
                .to_string();
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

/// The Qwen token ids the data uses, numbered 0.. for the model.
struct Vocab {
    qwen: Vec<u32>,
    index: HashMap<u32, u32>,
}

impl Vocab {
    fn new(used: BTreeSet<u32>) -> Self {
        let qwen: Vec<u32> = used.into_iter().collect();
        let index = qwen
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        Self { qwen, index }
    }

    fn compact(&self, qwen_id: u32) -> u32 {
        self.index[&qwen_id]
    }

    fn qwen_id(&self, compact: u32) -> u32 {
        self.qwen[compact as usize]
    }
}

/// A training sample in compact ids.
struct QsSample {
    ids: Vec<u32>,
    labels: Vec<i64>,
    pixels: Vec<f32>,
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

type QsVlm<B> = VisionLanguageModel<B, TinyVit<B>, PixelShuffleProjector<B>, QwenModel<B>>;

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
    let tokenizer = Tokenizer::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tokenizer/qwen2/tokenizer.json"),
    )?;
    let mut out = Vec::with_capacity(questions.len());
    for (qs, ps) in questions.chunks(32).zip(prompts.chunks(32)) {
        let compact: Vec<Vec<u32>> = ps
            .iter()
            .map(|p| p.iter().map(|&id| vocab.compact(id)).collect())
            .collect();
        let padded = left_pad::<Inference>(&compact, pad, &dev)?;
        let pixels: Vec<f32> = if blank {
            vec![0.0; qs.len() * 3 * SIDE * SIDE]
        } else {
            qs.iter().flat_map(|q| q.pixels.iter().copied()).collect()
        };
        let batch = VlmBatch {
            input_ids: padded.input_ids,
            attention_mask: Some(padded.attention_mask),
            pixel_values: Some(Tensor::from_data(
                TensorData::new(pixels, [qs.len(), 3, SIDE, SIDE]),
                &dev,
            )),
        };
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

/// A Qwen2 Hugging Face folder with random weights (normal, std 0.02; norms 1, biases 0).
fn write_random_qwen2(dir: &Path, vocab: usize) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": true,
        "torch_dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let dev = device();
    Inference::seed(&dev, 0);
    let normal = |shape: [usize; 2]| {
        Tensor::<Inference, 2>::random(shape, Distribution::Normal(0.0, 0.02), &dev)
    };
    let head_dim = HIDDEN / HEADS;
    let kv = KV_HEADS * head_dim;
    let mut writer = SafetensorsWriter::new();
    writer.add("model.embed_tokens.weight", normal([vocab, HIDDEN]));
    writer.add(
        "model.norm.weight",
        Tensor::<Inference, 1>::ones([HIDDEN], &dev),
    );
    for layer in 0..LAYERS {
        let p = format!("model.layers.{layer}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            writer.add(
                format!("{p}.{norm}.weight"),
                Tensor::<Inference, 1>::ones([HIDDEN], &dev),
            );
        }
        for (name, out) in [("q_proj", HIDDEN), ("k_proj", kv), ("v_proj", kv)] {
            writer.add(
                format!("{p}.self_attn.{name}.weight"),
                normal([out, HIDDEN]),
            );
            writer.add(
                format!("{p}.self_attn.{name}.bias"),
                Tensor::<Inference, 1>::zeros([out], &dev),
            );
        }
        writer.add(
            format!("{p}.self_attn.o_proj.weight"),
            normal([HIDDEN, HIDDEN]),
        );
        writer.add(
            format!("{p}.mlp.gate_proj.weight"),
            normal([INTERMEDIATE, HIDDEN]),
        );
        writer.add(
            format!("{p}.mlp.up_proj.weight"),
            normal([INTERMEDIATE, HIDDEN]),
        );
        writer.add(
            format!("{p}.mlp.down_proj.weight"),
            normal([HIDDEN, INTERMEDIATE]),
        );
    }
    writer.write(&dir.join("model.safetensors"))?;
    Ok(())
}

/// A small ViT trained from scratch: 8 x 8 patches, learned positions, pre-norm blocks.
#[derive(Module, Debug)]
struct TinyVit<B: Backend> {
    patch_embed: Linear<B>,
    position: Param<Tensor<B, 2>>,
    blocks: Vec<VitBlock<B>>,
    norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
struct VitBlock<B: Backend> {
    norm_1: LayerNorm<B>,
    attn: MultiHeadAttention<B>,
    norm_2: LayerNorm<B>,
    fc_1: Linear<B>,
    fc_2: Linear<B>,
}

impl<B: Backend> TinyVit<B> {
    fn new(dev: &B::Device) -> Self {
        let patches = (SIDE / PATCH).pow(2);
        let blocks = (0..VIT_LAYERS)
            .map(|_| VitBlock {
                norm_1: LayerNormConfig::new(VIT_DIM).init(dev),
                attn: MultiHeadAttentionConfig::new(VIT_DIM, VIT_HEADS)
                    .with_dropout(0.0)
                    .init(dev),
                norm_2: LayerNormConfig::new(VIT_DIM).init(dev),
                fc_1: LinearConfig::new(VIT_DIM, 4 * VIT_DIM).init(dev),
                fc_2: LinearConfig::new(4 * VIT_DIM, VIT_DIM).init(dev),
            })
            .collect();
        Self {
            patch_embed: LinearConfig::new(3 * PATCH * PATCH, VIT_DIM).init(dev),
            position: Param::from_tensor(Tensor::random(
                [patches, VIT_DIM],
                Distribution::Normal(0.0, 0.02),
                dev,
            )),
            blocks,
            norm: LayerNormConfig::new(VIT_DIM).init(dev),
        }
    }
}

impl<B: Backend> VisionEncoder<B> for TinyVit<B> {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        let [batch, channels, height, width] = pixels.dims();
        if [channels, height, width] != [3, SIDE, SIDE] {
            return Err(VisionError::PixelShape {
                actual: pixels.dims(),
                channels: 3,
                image_size: SIDE,
            });
        }
        let grid = SIDE / PATCH;
        let patches = pixels
            .reshape([batch, 3, grid, PATCH, grid, PATCH])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, grid * grid, 3 * PATCH * PATCH]);
        let mut x = self.patch_embed.forward(patches) + self.position.val().unsqueeze::<3>();
        for block in &self.blocks {
            let attended = block
                .attn
                .forward(MhaInput::self_attn(block.norm_1.forward(x.clone())))
                .context;
            x = x + attended;
            let hidden = gelu(block.fc_1.forward(block.norm_2.forward(x.clone())));
            x = x.clone() + block.fc_2.forward(hidden);
        }
        Ok(self.norm.forward(x))
    }

    fn output_dim(&self) -> usize {
        VIT_DIM
    }

    fn tokens_per_image(&self) -> usize {
        (SIDE / PATCH).pow(2)
    }

    fn image_size(&self) -> usize {
        SIDE
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        &PREPROCESSING
    }
}
