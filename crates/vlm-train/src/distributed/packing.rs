//! What the peers exchange, packed into one flat tensor so that an exchange is one
//! all-reduce: a step's gradients of the trainable parameters with its sums, and, once at the
//! start, the trainable parameters' values.
//!
//! Parameters are packed in the model's visiting order, which is the same on every peer
//! (the same architecture); parameter ids are never sent (they differ between copies).

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::distributed::PeerLink;
use crate::{ParamGroup, TrainError};

/// The counts of one step that the peers add up with its gradients.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StepSums {
    /// Loss times supervised tokens, summed over the micro-batches.
    pub loss_sum: f64,
    /// Supervised tokens.
    pub supervised: f64,
    /// Peers that met a non-finite loss (0 or 1 on one peer).
    pub non_finite: f64,
    /// Samples.
    pub samples: f64,
    /// Real tokens.
    pub tokens: f64,
    /// Images.
    pub images: f64,
    /// Peers asked to stop (by their stop flag) during the step: all stop after it when one
    /// did, so that they agree.
    pub stop_requests: f64,
}

impl StepSums {
    const LEN: usize = 7;

    fn to_array(self) -> [f32; Self::LEN] {
        [
            self.loss_sum,
            self.supervised,
            self.non_finite,
            self.samples,
            self.tokens,
            self.images,
            self.stop_requests,
        ]
        .map(|v| v as f32)
    }

    fn from_values(v: [f32; Self::LEN]) -> Self {
        let at = |i: usize| f64::from(v[i]);
        Self {
            loss_sum: at(0),
            supervised: at(1).round(),
            non_finite: at(2).round(),
            samples: at(3).round(),
            tokens: at(4).round(),
            images: at(5).round(),
            stop_requests: at(6).round(),
        }
    }
}

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// Sums `grads` (of the parameters in `trainable`; a missing one counts as zeros) and `sums`
/// over every peer: one all-reduce.
pub(crate) fn reduce_step<B: AutodiffBackend, M: AutodiffModule<B>>(
    link: &PeerLink<Inner<B>>,
    model: &M,
    mut grads: GradientsParams,
    trainable: &HashMap<ParamId, ParamGroup>,
    sums: StepSums,
    step: usize,
) -> Result<(GradientsParams, StepSums), TrainError> {
    let mut flatten = FlattenGrads::<B> {
        grads: &mut grads,
        trainable,
        parts: Vec::new(),
    };
    model.visit(&mut flatten);
    let parts = flatten.parts;
    let Some(device) = parts.first().map(Tensor::device) else {
        return Err(TrainError::NothingToTrain(
            "no trainable parameter to reduce".into(),
        ));
    };
    let total: usize = parts.iter().map(|p| p.dims()[0]).sum();
    let tail = Tensor::<Inner<B>, 1>::from_floats(sums.to_array(), &device);
    let packed = Tensor::cat(parts.into_iter().chain([tail]).collect(), 0);
    let summed = link.sum(packed, &format!("all-reduce of step {step}"))?;
    let tail = summed.clone().narrow(0, total, StepSums::LEN);
    let tail: Vec<f32> = tail
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| TrainError::Collective(format!("step {step}: unreadable sums: {e:?}")))?;
    let mut split = SplitGrads::<B> {
        flat: summed,
        offset: 0,
        trainable,
        grads: GradientsParams::new(),
    };
    model.visit(&mut split);
    let tail: [f32; StepSums::LEN] = tail.try_into().map_err(|v: Vec<f32>| {
        TrainError::Collective(format!("step {step}: {} sums came back", v.len()))
    })?;
    Ok((split.grads, StepSums::from_values(tail)))
}

struct FlattenGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    trainable: &'a HashMap<ParamId, ParamGroup>,
    parts: Vec<Tensor<Inner<B>, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for FlattenGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.trainable.contains_key(&param.id) {
            return;
        }
        let value = param.val();
        let grad = self
            .grads
            .remove::<Inner<B>, D>(param.id)
            .unwrap_or_else(|| Tensor::zeros(value.shape(), &value.device()));
        self.parts
            .push(grad.reshape([value.shape().num_elements()]));
    }
}

struct SplitGrads<'a, B: AutodiffBackend> {
    flat: Tensor<Inner<B>, 1>,
    offset: usize,
    trainable: &'a HashMap<ParamId, ParamGroup>,
    grads: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SplitGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.trainable.contains_key(&param.id) {
            return;
        }
        let dims = param.val().dims();
        let len: usize = dims.iter().product();
        let part = self.flat.clone().narrow(0, self.offset, len);
        self.offset += len;
        self.grads
            .register::<Inner<B>, D>(param.id, part.reshape(dims));
    }
}

/// Gives every peer the main peer's values of the trainable parameters (an all-reduce where
/// the others contribute zeros), so that all copies start from the same weights.
pub(crate) fn share_trainable<B: AutodiffBackend, M: AutodiffModule<B>>(
    link: &PeerLink<Inner<B>>,
    model: M,
    is_main: bool,
) -> Result<M, TrainError> {
    let mut collect = CollectTrainable::<B> {
        is_main,
        parts: Vec::new(),
    };
    model.visit(&mut collect);
    if collect.parts.is_empty() {
        return Ok(model);
    }
    let packed = Tensor::cat(collect.parts, 0);
    let shared = link.sum(packed, "sharing the main peer's initial weights")?;
    let mut assign = AssignTrainable::<B> {
        flat: shared,
        offset: 0,
    };
    Ok(model.map(&mut assign))
}

struct CollectTrainable<B: AutodiffBackend> {
    is_main: bool,
    parts: Vec<Tensor<Inner<B>, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for CollectTrainable<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let len = value.shape().num_elements();
        let inner = value.inner().reshape([len]);
        self.parts.push(if self.is_main {
            inner
        } else {
            inner.zeros_like()
        });
    }
}

struct AssignTrainable<B: AutodiffBackend> {
    flat: Tensor<Inner<B>, 1>,
    offset: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for AssignTrainable<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let dims = tensor.dims();
        let len: usize = dims.iter().product();
        let part = self.flat.clone().narrow(0, self.offset, len);
        self.offset += len;
        let value = Tensor::<B, D>::from_inner(part.reshape(dims)).require_grad();
        Param::from_mapped_value(id, value, mapper)
    }
}
