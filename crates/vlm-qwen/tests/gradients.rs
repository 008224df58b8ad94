//! Autodiff gradients of the whole Qwen2 decoder against central finite differences.
//!
//! The forward passes are checked against Hugging Face elsewhere (`logits.rs`); this checks
//! the BACKWARD pass, which training relies on and which no reference fixture covers. A model
//! whose query/key path (q/k projections, RoPE, the additive mask bias, the grouped-query
//! reshapes, softmax, RMSNorm) had a wrong or vanishing gradient would still match every
//! forward fixture, yet attention could never learn to be selective.
//!
//! For the tiny `qwen2_tied` fixture (2 layers, 4 query heads over 2 key/value heads, q/k/v
//! biases, tied LM head) on a batch of 2 with left padding in one row, the loss is the
//! next-token cross-entropy over the real tokens. For a few entries of EVERY parameter
//! tensor (the largest autodiff gradients plus one further entry with a sizeable gradient),
//! the autodiff gradient must match `(L(w + eps) - L(w - eps)) / (2 eps)`, the loss being
//! evaluated in f64 on the host from the f32 logits of two perturbed copies of the model.
//! The gradient with respect to the input embeddings (the path of a VLM's image features) is
//! checked the same way, and must be exactly zero at the padding positions.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use vlm_qwen::QwenModel;
use vlm_testkit::gradcheck::{param_gradients, pick_entries, GradCheck, ParamGradient, Perturb};
use vlm_testkit::{device, fixture, TestBackend};

type Train = Autodiff<TestBackend>;

/// Half-width of the central difference (the fixture's weights are ~0.02 in size).
const EPS: f32 = 5e-3;
/// Entries checked per parameter tensor.
const PER_TENSOR: usize = 4;

/// Batch of 2, length 8; row 1 is left-padded by 3 (pad id 0, mask 0).
const SEQ: usize = 8;
const PAD: usize = 3;

fn inputs() -> (Vec<i64>, Vec<i64>) {
    let ids: Vec<i64> = (0..2 * SEQ as i64)
        .map(|i| (i * 197 + 31) % 509 + 3)
        .collect();
    let mut ids = ids;
    let mut mask = vec![1i64; 2 * SEQ];
    for t in 0..PAD {
        ids[SEQ + t] = 0;
        mask[SEQ + t] = 0;
    }
    (ids, mask)
}

/// `(row, position, target)` of every next-token prediction between two real tokens.
fn targets(ids: &[i64], mask: &[i64]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for b in 0..2 {
        for t in 0..SEQ - 1 {
            let (here, next) = (b * SEQ + t, b * SEQ + t + 1);
            if mask[here] == 1 && mask[next] == 1 {
                out.push((b, t, ids[next] as usize));
            }
        }
    }
    out
}

/// Logits `[2, SEQ, vocab]` of `model` on the fixed inputs, from the token ids or, when given,
/// from input embeddings `[2, SEQ, hidden]` in their place.
fn logits<B: Backend>(model: &QwenModel<B>, embeds: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
    let (ids, mask) = inputs();
    let dev = Default::default();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [2, SEQ]), &dev);
    let mask = Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [2, SEQ]), &dev);
    match embeds {
        Some(embeds) => model.forward_embeds(embeds, Some(mask), None, None),
        None => model.forward(ids, Some(mask), None, None),
    }
    .expect("forward")
}

/// Mean next-token cross-entropy as a differentiable tensor.
fn loss_tensor(model: &QwenModel<Train>, embeds: Option<Tensor<Train, 3>>) -> Tensor<Train, 1> {
    let (ids, mask) = inputs();
    let targets = targets(&ids, &mask);
    let vocab = model.config().vocab_size;
    let mut weights = vec![0.0f32; 2 * SEQ * vocab];
    for &(b, t, target) in &targets {
        weights[(b * SEQ + t) * vocab + target] = -1.0 / targets.len() as f32;
    }
    let weights =
        Tensor::<Train, 3>::from_data(TensorData::new(weights, [2, SEQ, vocab]), &device());
    (log_softmax(logits(model, embeds), 2) * weights).sum()
}

/// The same loss in f64 from the f32 logits of an inner-backend model.
fn loss_f64(model: &QwenModel<TestBackend>, embeds: Option<Tensor<TestBackend, 3>>) -> f64 {
    let (ids, mask) = inputs();
    let vocab = model.config().vocab_size;
    let logits = logits(model, embeds)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 logits");
    let targets = targets(&ids, &mask);
    let mut total = 0.0;
    for &(b, t, target) in &targets {
        let row = &logits[(b * SEQ + t) * vocab..(b * SEQ + t + 1) * vocab];
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let log_sum = row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        total += log_sum - row[target] as f64;
    }
    total / targets.len() as f64
}

