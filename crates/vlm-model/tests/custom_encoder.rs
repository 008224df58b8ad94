//! A vision encoder defined here, outside the crate, plugs into the VLM unchanged: forward,
//! loss, generation and training gradients, with a text-only sample in the same batch as an
//! image sample.

mod common;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor};
use common::{ids_tensor, masked_max_diff};
use vlm_hf::{ImageSize, PreprocessorConfig};
use vlm_model::{MlpProjector, ModelError, VisionLanguageModel, VlmBatch};
use vlm_qwen::{GenerationConfig, QwenModel};
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};
use vlm_vision::{VisionEncoder, VisionError};

/// A toy ViT stem: each `patch x patch` tile, flattened, through one linear layer.
#[derive(Module, Debug)]
struct LinearPatches<B: Backend> {
    proj: Linear<B>,
    patch: usize,
    image_size: usize,
    #[module(skip)]
    preprocessing: PreprocessorConfig,
}

impl<B: Backend> LinearPatches<B> {
    /// Takes `image_size` pixels squared, resized SigLIP-style (no crop, mean/std 0.5).
    fn new(image_size: usize, patch: usize, width: usize, device: &B::Device) -> Self {
        let side = u32::try_from(image_size).expect("side");
        let preprocessing = PreprocessorConfig {
            size: ImageSize::Exact {
                height: side,
                width: side,
            },
            ..PreprocessorConfig::siglip_default()
        };
        Self {
            proj: LinearConfig::new(3 * patch * patch, width).init(device),
            patch,
            image_size,
            preprocessing,
        }
    }
}

impl<B: Backend> VisionEncoder<B> for LinearPatches<B> {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        let [batch, channels, height, width] = pixels.dims();
        if [channels, height, width] != [3, self.image_size, self.image_size] {
            return Err(VisionError::PixelShape {
                actual: pixels.dims(),
                channels: 3,
                image_size: self.image_size,
            });
        }
        let (grid, p) = (self.image_size / self.patch, self.patch);
        let tiles = pixels
            .reshape([batch, 3, grid, p, grid, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, grid * grid, 3 * p * p]);
        Ok(self.proj.forward(tiles))
    }

    fn output_dim(&self) -> usize {
        self.proj.weight.val().dims()[1]
    }

    fn tokens_per_image(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    fn image_size(&self) -> usize {
        self.image_size
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        &self.preprocessing
    }
}

const IMAGE: i64 = 500;
const WIDTH: usize = 24;

type Vlm<B> = VisionLanguageModel<B, LinearPatches<B>, MlpProjector<B>, QwenModel<B>>;

/// The toy encoder (16 x 16 images, 4 x 4 patches: 16 tokens) on the tied Qwen2 fixture.
fn model<B: Backend>() -> Vlm<B> {
    let dev = Default::default();
    let llm = QwenModel::load(fixture("qwen2_tied"), &dev).expect("qwen2_tied");
    let encoder = LinearPatches::new(16, 4, WIDTH, &dev);
    let projector = MlpProjector::new(WIDTH, 64, &dev);
    VisionLanguageModel::new(encoder, projector, llm, IMAGE as u32).expect("assemble")
}

/// Sample 0: 2 prompt tokens, an image, 3 more; sample 1: text only, left-padded.
fn prompt_rows() -> Vec<Vec<i64>> {
    let mut with_image = vec![7, 8];
    with_image.extend([IMAGE; 16]);
    with_image.extend([9, 10, 11]);
    let mut text_only = vec![0; 14];
    text_only.extend([20, 21, 22, 23, 24, 25, 26]);
    vec![with_image, text_only]
}

