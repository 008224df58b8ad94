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
//! 1. Reads the LLaVA-format conversations of `data/sample/` (train and held-out splits, with
//!    `vlm-data`'s LLaVA source) and adds more training scenes drawn by the same generator
//!    (`vlm_sample::sample`, another seed; any scene whose shapes equal a held-out scene's is
//!    left out, so the held-out layouts stay unseen). Images go through the `vlm-data` image
//!    processor (64 x 64, SigLIP-style normalisation), conversations through the real Qwen2
//!    tokenizer and ChatML template with `vlm-data`'s label masks (only the answers and their
//!    `<|im_end|>` are learned).
//! 2. Builds the model (`vlm_sample::tiny_vlm`) from two Hugging Face folders with random
//!    weights that it writes and then loads like any checkpoint: a SigLIP vision tower
//!    (`vlm_vision::SiglipVisionTower`, 2 layers, 64 patches of 8 x 8 pixels, every token kept)
//!    and a 2-layer Qwen2-architecture LLM (`vlm-qwen`), joined by nanoVLM's pixel-shuffle
//!    projector (64 patches -> 16 image tokens). `--help` lists the flags that change these
//!    sizes.
//!
//!    The vocabulary: Qwen's 151,646 tokens would make the embedding and LM head 99% of the
//!    model. The LLM gets a compact vocabulary (`vlm_sample::CompactVocab`): Qwen's tokenizer
//!    cut down to the tokens the data uses, the merges that build them and the 256 byte
//!    tokens. The data is encoded with the real Qwen tokenizer and template and its ids mapped
//!    into the compact ones; the compact `tokenizer.json` ships with the saved model.
//! 3. Trains in two stages with `vlm-train` (AdamW, warmup + cosine, clipping, a progress bar,
//!    `metrics.jsonl` and `loss.png` in `OUT/pretrain/` and `OUT/run/`). Stage 1
//!    (`vlm_sample::place_pretraining`) pretrains the vision tower, as CLIP and SigLIP are
//!    pretrained before a LLaVA uses them: a linear head on the mean of its tokens names what
//!    is at each of the five places of the generated training scenes. Stage 2
//!    (`vlm_sample::training`) is LLaVA's: the tower frozen, the projector (at its own learning
//!    rate) and the whole LLM trained on the conversations. Trained end to end from random
//!    weights in one stage, the same model stalls at the answer prior (about 47%: it counts,
//!    and answers the other questions with one word each), in PyTorch as in Burn.
//! 4. Evaluates exact match on every held-out question (each asked in its conversation, the
//!    earlier answers given, by `vlm-model`'s evaluation, `Answerer`), again with every image
//!    blanked (the model must then guess: near chance), and answers one held-out question
//!    (scores: `vlm_sample::score`). `--train-probe N` also scores N training conversations,
//!    to tell under- from over-fitting.
//! 5. Saves the trained model to `OUT/model/` (`llm/` and `vision/` as Hugging Face folders,
//!    `checkpoint/` as a vlm checkpoint naming them), which `chat` and `serve` load when no
//!    model is given.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use clap::Parser;
use vlm::backend::{device, Inference, Train};
use vlm::data::{ChatTemplate, EncoderConfig, SampleEncoder, Tokenizer};
use vlm::image::ImageProcessor;
use vlm::model::{Answerer, PixelShuffleProjector, VisionLanguageModel};
use vlm::qwen::{GenerationConfig, QwenModel};
use vlm::sample::place_pretraining::pretrain_vision;
use vlm::sample::questions::{encode_prompts, questions_in, Asked};
use vlm::sample::sample::{extra_scenes, read_split, write_sample_data, SampleConfig, Split};
use vlm::sample::score::{frequent_answers, HeldOutScore, TrainingScore};
use vlm::sample::tiny_vlm::{self, TinyVlmSizes, SELECTION};
use vlm::sample::training::{train_llava, StageSettings, TrainSample};
use vlm::sample::CompactVocab;
use vlm::vision::SiglipVisionTower;

