//! The chunked loss ([`chunked_causal_lm_loss`], what `forward_loss` trains with) against the
//! full form ([`causal_lm_loss`] of the whole `[batch, seq, vocab]` logits): the same value
//! and the same gradient for every trained parameter, with chunks of one position, of sizes
//! that do not divide the number of targets and of all of them; tied and untied heads; full
//! training (the head trained too) and LoRA + projector training; left padding and ignored
//! labels; bf16 hidden states.

use burn::backend::Autodiff;
use burn::module::Module;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use vlm_data::IGNORE_INDEX;
use vlm_hf::{Precision, WeightStore};
use vlm_lora::{LoraConfig, TargetModules};
use vlm_model::{
    causal_lm_loss, chunked_causal_lm_loss, load_llava_hf, loss_chunk_rows, CausalLmLoss,
    LanguageModel, QwenVlm, VisionLanguageModel, VlmBatch,
};
use vlm_qwen::{position_ids_from_mask, QwenModel};
use vlm_testkit::gradcheck::{param_gradients, ParamGradient};
use vlm_testkit::{device, fixture, TestBackend};

type Train = Autodiff<TestBackend>;

/// Largest relative loss difference: the two forms sum the same f32 terms in another order
/// (measured: 0 or 7.5e-8).
const LOSS_REL_TOL: f64 = 1e-6;
/// Largest gradient difference, relative to the largest |gradient| of the parameter: the
/// chunked form multiplies `(softmax - one_hot) / n` by the head in per-chunk and
/// per-vocabulary-block products, the full form in one (measured: 2.9e-7 to 1.8e-6, printed
/// with `--nocapture`).
const GRAD_REL_TOL: f32 = 1e-5;

/// Ids `[2, 12]`, left padding of 3 in the second sample, and labels with ignored prompt
/// positions: 12 targets, 3 of them in the second sample.
struct TextBatch {
    ids: Vec<i64>,
    mask: Vec<i64>,
    labels: Vec<i64>,
}

const LEN: usize = 12;

impl TextBatch {
    fn new() -> Self {
        let ids0 = [5, 17, 230, 45, 101, 7, 399, 12, 88, 3, 140, 64];
        let ids1 = [0, 0, 0, 9, 33, 402, 250, 11, 77, 300, 21, 8];
        let ignore = IGNORE_INDEX;
        let labels0 = [ignore, ignore, ignore, 45, 101, 7, 399, 12, 88, 3, 140, 64];
        let labels1 = [
            ignore, ignore, ignore, ignore, ignore, ignore, ignore, ignore, ignore, 300, 21, 8,
        ];
        Self {
            ids: [ids0, ids1].concat(),
            mask: [[1; LEN], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]].concat(),
            labels: [labels0, labels1].concat(),
        }
    }

    fn int(values: &[i64]) -> Tensor<Train, 2, Int> {
        Tensor::from_data(TensorData::new(values.to_vec(), [2, LEN]), &device())
    }

    fn labels(&self) -> Tensor<Train, 2, Int> {
        Self::int(&self.labels)
    }

    /// The last hidden state of `model` on these ids.
    fn hidden(&self, model: &QwenModel<Train>) -> Tensor<Train, 3> {
        let mask = Self::int(&self.mask);
        let embeds = model.embed(Self::int(&self.ids)).expect("embed");
        let positions = position_ids_from_mask(mask.clone());
        model
            .forward_hidden(embeds, Some(mask), Some(positions), None)
            .expect("forward")
    }
}

/// The loss value and the gradients of every parameter of `model` after its backward pass.
fn run<M: Module<Train>>(model: &M, loss: CausalLmLoss<Train>) -> (f64, Vec<ParamGradient>) {
    let value = f64::from(loss.loss.clone().into_scalar());
    let grads = loss.loss.backward();
    (value, param_gradients(model, &grads, &[]))
}

