//! Shared by the integration tests: a tiny VLM (a linear patch encoder, the MLP projector and
//! the tiny Qwen2 fixture, optionally with LoRA), synthetic batches and quick configs.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Device, Int, Tensor, TensorData};
use vlm_hf::{ImageSize, Precision, PreprocessorConfig};
use vlm_lora::{LoraConfig, TargetModules};
use vlm_model::{CausalLmLoss, MlpProjector, ModelError, VisionLanguageModel, VlmBatch};
use vlm_qwen::QwenModel;
use vlm_rng::SplitMix64;
use vlm_testkit::{fixture, TestBackend};
use vlm_train::{LrSchedule, ShuffledData, TrainBatch, TrainConfig, TrainError, TrainMode};
use vlm_vision::{VisionEncoder, VisionError};

/// The autodiff backend the tests train on.
pub type Train = Autodiff<TestBackend>;

/// Image side, patch side and feature width of the toy encoder.
pub const IMAGE: usize = 8;
pub const PATCH: usize = 4;
pub const WIDTH: usize = 16;
/// Placeholder id of the image tokens (inside the fixture's 512-token vocabulary).
pub const IMAGE_TOKEN: u32 = 500;
/// Tokens per image: (8 / 4)^2.
pub const TOKENS_PER_IMAGE: usize = 4;

/// A toy ViT stem: each patch, flattened, through one linear layer.
#[derive(Module, Debug)]
pub struct LinearPatches<B: Backend> {
    pub proj: Linear<B>,
    patch: usize,
    image_size: usize,
}

impl<B: Backend> LinearPatches<B> {
    /// Weights drawn from a fixed seed, not from the backend's generator: the tower is
    /// frozen in most tests, so it must be the same in every run (as a pretrained tower
    /// loaded from disk is).
    pub fn new(device: &B::Device) -> Self {
        let mut rng = SplitMix64::new(1234);
        let (d_in, d_out) = (3 * PATCH * PATCH, WIDTH);
        let mut values = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_f64() as f32 - 0.5) * 0.4)
                .collect()
        };
        let mut proj = LinearConfig::new(d_in, d_out).init(device);
        proj.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(values(d_in * d_out), [d_in, d_out]),
            device,
        ));
        proj.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(values(d_out), [d_out]),
            device,
        )));
        Self {
            proj,
            patch: PATCH,
            image_size: IMAGE,
        }
    }
}

static PREPROCESSING: std::sync::LazyLock<PreprocessorConfig> =
    std::sync::LazyLock::new(|| PreprocessorConfig {
        size: ImageSize::Exact {
            height: IMAGE as u32,
            width: IMAGE as u32,
        },
        ..PreprocessorConfig::siglip_default()
    });

impl<B: Backend> VisionEncoder<B> for LinearPatches<B> {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        let [batch, _, _, _] = pixels.dims();
        let (grid, p) = (self.image_size / self.patch, self.patch);
        // In the weights' float type, as the CLIP / SigLIP towers take pixels.
        let pixels = pixels.cast(self.proj.weight.val().dtype());
        let tiles = pixels
            .reshape([batch, 3, grid, p, grid, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, grid * grid, 3 * p * p]);
        Ok(self.proj.forward(tiles))
    }

    fn output_dim(&self) -> usize {
        WIDTH
    }

    fn tokens_per_image(&self) -> usize {
        TOKENS_PER_IMAGE
    }

    fn image_size(&self) -> usize {
        IMAGE
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        &PREPROCESSING
    }
}

/// The test VLM on autodiff backend `B`.
pub type VlmOn<B> = VisionLanguageModel<B, LinearPatches<B>, MlpProjector<B>, QwenModel<B>>;

/// The test VLM.
pub type Vlm = VlmOn<Train>;

/// Tests that draw from the backend's global random generator (model initialisation,
/// dropout) hold this lock, so that tests running in parallel threads do not interleave
/// their draws.
pub fn rng_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tiny VLM; with `lora`, rank-4 adapters (dropout 0.1) on some attention and MLP
/// projections of the language model. The frozen parts are the same in every call; the
/// trainable ones (projector, adapters) are drawn from `init_seed`.
pub fn model(lora: bool, init_seed: u64) -> Vlm {
    model_with_dropout(lora, init_seed, 0.1)
}

/// [`model`] with the adapters' dropout `dropout`.
pub fn model_with_dropout(lora: bool, init_seed: u64, dropout: f64) -> Vlm {
    model_on(lora, init_seed, dropout)
}

/// [`model_with_dropout`] on autodiff backend `B`.
pub fn model_on<B: AutodiffBackend<Device = Device<TestBackend>>>(
    lora: bool,
    init_seed: u64,
    dropout: f64,
) -> VlmOn<B> {
    model_in(Precision::F32, lora, init_seed, dropout)
}

/// [`model_on`] with the language model loaded in `precision` (the adapters and the
/// projector are made in f32 whatever it is; the toy tower too, `apply_mode` casts it).
pub fn model_in<B: AutodiffBackend<Device = Device<TestBackend>>>(
    precision: Precision,
    lora: bool,
    init_seed: u64,
    dropout: f64,
) -> VlmOn<B> {
    let device = Default::default();
    TestBackend::seed(&device, init_seed);
    let options = precision
        .on::<B>(&device)
        .expect("the test backend takes it");
    let llm = QwenModel::<B>::load(fixture("qwen2_tied"), options).expect("qwen2_tied");
    let llm = if lora {
        let config = LoraConfig::new(
            4,
            8.0,
            TargetModules::parse("q_proj|v_proj|up_proj|down_proj"),
        )
        .with_dropout(dropout);
        vlm_lora::apply(llm, &config).expect("lora")
    } else {
        llm
    };
    let encoder = LinearPatches::new(&device);
    let projector = MlpProjector::new(WIDTH, 64, &device);
    VisionLanguageModel::new(encoder, projector, llm, IMAGE_TOKEN).expect("assemble")
}

