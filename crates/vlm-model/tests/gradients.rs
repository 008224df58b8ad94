//! Autodiff gradients of a whole VLM's training loss against central finite differences.
//!
//! The forward passes are checked against transformers elsewhere; this checks the BACKWARD
//! pass from [`causal_lm_loss`] through the language model, the splice of the image features
//! into the token embeddings (a `cat` + `select`) and the projector (LLaVA's MLP, and the
//! pixel shuffle's reshape/permute), which training relies on and no fixture covers. On the
//! `llava` fixture (SigLIP tower, frozen; Qwen2 language model), with a left-padded batch of
//! two samples with one image each and labels on the text after the image, the autodiff
//! gradient of a few entries of every projector parameter and of some language-model
//! parameters must match `(L(w + eps) - L(w - eps)) / (2 eps)`, the loss being evaluated in
//! f64 on the host from the f32 logits of two perturbed copies of the model.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use vlm_data::IGNORE_INDEX;
use vlm_hf::WeightStore;
use vlm_model::{
    causal_lm_loss, load_llava_hf, AnyProjector, PixelShuffleProjector, QwenVlm,
    VisionLanguageModel, VlmBatch,
};
use vlm_testkit::gradcheck::{param_gradients, pick_entries, GradCheck, ParamGradient, Perturb};
use vlm_testkit::{device, fixture, TestBackend};

type Train = Autodiff<TestBackend>;

/// Half-width of the central difference.
const EPS: f32 = 5e-3;
/// Entries checked per parameter tensor.
const PER_TENSOR: usize = 4;
/// The placeholder id of the `llava` fixture.
const IMAGE: i64 = 511;

/// Token ids, attention mask and labels `[2, len]` (row-major), and the length.
struct Inputs {
    ids: Vec<i64>,
    mask: Vec<i64>,
    labels: Vec<i64>,
    len: usize,
}

impl Inputs {
    /// Two samples `text, image placeholders, text`; the second left-padded by 2, with a
    /// shorter prefix. Labels are the text after the image (`IGNORE_INDEX` elsewhere).
    fn new(tokens_per_image: usize) -> Self {
        let sample = |prefix: &[i64], suffix: &[i64]| {
            let mut ids = prefix.to_vec();
            ids.extend(std::iter::repeat_n(IMAGE, tokens_per_image));
            let image_end = ids.len();
            ids.extend_from_slice(suffix);
            let labels: Vec<i64> = (0..ids.len())
                .map(|i| if i < image_end { IGNORE_INDEX } else { ids[i] })
                .collect();
            (ids, labels)
        };
        let (ids0, labels0) = sample(&[1, 17, 230, 45], &[101, 7, 399, 12, 88]);
        let (ids1, labels1) = sample(&[1, 64], &[250, 33, 402, 9, 140]);
        let len = ids0.len();
        let pad = len - ids1.len();
        let mut ids = ids0;
        let mut labels = labels0;
        let mut mask = vec![1; len];
        ids.extend(std::iter::repeat_n(0, pad).chain(ids1));
        labels.extend(std::iter::repeat_n(IGNORE_INDEX, pad).chain(labels1));
        mask.extend(std::iter::repeat_n(0, pad).chain(std::iter::repeat_n(1, len - pad)));
        Self {
            ids,
            mask,
            labels,
            len,
        }
    }

    fn int<B: Backend>(&self, values: &[i64]) -> Tensor<B, 2, Int> {
        let data = TensorData::new(values.to_vec(), [2, self.len]);
        Tensor::from_data(data, &Default::default())
    }

    fn batch<B: Backend>(&self) -> VlmBatch<B> {
        let pixels = WeightStore::open_file(fixture("llava").join("reference.safetensors"))
            .and_then(|r| r.float_any::<TestBackend, 4>("pixel_values", &device()))
            .expect("reference pixels");
        VlmBatch {
            input_ids: self.int(&self.ids),
            attention_mask: Some(self.int(&self.mask)),
            pixel_values: Some(Tensor::from_data(pixels.into_data(), &Default::default())),
        }
    }