/// Asserts that `chunked` matches `full` (value, and gradients parameter by parameter) and
/// returns the largest relative gradient difference; parameters whose path contains one of `trained`
/// must have a gradient.
fn assert_same(
    what: &str,
    full: &(f64, Vec<ParamGradient>),
    chunked: &(f64, Vec<ParamGradient>),
    trained: &[&str],
    grad_rel_tol: f32,
) -> f32 {
    let (full_loss, full_grads) = full;
    let (loss, grads) = chunked;
    let loss_diff = (loss - full_loss).abs() / full_loss.abs();
    assert!(
        loss_diff <= LOSS_REL_TOL,
        "{what}: loss {loss} vs {full_loss} (relative {loss_diff:e})"
    );
    let mut worst = 0.0f32;
    for (expected, actual) in full_grads.iter().zip(grads) {
        let path = &expected.path;
        match (&expected.grad, &actual.grad) {
            (None, None) => assert!(
                !trained.iter().any(|p| path.contains(p)),
                "{what}: {path} got no gradient"
            ),
            (Some(expected), Some(actual)) => {
                let scale = expected.iter().fold(0.0f32, |m, g| m.max(g.abs()));
                let diff = expected
                    .iter()
                    .zip(actual)
                    .fold(0.0f32, |m, (e, a)| m.max((e - a).abs()));
                let relative = if scale > 0.0 { diff / scale } else { diff };
                assert!(
                    relative <= grad_rel_tol,
                    "{what}: {path} gradient differs by {diff:e} (relative {relative:e})"
                );
                worst = worst.max(relative);
            }
            (expected, _) => panic!(
                "{what}: {path} has a gradient in {} form only",
                if expected.is_some() {
                    "the full"
                } else {
                    "the chunked"
                }
            ),
        }
    }
    eprintln!("{what}: loss relative diff {loss_diff:e}, gradients {worst:e} (relative)");
    worst
}

/// Chunk sizes for `n` targets: one position, two that do not divide `n`, all of them, and
/// the default.
fn chunk_sizes(n: usize, vocab: usize) -> [usize; 5] {
    [1, 5, 7, n, loss_chunk_rows(vocab)]
}

/// A whole language model (every parameter trained, the head too) on the text batch.
fn check_language_model(name: &str) {
    let model = QwenModel::<Train>::load(fixture(name), &device()).expect("load");
    let batch = TextBatch::new();
    let full = run(
        &model,
        causal_lm_loss(model.logits(batch.hidden(&model)), batch.labels()).expect("loss"),
    );
    let head = if model.lm_head.is_some() {
        "lm_head"
    } else {
        "model.embed_tokens"
    };
    for rows in chunk_sizes(12, model.config().vocab_size) {
        let loss =
            chunked_causal_lm_loss(batch.hidden(&model), &model.lm_head(), batch.labels(), rows)
                .expect("chunked loss");
        assert_eq!(loss.supervised_tokens, 12);
        let what = format!("{name}, {rows} positions per chunk");
        assert_same(
            &what,
            &full,
            &run(&model, loss),
            &[head, "model.layers"],
            GRAD_REL_TOL,
        );
    }
}

#[test]
fn a_tied_head_trains_as_with_full_logits() {
    check_language_model("qwen2_tied");
}

#[test]
fn an_untied_head_trains_as_with_full_logits() {
    check_language_model("qwen2_untied");
}

/// The llava fixture's reference batch (two samples, padding, an image each, 8 targets).
fn llava_batch() -> (VlmBatch<Train>, Tensor<Train, 2, Int>) {
    let reference =
        WeightStore::open_file(fixture("llava").join("reference.safetensors")).expect("reference");
    let int = |key| reference.int::<Train, 2>(key, &device()).expect(key);
    let pixels = reference
        .float_any::<Train, 4>("pixel_values", &device())
        .expect("pixels");
    let batch = VlmBatch {
        input_ids: int("input_ids"),
        attention_mask: Some(int("attention_mask")),
        pixel_values: Some(pixels),
    };
    (batch, int("labels"))
}

