//! bf16 inference against transformers in bf16 (`data/fixtures/bf16`, written by
//! `tools/reference/bf16_fixture.py`): the Qwen2 language model, the whole llava VLM and
//! greedy generation, each loaded with [`Precision::Bf16`] from the committed f32 fixtures
//! (the weights rounded once to bf16, as `from_pretrained(dtype=torch.bfloat16)` does).

mod common;

use burn::tensor::{DType, Int, Tensor};
use common::{masked_max_diff, Llava};
use vlm_hf::{Precision, WeightStore};
use vlm_model::{load_llava_hf, VisionLanguageModel};
use vlm_qwen::{GenerationConfig, QwenModel};
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};

/// The largest |logit difference| to transformers bf16 that passes, on logits of magnitude
/// up to 3. Both sides round every matmul output and activation to bf16 (8 bits of
/// mantissa, a relative step of 2^-8 = 0.0039) but in different places (Burn's CPU backend
/// multiplies bf16 in f32 and rounds once per product; torch rounds inside its blocked
/// kernels and in the attention scores), so the two differ by a few bf16 steps of the
/// largest values; transformers' own bf16 logits differ from its f32 ones by 0.042 on
/// these fixtures. Measured: see BENCHMARKS.md, "Half precision".
const BF16_TOL: f32 = 0.0625;

fn bf16_reference() -> WeightStore {
    WeightStore::open_file(fixture("bf16").join("reference.safetensors")).expect("bf16 reference")
}

fn in_bf16() -> burn::tensor::TensorCreationOptions<TestBackend> {
    Precision::Bf16
        .on::<TestBackend>(&device())
        .expect("the test backend computes in bf16")
}

/// `logits` (any float type) against the f32 tensor `key` of `reference`, where `mask` is 1.
fn logits_diff(
    logits: Tensor<TestBackend, 3>,
    reference: &WeightStore,
    key: &str,
    mask: &Tensor<TestBackend, 2, Int>,
) -> f32 {
    let expected = reference.float_any(key, &device()).expect(key);
    masked_max_diff(&logits.cast(DType::F32), &expected, mask)
}

#[test]
fn qwen_logits_match_transformers_in_bf16() {
    let model = QwenModel::<TestBackend>::load(fixture("qwen2_tied"), in_bf16()).expect("load");
    assert_eq!(model.model.embed_tokens.weight.val().dtype(), DType::BF16);
    let inputs = common::reference("qwen2_tied");
    let int = |key| inputs.int::<TestBackend, 2>(key, &device()).expect(key);
    let mask = int("attention_mask");
    let logits = model
        .forward(
            int("input_ids"),
            Some(mask.clone()),
            Some(int("position_ids")),
            None,
        )
        .expect("forward");
    assert_eq!(logits.dtype(), DType::BF16);
    let to_f32 = logits_diff(logits.clone(), &inputs, "logits", &mask);
    let diff = logits_diff(logits, &bf16_reference(), "qwen2_tied.logits", &mask);
    eprintln!("qwen2_tied bf16 logits: {diff:e} to transformers bf16, {to_f32:e} to its f32");
    assert!(diff <= BF16_TOL, "bf16 logits differ by {diff:e}");
}

#[test]
fn llava_logits_match_transformers_in_bf16() {
    let model = load_llava_hf::<TestBackend>(fixture("llava"), in_bf16()).expect("load");
    let f32_run = Llava::load("llava");
    let reference = bf16_reference();
    let features = model
        .image_features(f32_run.float("pixel_values"))
        .expect("image features");
    assert_eq!(features.dtype(), DType::BF16);
    let expected = reference
        .float_any("llava.image_features", &device())
        .expect("features");
    let features_diff = max_abs_diff(&features.cast(DType::F32), &expected);
    let logits = VisionLanguageModel::forward(&model, f32_run.batch()).expect("forward");
    let mask = f32_run.ids("attention_mask");
    let diff = logits_diff(logits, &reference, "llava.logits", &mask);
    eprintln!("llava bf16: image_features {features_diff:e}, logits {diff:e}");
    assert!(
        features_diff <= BF16_TOL,
        "image features differ by {features_diff:e}"
    );
    assert!(diff <= BF16_TOL, "bf16 logits differ by {diff:e}");
}