/// Qwen2's tokenizer, relative to the repository.
const QWEN_TOKENIZER: &str = "data/tokenizer/qwen2/tokenizer.json";

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
    arch: TinyVlmSizes,
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
    let encoder = SampleEncoder::new(
        tokenizer,
        ChatTemplate::without_system(),
        EncoderConfig::new(arch.tokens_per_image(), 512),
    )?;
    let images = ImageProcessor::new(tiny_vlm::preprocessing());
    let mut train = read_split(&data_dir, Split::Train, &images)?;
    let heldout = read_split(&data_dir, Split::Heldout, &images)?;
    let bundled = train.len();
    let generated = extra_scenes(args.extra_train, &args.out.join("extra"), &images)?;
    train.extend(generated.iter().map(|s| s.example.clone()));
    println!(
        "data: {bundled} bundled + {} generated training conversations, {} held-out ({:.1} s)",
        train.len() - bundled,
        heldout.len(),
        start.elapsed().as_secs_f64()
    );

    let probe = questions_in(&train[..args.train_probe.min(train.len())]);
    let prior = frequent_answers(train.iter().map(|(conv, _)| conv));
    // The compact vocabulary: every Qwen id the data's prompts and answers use.
    let encoded: Vec<_> = train
        .iter()
        .map(|(conv, _)| encoder.encode(conv))
        .collect::<Result<_, _>>()?;
    let questions = questions_in(&heldout);
    let prompts = encode_prompts(&encoder, &questions)?;
    let used = tiny_vlm::vocabulary_ids(&encoder, &encoded, &prompts, &questions)?;
    let vocab = CompactVocab::from_file(root.join(QWEN_TOKENIZER), used)?;
    println!(
        "vocabulary: {} of Qwen's {} tokens",
        vocab.len(),
        encoder.tokenizer().vocab_size()
    );
    let samples = encoded
        .into_iter()
        .zip(train)
        .map(|(sample, (_, pixels))| Ok((vocab.compact_sample(sample)?, pixels)))
        .collect::<Result<Vec<TrainSample>, Box<dyn Error>>>()?;

    // 2. The model; stage 1 pretrains its vision tower.
    let llm_dir = args.out.join("llm-init");
    tiny_vlm::write_random_qwen2::<Inference>(&llm_dir, vocab.len(), &arch, &dev)?;
    let vision_dir = args.out.join("vision-init");
    tiny_vlm::write_random_siglip::<Inference>(&vision_dir, &arch, &dev)?;
    Train::seed(&dev, 0);
    let llm = QwenModel::<Train>::load(&llm_dir, &dev)?;
    let vision = SiglipVisionTower::<Train>::load(&vision_dir, SELECTION, &dev)?;
    let stages = StageSettings {
        out: args.out.clone(),
        batch_size: args.batch_size,
        lr: args.lr,
    };
    let config = stages.config("pretrain", args.pretrain_steps, args.lr, true);
    let stage_start = Instant::now();
    let pretrained = pretrain_vision(vision, &generated, config, &dev)?;
    println!(
        "stage 1: pretrained the vision tower {} steps in {:.0} s; final loss {:.4}",
        pretrained.state.step,
        stage_start.elapsed().as_secs_f64(),
        pretrained.state.last_loss.unwrap_or(f64::NAN)
    );
    let projector = PixelShuffleProjector::new(arch.vit_dim, arch.hidden, arch.shuffle, &dev)?;
    let image_id = vocab.compact_id(encoder.image_token_id())?;
    let model = VisionLanguageModel::new(pretrained.model.vision, projector, llm, image_id)?;

    // 3. Training (stage 2): the tower frozen, as LLaVA has it.
    let config = stages.config("run", args.steps, args.projector_lr, false);
    let pad = vocab.compact_id(encoder.pad_id())?;
    let stage_start = Instant::now();
    let outcome = train_llava(model, samples, config, pad, &dev)?;
    println!(
        "stage 2: trained {} steps in {:.0} s; final loss {:.4}; metrics in {}{}",
        outcome.state.step,
        stage_start.elapsed().as_secs_f64(),
        outcome.state.last_loss.unwrap_or(f64::NAN),
        outcome.metrics.display(),
        outcome
            .loss_curve
            .as_ref()
            .map(|p| format!(", loss curve {}", p.display()))
            .unwrap_or_default()
    );

    // 4. The trained model, saved for `chat` and `serve`; then evaluation with its tokenizer.
    let model = outcome.model.valid();
    let saved = tiny_vlm::save_tiny_vlm(&model, &vocab, &llm_dir, &args.out.join("model"))?;
    println!(
        "model saved to {} (chat with it: cargo run --release --example chat -- --image IMAGE \
         --prompt \"How many shapes are there?\")",
        saved.display()
    );
    let compact = Tokenizer::from_file(args.out.join("model/llm/tokenizer.json"))?;
    let im_end = encoder.tokenizer().token_id("<|im_end|>")?;
    let config = GenerationConfig {
        stop_token_ids: vec![vocab.compact_id(im_end)?],
        pad_token_id: pad,
        ..GenerationConfig::greedy(8)
    };
    let answerer = Answerer::new(&model, &compact, config, device());
    let ask = |asked: &[Asked], prompts: &[Vec<u32>], blank: bool| {
        let prompts = asked
            .iter()
            .zip(prompts)
            .map(|(a, ids)| a.prompt(&vocab, ids, blank))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, Box<dyn Error>>(answerer.answer_all(&prompts, 32)?)
    };
    let answers = ask(&questions, &prompts, false)?;
    let blanked = ask(&questions, &prompts, true)?;
    print!(
        "{}",
        HeldOutScore {
            questions: &questions,
            answers: &answers,
            blanked: &blanked,
            prior: &prior,
        }
    );
    if !probe.is_empty() {
        let probe_answers = ask(&probe, &encode_prompts(&encoder, &probe)?, false)?;
        print!(
            "{}",
            TrainingScore {
                probe: &probe,
                answers: &probe_answers
            }
        );
    }
    let asked = &questions[0];
    println!(
        "held-out example: {} -- \"{}\" -> model: \"{}\" (expected \"{}\")",
        asked.image.display(),
        asked.question.text(),
        answers[0],
        asked.question.reference
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
