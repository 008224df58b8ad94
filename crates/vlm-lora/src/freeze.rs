//! Which parameters train: frozen base weights, trainable adapters.
//!
//! Burn decides per parameter: a tensor that does not require a gradient gets none from
//! `backward()`, so `GradientsParams` holds no entry for it and the optimizer neither updates
//! it nor keeps state for it. [`apply`](crate::apply) and [`load_adapter`](crate::load_adapter)
//! freeze every parameter of the model (as PEFT's `get_peft_model` does) and make only the
//! adapters trainable; [`unfreeze`] opts chosen modules back in.

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

/// A parameter that requires a gradient on whichever backend it ends up on.
///
/// `Param::from_tensor` marks the tensor itself, which a plain backend ignores, so a module
/// built there and moved to `Autodiff` with `train()` would come back frozen. A lazily
/// initialised parameter carries the flag instead, and `train()` honours it.
pub(crate) fn trainable<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Param<Tensor<B, D>> {
    let device = tensor.device();
    let shape = tensor.shape();
    Param::uninitialized(
        ParamId::new(),
        move |_, require_grad| tensor.clone().set_require_grad(require_grad),
        device,
        true,
        shape,
    )
}

/// Makes every float parameter of `module` trainable again: for parameters chosen to train
/// next to the adapters (a norm, the embedding), as PEFT's `modules_to_save`.
///
/// Only meaningful on an autodiff backend, hence the bound.
pub fn unfreeze<B: AutodiffBackend, M: Module<B>>(module: M) -> M {
    module.map(&mut Unfreeze)
}

struct Unfreeze;

impl<B: Backend> ModuleMapper<B> for Unfreeze {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(true)
    }
}