    /// The differentiable loss, by the crate's own [`causal_lm_loss`].
    fn loss(&self, model: &QwenVlm<Train>) -> Tensor<Train, 1> {
        let logits = model.forward(self.batch()).expect("forward");
        causal_lm_loss(logits, self.int(&self.labels))
            .expect("loss")
            .loss
    }

    /// The same loss in f64 from the f32 logits of an inner-backend model.
    fn loss_f64(&self, model: &QwenVlm<TestBackend>) -> f64 {
        let logits = model.forward(self.batch()).expect("forward");
        let [_, seq, vocab] = logits.dims();
        let logits = logits.into_data().into_vec::<f32>().expect("f32 logits");
        let (mut total, mut count) = (0.0, 0usize);
        for b in 0..2 {
            for t in 0..seq - 1 {
                let target = self.labels[b * seq + t + 1];
                if target == IGNORE_INDEX {
                    continue;
                }
                let row = &logits[(b * seq + t) * vocab..(b * seq + t + 1) * vocab];
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
                let log_sum = row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
                total += log_sum + max - row[target as usize] as f64;
                count += 1;
            }
        }
        total / count as f64
    }
}

/// Checks the parameters under `wanted` of `model` and returns how many tensors it checked.
fn check(name: &str, model: &QwenVlm<Train>, inputs: &Inputs, wanted: &[&str]) -> usize {
    let grads = inputs.loss(model).backward();
    let params = param_gradients(model, &grads, wanted);
    let inner = model.valid();
    let mut check = GradCheck::new(EPS);
    for ParamGradient { path, id, grad } in &params {
        let Some(grad) = grad else {
            check.fail(format!("{path}: no gradient"));
            continue;
        };
        for index in pick_entries(grad, PER_TENSOR) {
            let what = format!("{name} {path}[{index}]");
            check.compare(path, &what, grad[index], |delta| {
                let mut perturb = Perturb {
                    id: *id,
                    index,
                    delta,
                };
                inputs.loss_f64(&inner.clone().map(&mut perturb))
            });
        }
    }
    check.assert_passed(name);
    params.len()
}

const LANGUAGE_MODEL: [&str; 3] = [
    "language_model.model.embed_tokens",
    "language_model.model.layers.0.self_attn",
    "language_model.model.layers.1.input_layernorm",
];

#[test]
fn llava_mlp_projector_and_language_model_gradients_match_finite_differences() {
    let model = load_llava_hf::<Train>(fixture("llava"), &device()).expect("load llava");
    let inputs = Inputs::new(model.tokens_per_image());
    let mut wanted = vec!["projector"];
    wanted.extend(LANGUAGE_MODEL);
    let checked = check("llava", &model, &inputs, &wanted);
    // linear_1, linear_2 (weight, bias); embeddings; q, k, v (weight, bias) and o; one norm.
    assert_eq!(checked, 4 + 1 + 7 + 1, "parameters checked");
}

#[test]
fn pixel_shuffle_projector_gradients_match_finite_differences() {
    let llava = load_llava_hf::<Train>(fixture("llava"), &device()).expect("load llava");
    let projector = PixelShuffleProjector::new(32, 48, 2, &device()).expect("projector");
    let model = VisionLanguageModel::new(
        llava.vision().clone(),
        AnyProjector::PixelShuffle(projector),
        llava.language_model().clone(),
        IMAGE as u32,
    )
    .expect("assemble");
    assert_eq!(model.tokens_per_image(), 4, "16 patches, 2 x 2 merged");
    let inputs = Inputs::new(model.tokens_per_image());
    let checked = check("pixel shuffle", &model, &inputs, &["projector"]);
    assert_eq!(checked, 1, "the projector's one weight");
}