/// The loss the trainer minimises.
pub fn loss(model: &Vlm, batch: TrainBatch<Train>) -> Result<CausalLmLoss<Train>, ModelError> {
    model.forward_loss(batch.inputs, batch.labels)
}

/// A synthetic sample: a few prompt tokens, an image, a few answer tokens (supervised).
#[derive(Debug, Clone)]
pub struct ToySample {
    pub ids: Vec<i64>,
    pub labels: Vec<i64>,
    pub pixels: Vec<f32>,
}

/// `n` samples of varying lengths drawn from `seed`; with `masked`, every label of sample
/// `masked` is -100.
pub fn samples(n: usize, seed: u64, masked: Option<usize>) -> Vec<ToySample> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            let prompt = 2 + rng.below(3);
            let answer = 2 + rng.below(3);
            let mut ids: Vec<i64> = (0..prompt).map(|_| rng.below(400) as i64).collect();
            ids.extend([i64::from(IMAGE_TOKEN); TOKENS_PER_IMAGE]);
            let split = ids.len();
            ids.extend((0..answer).map(|_| rng.below(400) as i64));
            let labels = ids
                .iter()
                .enumerate()
                .map(|(j, &id)| {
                    if j >= split && masked != Some(i) {
                        id
                    } else {
                        -100
                    }
                })
                .collect();
            let pixels = (0..3 * IMAGE * IMAGE)
                .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
                .collect();
            ToySample {
                ids,
                labels,
                pixels,
            }
        })
        .collect()
}

/// Right-pads samples into a batch.
pub fn collate(
    samples: &[&ToySample],
    device: &Device<Train>,
) -> Result<TrainBatch<Train>, TrainError> {
    collate_on(samples, device)
}

/// [`collate`] on backend `B`.
pub fn collate_on<B: Backend>(
    samples: &[&ToySample],
    device: &B::Device,
) -> Result<TrainBatch<B>, TrainError> {
    let seq = samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let (mut ids, mut labels, mut mask, mut pixels) = (vec![], vec![], vec![], vec![]);
    for s in samples {
        let pad = seq - s.ids.len();
        ids.extend(s.ids.iter().copied().chain(std::iter::repeat_n(0, pad)));
        labels.extend(
            s.labels
                .iter()
                .copied()
                .chain(std::iter::repeat_n(-100, pad)),
        );
        mask.extend(std::iter::repeat_n(1i64, s.ids.len()).chain(std::iter::repeat_n(0, pad)));
        pixels.extend_from_slice(&s.pixels);
    }
    let n = samples.len();
    let int = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [n, seq]), device);
    let inputs = VlmBatch {
        input_ids: int(ids),
        attention_mask: Some(int(mask)),
        pixel_values: Some(Tensor::from_data(
            TensorData::new(pixels, [n, 3, IMAGE, IMAGE]),
            device,
        )),
    };
    Ok(TrainBatch::new(inputs, int(labels)))
}

type Collate = fn(&[&ToySample], &Device<Train>) -> Result<TrainBatch<Train>, TrainError>;

/// The samples served two at a time, shuffled by seed 3.
pub fn data(samples: Vec<ToySample>) -> ShuffledData<ToySample, Collate> {
    data_in_batches(samples, 2)
}

/// The samples served `batch_size` at a time, shuffled by seed 3.
pub fn data_in_batches(
    samples: Vec<ToySample>,
    batch_size: usize,
) -> ShuffledData<ToySample, Collate> {
    ShuffledData::new(samples, batch_size, 3, collate as Collate)
}

/// A quick config: LoRA mode, 6 steps of 2 micro-batches, warmup 1, cosine, clipping,
/// weight decay, checkpoints every 3 steps, no progress bar.
pub fn config(output_dir: &Path) -> TrainConfig {
    TrainConfig {
        output_dir: output_dir.to_path_buf(),
        mode: TrainMode::Lora,
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 2,
        max_steps: Some(6),
        learning_rate: 1e-3,
        feature_proj_lr: Some(1e-2),
        weight_decay: 0.01,
        warmup_steps: 1,
        lr_scheduler_type: LrSchedule::Cosine,
        max_grad_norm: 1.0,
        save_steps: 3,
        save_total_limit: Some(2),
        logging_steps: 2,
        seed: 11,
        disable_progress_bar: true,
        ..TrainConfig::default()
    }
}

/// Every float parameter's path and values.
pub fn weights<B: Backend, M: Module<B>>(model: &M) -> Vec<(String, Vec<f32>)> {
    params(model, |value, _| value.iter::<f32>().collect())
}

/// Every float parameter's path and what `read` makes of its value and whether it trains.
pub fn params<B: Backend, M: Module<B>, T>(
    model: &M,
    read: impl Fn(TensorData, bool) -> T,
) -> Vec<(String, T)> {
    struct Collect<T, F> {
        path: Vec<String>,
        read: F,
        out: Vec<(String, T)>,
    }
    impl<B: Backend, T, F: Fn(TensorData, bool) -> T> ModuleVisitor<B> for Collect<T, F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            let trains = value.is_require_grad();
            let value = (self.read)(value.into_data(), trains);
            self.out.push((self.path.join("."), value));
        }
    }
    let mut collect = Collect {
        path: vec![],
        read,
        out: vec![],
    };
    model.visit(&mut collect);
    collect.out
}