/// The parameter kind of a module path, e.g. `self_attn.qkv.q_proj.base.bias` -> `q_proj.bias`.
fn kind(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let named = |name: &str| parts.contains(&name);
    for module in [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "input_layernorm",
        "post_attention_layernorm",
        "embed_tokens",
    ] {
        if named(module) {
            let last = parts.last().copied().unwrap_or_default();
            return format!("{module}.{last}");
        }
    }
    if named("norm") {
        return "norm (final)".to_string();
    }
    path.to_string()
}

#[test]
fn autodiff_gradients_match_finite_differences_for_every_parameter_kind() {
    let model = QwenModel::<Train>::load(fixture("qwen2_tied"), &device()).expect("load");
    let grads = loss_tensor(&model, None).backward();
    let params = param_gradients(&model, &grads, &[]);
    let inner = model.valid();
    let base_loss = loss_f64(&inner, None);
    eprintln!("loss = {base_loss:.6}");

    let mut check = GradCheck::new(EPS);
    for ParamGradient { path, id, grad } in &params {
        let Some(grad) = grad else {
            check.fail(format!("{path}: no gradient"));
            continue;
        };
        let kind = kind(path);
        for index in pick_entries(grad, PER_TENSOR) {
            check.compare(&kind, &format!("{path}[{index}]"), grad[index], |delta| {
                let mut perturb = Perturb {
                    id: *id,
                    index,
                    delta,
                };
                loss_f64(&inner.clone().map(&mut perturb), None)
            });
        }
    }
    let kinds_seen = check.kinds();
    for expected in [
        "embed_tokens.weight",
        "q_proj.weight",
        "q_proj.bias",
        "k_proj.weight",
        "k_proj.bias",
        "v_proj.weight",
        "o_proj.weight",
        "gate_proj.weight",
        "up_proj.weight",
        "down_proj.weight",
        "input_layernorm.gamma",
        "post_attention_layernorm.gamma",
        "norm (final)",
    ] {
        assert!(
            kinds_seen.contains(&expected),
            "parameter kind {expected} not checked (seen: {kinds_seen:?})"
        );
    }
    check.assert_passed("qwen2");
}

/// The gradient with respect to the input embeddings, the path by which a VLM's projected image
/// features are trained: it must match finite differences, and be exactly zero at the padding
/// positions (blocked as keys, and their queries feed no prediction).
#[test]
fn input_embedding_gradients_match_finite_differences_and_skip_padding() {
    let model = QwenModel::<Train>::load(fixture("qwen2_tied"), &device()).expect("load");
    let inner = model.valid();
    let hidden = model.config().hidden_size;
    let (ids, _) = inputs();
    let ids = Tensor::<TestBackend, 2, Int>::from_data(TensorData::new(ids, [2, SEQ]), &device());
    let embeds = inner.embed(ids).expect("embed");
    let values = embeds.to_data().into_vec::<f32>().expect("f32 embeddings");
    let tracked = Tensor::<Train, 3>::from_data(embeds.to_data(), &device()).require_grad();
    let grads = loss_tensor(&model, Some(tracked.clone())).backward();
    let grad = tracked
        .grad(&grads)
        .expect("gradient of the embeddings")
        .into_data()
        .into_vec::<f32>()
        .expect("f32 gradient");
    let largest = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    assert!(
        largest > 1e-3,
        "embedding gradients vanish: max {largest:e}"
    );
    let padded = grad[SEQ * hidden..(SEQ + PAD) * hidden]
        .iter()
        .fold(0.0f32, |m, g| m.max(g.abs()));
    eprintln!("max |gradient|: {largest:e} overall, {padded:e} at padding positions");
    assert_eq!(padded, 0.0, "padding positions receive a gradient");

    let mut check = GradCheck::new(EPS);
    let mut picked = pick_entries(&grad, PER_TENSOR);
    picked.push(SEQ * hidden + 5); // a padding position: both must be ~0
    for index in picked {
        check.compare(
            "embeds",
            &format!("embeds[{index}]"),
            grad[index],
            |delta| {
                let mut perturbed = values.clone();
                perturbed[index] += delta;
                let perturbed =
                    Tensor::from_data(TensorData::new(perturbed, [2, SEQ, hidden]), &device());
                loss_f64(&inner, Some(perturbed))
            },
        );
    }
    check.assert_passed("input embeddings");
}