fn batch<B: Backend>() -> VlmBatch<B> {
    let dev = Default::default();
    let rows = prompt_rows();
    let mut padded = vec![0; 14];
    padded.extend([1; 7]);
    let mask = vec![vec![1; 21], padded];
    let ids = Tensor::from_data(ids_tensor(&rows).into_data(), &dev);
    let mask = Tensor::from_data(ids_tensor(&mask).into_data(), &dev);
    let pixels = Tensor::random([1, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
    VlmBatch {
        input_ids: ids,
        attention_mask: Some(mask),
        pixel_values: Some(pixels),
    }
}

#[test]
fn a_user_encoder_runs_forward_loss_and_generation() {
    let model = model::<TestBackend>();
    let batch = batch::<TestBackend>();
    let mask = batch.attention_mask.clone().expect("mask");

    let inputs = model.prepare(batch.clone()).expect("prepare");
    let features = model
        .image_features(batch.pixel_values.clone().expect("pixels"))
        .expect("features");
    let spliced = inputs.inputs_embeds.clone().slice([0..1, 2..18]);
    assert_eq!(
        max_abs_diff(&spliced, &features),
        0.0,
        "image rows are the features"
    );

    let logits = model.forward(batch.clone()).expect("forward");
    assert_eq!(logits.dims(), [2, 21, 512]);
    // The text-only sample computes what the language model alone computes on it.
    let text_ids = batch.input_ids.clone().slice([1..2, 0..21]);
    let text_mask = mask.clone().slice([1..2, 0..21]);
    let alone = model
        .language_model()
        .forward(text_ids, Some(text_mask.clone()), None, None)
        .expect("llm alone");
    let diff = masked_max_diff(
        &logits.clone().slice([1..2, 0..21, 0..512]),
        &alone,
        &text_mask,
    );
    assert!(diff <= 1e-5, "text-only sample differs by {diff:e}");

    let labels: Vec<Vec<i64>> = prompt_rows()
        .into_iter()
        .map(|row| {
            let len = row.len();
            row.into_iter()
                .enumerate()
                .map(|(i, id)| if i >= len - 2 { id } else { -100 })
                .collect()
        })
        .collect();
    let loss = model
        .forward_loss(batch.clone(), ids_tensor(&labels))
        .expect("loss");
    assert_eq!(loss.supervised_tokens, 4);
    assert!(loss.loss.into_scalar().is_finite());

    let mut steps = Vec::new();
    let config = GenerationConfig::greedy(5);
    let generated = model
        .generate(batch.clone(), &config, |tokens| steps.push(tokens.to_vec()))
        .expect("generate");
    assert_eq!(generated.len(), 2);
    assert!(generated.iter().all(|tokens| tokens.len() == 5));
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[0], [generated[0][0], generated[1][0]]);

    let uncached = GenerationConfig {
        use_cache: false,
        ..config
    };
    let again = model.generate(batch, &uncached, |_| {}).expect("generate");
    assert_eq!(again, generated, "cached and uncached decoding agree");
}

#[test]
fn widths_are_checked_when_the_model_is_assembled() {
    let dev = device();
    let llm = || QwenModel::<TestBackend>::load(fixture("qwen2_tied"), &dev).expect("llm");
    let encoder = || LinearPatches::new(16, 4, WIDTH, &dev);

    let narrow = MlpProjector::new(20, 64, &dev);
    let err = VisionLanguageModel::new(encoder(), narrow, llm(), 500).expect_err("24 vs 20");
    assert!(
        matches!(
            err,
            ModelError::DimensionMismatch {
                producer: "the vision encoder",
                produced: 24,
                consumer: "the projector",
                expected: 20,
            }
        ),
        "{err}"
    );
    let short = MlpProjector::new(WIDTH, 32, &dev);
    let err = VisionLanguageModel::new(encoder(), short, llm(), 500).expect_err("32 vs 64");
    assert!(err.to_string().contains("the language model"), "{err}");
}

/// Counts the parameters of a module that received a gradient.
struct WithGradient<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    params: usize,
    with_grad: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for WithGradient<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.params += 1;
        self.with_grad += usize::from(param.val().grad(self.grads).is_some());
    }
}

#[test]
fn the_loss_trains_the_projector() {
    type Train = Autodiff<TestBackend>;
    let model = model::<Train>();
    let rows = prompt_rows();
    let labels: Vec<Vec<i64>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|&id| if id == IMAGE || id == 0 { -100 } else { id })
                .collect()
        })
        .collect();
    let labels: Tensor<Train, 2, Int> =
        Tensor::from_data(ids_tensor(&labels).into_data(), &device());
    let loss = model.forward_loss(batch::<Train>(), labels).expect("loss");
    let grads = loss.loss.backward();
    let mut audit = WithGradient::<Train> {
        grads: &grads,
        params: 0,
        with_grad: 0,
    };
    model.projector().visit(&mut audit);
    assert_eq!(
        (audit.params, audit.with_grad),
        (4, 4),
        "both linears' weights and biases"
    );

    // The same model without autodiff, for evaluation.
    let logits = model
        .valid()
        .forward(batch::<TestBackend>())
        .expect("inner forward");
    assert_eq!(logits.dims(), [2, 21, 512]);
}
