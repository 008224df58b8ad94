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

use std::collections::HashMap;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use vlm_hf::WeightStore;
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{FeatureSelection, SelectStrategy, SiglipVisionTower};

type Train = Autodiff<TestBackend>;
type Gradients = <Train as AutodiffBackend>::Gradients;

/// Half-width of the central difference (smaller ones drown in f32 round-off here).
const EPS: f32 = 1e-2;
/// Allowed `|autodiff - fd| / max(|fd|, FLOOR)`: f32 forward passes, a smooth loss.
const REL_TOL: f64 = 2e-2;
const FLOOR: f64 = 1e-3;
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

/// Every float parameter: its module path, id and gradient (flat, row-major).
struct Collect<'a> {
    grads: &'a Gradients,
    stack: Vec<String>,
    params: Vec<(String, ParamId, Option<Vec<f32>>)>,
}

impl ModuleVisitor<Train> for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
        let grad = param
            .val()
            .grad(self.grads)
            .map(|g| g.into_data().into_vec::<f32>().expect("f32 gradient"));
        self.params.push((self.stack.join("."), param.id, grad));
    }
}

/// Adds `delta` to element `index` (row-major) of the parameter `id`.
struct Perturb {
    id: ParamId,
    index: usize,
    delta: f32,
}

impl ModuleMapper<TestBackend> for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<TestBackend, D>>,
    ) -> Param<Tensor<TestBackend, D>> {
        if param.id != self.id {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let mut values = tensor.into_data().into_vec::<f32>().expect("f32 weights");
        values[self.index] += self.delta;
        let tensor = Tensor::from_data(TensorData::new(values, shape), &device());
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// The parameter kind of a path: layer indices dropped, e.g. `encoder.layers.fc1.weight`.
fn kind(path: &str) -> String {
    path.split('.')
        .filter(|part| part.parse::<usize>().is_err())
        .collect::<Vec<_>>()
        .join(".")
}

/// Indices to check: the `PER_TENSOR - 1` largest |gradients| and the entry nearest half the
/// largest.
fn pick(grad: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..grad.len()).collect();
    order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    let mut picked: Vec<usize> = order.iter().copied().take(PER_TENSOR - 1).collect();
    let half = grad[order[0]].abs() / 2.0;
    let distance = |i: usize| (grad[i].abs() - half).abs();
    if let Some(&mid) = order
        .iter()
        .skip(PER_TENSOR - 1)
        .min_by(|&&a, &&b| distance(a).total_cmp(&distance(b)))
    {
        picked.push(mid);
    }
    picked
}

/// `(loss(EPS) - loss(-EPS)) / (2 EPS)`.
fn central_difference(loss: impl Fn(f32) -> f64) -> f64 {
    (loss(EPS) - loss(-EPS)) / (2.0 * EPS as f64)
}

/// Central difference of `loss`, compared with `auto`; returns the relative error.
fn compare(what: &str, auto: f32, loss: impl Fn(f32) -> f64) -> f64 {
    let fd = central_difference(loss);
    let auto = auto as f64;
    let rel = (auto - fd).abs() / fd.abs().max(FLOOR);
    eprintln!("{what}: autodiff {auto:+.6e}  fd {fd:+.6e}  rel {rel:.2e}");
    rel
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
    let mut collect = Collect {
        grads: &grads,
        stack: Vec::new(),
        params: Vec::new(),
    };
    tower.visit(&mut collect);
    let inner = tower.valid();

    let mut worst: Vec<(String, f64)> = Vec::new();
    let mut failures = Vec::new();
    for (path, id, grad) in &collect.params {
        let Some(grad) = grad else {
            failures.push(format!("{path}: no gradient"));
            continue;
        };
        let kind = kind(path);
        if kind.ends_with("self_attn.k_proj.bias") {
            // Without RoPE a key bias adds `q . b` to every score of a query alike, which the
            // softmax cancels: its gradient is exactly zero, and must come out (near) zero.
            let largest = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            let fd = central_difference(|delta| {
                let mut perturb = Perturb {
                    id: *id,
                    index: 0,
                    delta,
                };
                loss_f64(&inner.clone().map(&mut perturb), pixels.clone())
            });
            eprintln!("{path}: max |autodiff| {largest:e} (exactly 0 in theory), fd[0] {fd:+e}");
            if largest > ZERO_GRAD || fd.abs() > FLOOR {
                failures.push(format!(
                    "{path}: gradient {largest:e} / fd {fd:e} should be 0"
                ));
            }
            continue;
        }
        for index in pick(grad) {
            let rel = compare(&format!("{path}[{index}]"), grad[index], |delta| {
                let mut perturb = Perturb {
                    id: *id,
                    index,
                    delta,
                };
                loss_f64(&inner.clone().map(&mut perturb), pixels.clone())
            });
            match worst.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, w)) => *w = w.max(rel),
                None => worst.push((kind.clone(), rel)),
            }
            if rel > REL_TOL {
                failures.push(format!("{path}[{index}]: relative error {rel:e}"));
            }
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
    for index in pick(&pixel_grad) {
        let rel = compare(&format!("pixels[{index}]"), pixel_grad[index], |delta| {
            let mut perturbed = values.clone();
            perturbed[index] += delta;
            loss_f64(
                &inner,
                Tensor::from_data(TensorData::new(perturbed, dims), &device()),
            )
        });
        match worst.iter_mut().find(|(k, _)| k == "pixels") {
            Some((_, w)) => *w = w.max(rel),
            None => worst.push(("pixels".to_string(), rel)),
        }
        if rel > REL_TOL {
            failures.push(format!("pixels[{index}]: relative error {rel:e}"));
        }
    }

    eprintln!("max relative error per parameter kind:");
    for (kind, rel) in &worst {
        eprintln!("  {kind:40} {rel:.2e}");
    }
    let kinds: HashMap<&str, ()> = worst.iter().map(|(k, _)| (k.as_str(), ())).collect();
    assert!(
        kinds.len() >= 12,
        "too few parameter kinds checked: {:?}",
        kinds.keys()
    );
    assert!(
        failures.is_empty(),
        "wrong gradients:\n{}",
        failures.join("\n")
    );
}
