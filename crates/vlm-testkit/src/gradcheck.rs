//! Autodiff gradients against central finite differences.
//!
//! Forward passes are checked against Hugging Face fixtures; backward passes have no
//! reference file, so the model crates check them numerically: perturb one weight entry by
//! `±eps` on the inner backend, evaluate the loss in f64 on the host, and compare
//! `(L(w + eps) - L(w - eps)) / (2 eps)` with the autodiff gradient.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::{device, TestBackend};

/// Allowed `|autodiff - fd| / max(|fd|, FLOOR)`: f32 forward passes, a smooth loss.
pub const REL_TOL: f64 = 2e-2;
/// Below this size a finite difference is compared absolutely (round-off dominates).
pub const FLOOR: f64 = 1e-3;

/// One float parameter of a module: its module path, id and flat row-major gradient, widened
/// to f32 from a half-precision parameter's (`None` when it received none).
#[derive(Debug, Clone)]
pub struct ParamGradient {
    /// Dotted module path, e.g. `layers.0.self_attn.q_proj.weight`.
    pub path: String,
    /// The parameter's id, to perturb it with [`Perturb`].
    pub id: ParamId,
    /// Its gradient.
    pub grad: Option<Vec<f32>>,
}

/// The gradients of `module`'s float parameters whose path starts with one of `prefixes`
/// (every parameter when `prefixes` is empty), in visiting order.
pub fn param_gradients<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &B::Gradients,
    prefixes: &[&str],
) -> Vec<ParamGradient> {
    let mut collect = Collect {
        grads,
        prefixes,
        stack: Vec::new(),
        params: Vec::new(),
    };
    module.visit(&mut collect);
    collect.params
}

struct Collect<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    prefixes: &'a [&'a str],
    stack: Vec<String>,
    params: Vec<ParamGradient>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let path = self.stack.join(".");
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| path.starts_with(p)) {
            return;
        }
        let grad = param
            .val()
            .grad(self.grads)
            .map(|g| g.into_data().iter::<f32>().collect());
        self.params.push(ParamGradient {
            path,
            id: param.id,
            grad,
        });
    }
}

/// Adds `delta` to element `index` (row-major) of the parameter `id`; other parameters pass
/// through unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Perturb {
    /// The parameter.
    pub id: ParamId,
    /// The flat element index.
    pub index: usize,
    /// What is added to it.
    pub delta: f32,
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

/// Entries worth checking: the `count - 1` largest |gradients| and the entry nearest half the
/// largest, so that a vanishing or mis-scaled gradient cannot hide behind the top ones.
pub fn pick_entries(grad: &[f32], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..grad.len()).collect();
    order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    let top = count.saturating_sub(1);
    let mut picked: Vec<usize> = order.iter().copied().take(top).collect();
    let Some(&largest) = order.first() else {
        return picked;
    };
    let half = grad[largest].abs() / 2.0;
    let distance = |i: usize| (grad[i].abs() - half).abs();
    if let Some(&mid) = order
        .iter()
        .skip(top)
        .min_by(|&&a, &&b| distance(a).total_cmp(&distance(b)))
    {
        picked.push(mid);
    }
    picked
}

/// A running comparison: the worst relative error per parameter kind and every failure.
#[derive(Debug)]
pub struct GradCheck {
    eps: f32,
    worst: Vec<(String, f64)>,
    failures: Vec<String>,
}

impl GradCheck {
    /// A check with central differences of half-width `eps`.
    pub fn new(eps: f32) -> Self {
        Self {
            eps,
            worst: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// `(loss(eps) - loss(-eps)) / (2 eps)`, `loss` taking the perturbation.
    pub fn central_difference(&self, loss: impl Fn(f32) -> f64) -> f64 {
        (loss(self.eps) - loss(-self.eps)) / (2.0 * f64::from(self.eps))
    }

    /// Compares the autodiff gradient `auto` of entry `what` (of parameter kind `kind`) with
    /// the central difference of `loss`; records the relative error, and a failure above
    /// [`REL_TOL`]. Returns the relative error.
    pub fn compare(&mut self, kind: &str, what: &str, auto: f32, loss: impl Fn(f32) -> f64) -> f64 {
        let fd = self.central_difference(loss);
        let auto = f64::from(auto);
        let rel = (auto - fd).abs() / fd.abs().max(FLOOR);
        eprintln!("{what}: autodiff {auto:+.6e}  fd {fd:+.6e}  rel {rel:.2e}");
        match self.worst.iter_mut().find(|(k, _)| k == kind) {
            Some((_, worst)) => *worst = worst.max(rel),
            None => self.worst.push((kind.to_string(), rel)),
        }
        if rel > REL_TOL {
            self.fail(format!(
                "{what}: autodiff {auto:e} vs finite difference {fd:e} (rel {rel:e})"
            ));
        }
        rel
    }

    /// Records a failure found another way (e.g. a parameter without a gradient).
    pub fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    /// The parameter kinds compared so far, in first-seen order.
    pub fn kinds(&self) -> Vec<&str> {
        self.worst.iter().map(|(kind, _)| kind.as_str()).collect()
    }

    /// Prints the worst relative error per kind and panics, listing them, if anything failed.
    pub fn assert_passed(&self, name: &str) {
        eprintln!("{name}: max relative error per parameter kind:");
        for (kind, rel) in &self.worst {
            eprintln!("  {kind:40} {rel:.2e}");
        }
        assert!(
            self.failures.is_empty(),
            "{name}: wrong gradients:\n{}",
            self.failures.join("\n")
        );
    }
}