/// `forward_loss` against the full form on `model`, and the chunked loss at several sizes.
fn check_vlm(what: &str, model: &QwenVlm<Train>, trained: &[&str]) {
    let (batch, labels) = llava_batch();
    let logits = model.forward(batch.clone()).expect("forward");
    let full = run(model, causal_lm_loss(logits, labels.clone()).expect("loss"));
    let loss = model
        .forward_loss(batch.clone(), labels.clone())
        .expect("loss");
    assert_eq!(loss.supervised_tokens, 8);
    assert_same(
        &format!("{what} forward_loss"),
        &full,
        &run(model, loss),
        trained,
        GRAD_REL_TOL,
    );
    let vocab = model.language_model().vocab_size();
    for rows in chunk_sizes(8, vocab) {
        let hidden = model.last_hidden_state(batch.clone()).expect("hidden");
        let head = model.language_model().lm_head();
        let loss = chunked_causal_lm_loss(hidden, &head, labels.clone(), rows).expect("loss");
        let what = format!("{what}, {rows} positions per chunk");
        assert_same(&what, &full, &run(model, loss), trained, GRAD_REL_TOL);
    }
}

#[test]
fn a_whole_vlm_trains_as_with_full_logits() {
    let model = load_llava_hf::<Train>(fixture("llava"), &device()).expect("load");
    let trained = ["projector", "language_model.model.embed_tokens"];
    check_vlm("llava, everything trained", &model, &trained);
}

#[test]
fn lora_and_the_projector_train_as_with_full_logits() {
    let llava = load_llava_hf::<Train>(fixture("llava"), &device()).expect("load");
    let targets = TargetModules::names(["q_proj", "v_proj", "down_proj"]);
    let lora = LoraConfig::new(4, 8.0, targets);
    let llm = vlm_lora::apply(llava.language_model().clone().no_grad(), &lora).expect("lora");
    let model = VisionLanguageModel::new(
        llava.vision().clone().no_grad(),
        llava.projector().clone(),
        llm,
        llava.image_token_id(),
    )
    .expect("assemble");
    assert!(!model.language_model().lm_head().weight_trained);
    check_vlm("llava, LoRA + projector", &model, &["projector", "lora_b"]);
}

/// Largest gradient difference in bf16, relative to the largest |gradient| of the parameter:
/// one bf16 step (2^-8). Both sides round the same f32 gradient to bf16 where it flows back
/// through the cast to the bf16 hidden states, so they may land one step apart (measured:
/// 1.6e-8, an entry far below the largest).
const BF16_GRAD_REL_TOL: f32 = 1.0 / 256.0;

#[test]
fn bf16_hidden_states_train_through_an_f32_loss() {
    let bf16 = Precision::Bf16
        .on::<Train>(&device())
        .expect("bf16 on the test backend");
    let model = QwenModel::<Train>::load(fixture("qwen2_untied"), bf16).expect("load");
    let batch = TextBatch::new();
    assert_eq!(batch.hidden(&model).dtype(), DType::BF16);
    // The reference: the full form of the f32 logits of the same bf16 hidden states and head.
    let hidden = batch.hidden(&model).cast(FloatDType::F32);
    let [b, s, width] = hidden.dims();
    let weight = model.lm_head().weight.cast(FloatDType::F32);
    let logits = hidden
        .reshape([b * s, width])
        .matmul(weight)
        .reshape([b, s, 448]);
    let full = run(
        &model,
        causal_lm_loss(logits, batch.labels()).expect("loss"),
    );
    for rows in [5, loss_chunk_rows(448)] {
        let loss =
            chunked_causal_lm_loss(batch.hidden(&model), &model.lm_head(), batch.labels(), rows)
                .expect("chunked loss");
        let what = format!("qwen2_untied bf16, {rows} positions per chunk");
        let chunked = run(&model, loss);
        assert_same(
            &what,
            &full,
            &chunked,
            &["lm_head", "model.layers"],
            BF16_GRAD_REL_TOL,
        );
    }
}