#[test]
fn greedy_generation_is_token_identical_to_transformers_in_bf16() {
    let model = QwenModel::<TestBackend>::load(fixture("qwen2_tied"), in_bf16()).expect("load");
    let prompt = common::reference("generation");
    let expected = bf16_reference();
    let int = |store: &WeightStore, key: &str| {
        let tensor = store.int::<TestBackend, 2>(key, &device()).expect(key);
        common::rows(&tensor)
    };
    let scalar = |key: &str| int_scalar(&prompt, key);
    let ids = prompt
        .int::<TestBackend, 2>("input_ids", &device())
        .expect("ids");
    let mask = prompt
        .int::<TestBackend, 2>("attention_mask", &device())
        .expect("mask");
    let prompt_len = ids.dims()[1];
    for (stop, key) in [
        (true, "generation.output_ids"),
        (false, "generation.output_ids_no_eos"),
    ] {
        let config = GenerationConfig {
            stop_token_ids: if stop {
                vec![scalar("eos_token_id")]
            } else {
                Vec::new()
            },
            pad_token_id: scalar("pad_token_id"),
            ..GenerationConfig::greedy(scalar("max_new_tokens") as usize)
        };
        let generated = model
            .generate(ids.clone(), Some(mask.clone()), &config, |_| {})
            .expect("generate");
        let new_tokens: Vec<Vec<u32>> = int(&expected, key)
            .iter()
            .map(|row| row[prompt_len..].iter().map(|&id| id as u32).collect())
            .collect();
        assert_eq!(generated, new_tokens, "{key}");
    }
}

/// The one value of the `[1]` int tensor `key`.
fn int_scalar(store: &WeightStore, key: &str) -> u32 {
    let tensor = store.int::<TestBackend, 1>(key, &device()).expect(key);
    tensor.to_data().iter::<i64>().next().expect(key) as u32
}

#[test]
fn bf16_weights_load_bit_exact_and_f16_runs() {
    // A checkpoint stored in bf16 keeps its exact bits (no f32 on the way) ...
    let dir = fixture("qwen2_bf16_sharded");
    let store = WeightStore::open_dir(&dir).expect("store");
    let key = "model.embed_tokens.weight";
    let shape: [usize; 2] = store
        .info(key)
        .expect("info")
        .shape
        .try_into()
        .expect("2-D");
    let stored = store
        .float::<TestBackend, 2>(key, shape, in_bf16())
        .expect("bf16");
    let widened = store
        .float::<TestBackend, 2>(key, shape, &device())
        .expect("f32");
    assert_eq!(stored.dtype(), DType::BF16);
    assert_eq!(widened.dtype(), DType::F32);
    assert_eq!(stored.cast(DType::F32).into_data(), widened.into_data());
    // ... and the same model also runs in f16, close to its f32 run.
    let f16 = Precision::F16.on::<TestBackend>(&device()).expect("f16");
    let half = QwenModel::<TestBackend>::load(&dir, f16).expect("load f16");
    let full = QwenModel::<TestBackend>::load(&dir, &device()).expect("load f32");
    let ids = Tensor::<TestBackend, 2, Int>::from_data([[1, 5, 9, 3, 7]], &device());
    let half_logits = half
        .forward(ids.clone(), None, None, None)
        .expect("f16 forward");
    assert_eq!(half_logits.dtype(), DType::F16);
    let full_logits = full.forward(ids, None, None, None).expect("f32 forward");
    let diff = max_abs_diff(&half_logits.cast(DType::F32), &full_logits);
    eprintln!("qwen2_bf16_sharded f16 vs f32 logits: {diff:e}");
    assert!(diff <= BF16_TOL, "f16 logits differ from f32 by {diff:e}");
}
