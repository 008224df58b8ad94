//! Gradient bookkeeping of one optimizer step: the global norm, and scaling (averaging over
//! the accumulated tokens, clipping) while splitting into the optimizer groups.

use std::collections::{BTreeMap, HashMap};

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

use crate::params::ParamGroup;

/// The L2 norm of all the gradients in `grads` together (the global norm that
/// `torch.nn.utils.clip_grad_norm_` clips), times `scale`.
pub(crate) fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
    scale: f64,
) -> f64 {
    let mut squares = SquaredNorms::<B> {
        grads,
        sums: Vec::new(),
    };
    model.visit(&mut squares);
    if squares.sums.is_empty() {
        return 0.0;
    }
    let total: f64 = Tensor::cat(squares.sums, 0).sum().into_scalar().elem();
    total.sqrt() * scale.abs()
}

struct SquaredNorms<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorms<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sums.push(grad.square().sum());
        }
    }
}

/// Moves every gradient of `grads` into its parameter's group, multiplied by `factor`.
pub(crate) fn scale_and_split<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: GradientsParams,
    factor: f64,
    groups: &HashMap<ParamId, ParamGroup>,
) -> BTreeMap<ParamGroup, GradientsParams> {
    let mut split = Split::<B> {
        grads,
        factor,
        groups,
        out: BTreeMap::new(),
        backend: std::marker::PhantomData,
    };
    model.visit(&mut split);
    split.out
}

struct Split<'a, B> {
    grads: GradientsParams,
    factor: f64,
    groups: &'a HashMap<ParamId, ParamGroup>,
    out: BTreeMap<ParamGroup, GradientsParams>,
    backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Split<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(group) = self.groups.get(&param.id) else {
            return;
        };
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let grad = if self.factor == 1.0 {
                grad
            } else {
                grad.mul_scalar(self.factor)
            };
            self.out
                .entry(*group)
                .or_default()
                .register::<B::InnerBackend, D>(param.id, grad);
        }
    }
}
