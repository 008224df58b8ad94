//! Autodiff gradients of the SigLIP vision tower against central finite differences.
//!
//! The forward pass is checked against transformers elsewhere (`siglip.rs`); this checks the
//! BACKWARD pass, which training the tower (`train_vision`) relies on and which no reference
//! fixture covers. Towers load frozen, so the test first makes every parameter require a
//! gradient. The loss is a fixed pseudo-random projection of `last_hidden_state` (which goes
//! through every layer and `post_layernorm`) of the `siglip_vision` fixture's two reference
//! images. For a few entries of EVERY parameter tensor (the largest autodiff gradients plus
//! one further entry) and of the pixels; the key biases, whose exact gradient is zero, must
//! get a (near) zero one, the autodiff gradient must match
//! `(L(w + eps) - L(w - eps)) / (2 eps)`, the loss being evaluated in f64 on the host from
//! the f32 outputs of two perturbed copies of the tower.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleMapper, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use vlm_hf::WeightStore;
use vlm_testkit::gradcheck::{
    param_gradients, pick_entries, GradCheck, ParamGradient, Perturb, FLOOR,
};
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{FeatureSelection, SelectStrategy, SiglipVisionTower};

type Train = Autodiff<TestBackend>;

/// Half-width of the central difference (smaller ones drown in f32 round-off here).
const EPS: f32 = 1e-2;
/// Largest |autodiff gradient| accepted where the exact gradient is 0 (f32 round-off).
const ZERO_GRAD: f32 = 1e-6;
/// Entries checked per parameter tensor.
const PER_TENSOR: usize = 4;

fn pixels() -> Tensor<TestBackend, 4> {
    WeightStore::open_file(fixture("siglip_vision").join("reference.safetensors"))
        .and_then(|r| r.float_any::<TestBackend, 4>("pixel_values", &device()))
        .expect("reference pixels")
}

/// The fixed projection weights, in `[-1, 1)`, one per output element.
fn projection(len: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn output<B: Backend>(tower: &SiglipVisionTower<B>, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
    tower.outputs(pixels).expect("forward").last_hidden_state
}

fn loss_tensor(tower: &SiglipVisionTower<Train>, pixels: Tensor<Train, 4>) -> Tensor<Train, 1> {
    let out = output(tower, pixels);
    let dims = out.dims();
    let weights = projection(dims.iter().product());
    (out * Tensor::from_data(TensorData::new(weights, dims), &device())).sum()
}

fn loss_f64(tower: &SiglipVisionTower<TestBackend>, pixels: Tensor<TestBackend, 4>) -> f64 {
    let out = output(tower, pixels)
        .into_data()
        .into_vec::<f32>()
        .expect("f32 output");
    let weights = projection(out.len());
    out.iter()
        .zip(&weights)
        .map(|(&x, &w)| x as f64 * w as f64)
        .sum()
}

/// Makes every parameter trainable.
struct Unfreeze;

impl<B: Backend> ModuleMapper<B> for Unfreeze {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(true)
    }
}

/// The parameter kind of a path: layer indices dropped, e.g. `encoder.layers.fc1.weight`.
fn kind(path: &str) -> String {
    path.split('.')
        .filter(|part| part.parse::<usize>().is_err())
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn siglip_tower_gradients_match_finite_differences() {
    let selection = FeatureSelection {
        layer: -1,
        strategy: SelectStrategy::Full,
    };
    let tower = SiglipVisionTower::<Train>::load(fixture("siglip_vision"), selection, &device())
        .expect("load")
        .map(&mut Unfreeze);
    let pixels = pixels();
    let tracked = Tensor::<Train, 4>::from_inner(pixels.clone()).require_grad();
    let grads = loss_tensor(&tower, tracked.clone()).backward();
    let params = param_gradients(&tower, &grads, &[]);
    let inner = tower.valid();

    let at = |id: ParamId, index: usize, delta: f32| {
        let mut perturb = Perturb { id, index, delta };
        loss_f64(&inner.clone().map(&mut perturb), pixels.clone())
    };
    let mut check = GradCheck::new(EPS);
    for ParamGradient { path, id, grad } in &params {
        let Some(grad) = grad else {
            check.fail(format!("{path}: no gradient"));
            continue;
        };
        let kind = kind(path);
        if kind.ends_with("self_attn.k_proj.bias") {
            // Without RoPE a key bias adds `q . b` to every score of a query alike, which the
            // softmax cancels: its gradient is exactly zero, and must come out (near) zero.
            let largest = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            let fd = check.central_difference(|delta| at(*id, 0, delta));
            eprintln!("{path}: max |autodiff| {largest:e} (exactly 0 in theory), fd[0] {fd:+e}");
            if largest > ZERO_GRAD || fd.abs() > FLOOR {
                check.fail(format!(
                    "{path}: gradient {largest:e} / fd {fd:e} should be 0"
                ));
            }
            continue;
        }
        for index in pick_entries(grad, PER_TENSOR) {
            check.compare(&kind, &format!("{path}[{index}]"), grad[index], |delta| {
                at(*id, index, delta)
            });
        }
    }

    let pixel_grad = tracked
        .grad(&grads)
        .expect("gradient of the pixels")
        .into_data()
        .into_vec::<f32>()
        .expect("f32 gradient");
    let values = pixels.to_data().into_vec::<f32>().expect("f32 pixels");
    let dims = pixels.dims();
    for index in pick_entries(&pixel_grad, PER_TENSOR) {
        check.compare(
            "pixels",
            &format!("pixels[{index}]"),
            pixel_grad[index],
            |delta| {
                let mut perturbed = values.clone();
                perturbed[index] += delta;
                loss_f64(
                    &inner,
                    Tensor::from_data(TensorData::new(perturbed, dims), &device()),
                )
            },
        );
    }

    let kinds = check.kinds();
    assert!(
        kinds.len() >= 12,
        "too few parameter kinds checked: {kinds:?}"
    );
    check.assert_passed("siglip tower");
}
