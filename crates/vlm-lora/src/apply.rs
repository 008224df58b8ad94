//! Attaching fresh adapters to the targeted linears of a model.

use burn::tensor::backend::Backend;

use crate::target::resolve_targets;
use crate::{AdaptableModel, LoraAdapter, LoraConfig, LoraError};

/// Freezes every parameter of `model` and attaches a fresh adapter (PEFT's initialisation:
/// kaiming-uniform `A`, zero `B`) to each linear that `config.target_modules` selects, as
/// PEFT's `get_peft_model` does. Only the adapters train afterwards; see
/// [`unfreeze`](crate::unfreeze) for more.
///
/// The base weights are moved, not copied. A linear that already has an adapter gets the new
/// one instead. Fails before touching the model when the config is invalid or selects no
/// module.
pub fn apply<B: Backend, M: AdaptableModel<B>>(
    model: M,
    config: &LoraConfig,
) -> Result<M, LoraError> {
    config.validate()?;
    let targets = resolve_targets(&model, &config.target_modules)?;
    let (r, scaling, dropout) = (config.r, config.scaling(), config.lora_dropout);
    Ok(model.no_grad().map_linears(&mut |path, linear| {
        if !targets.contains(path) {
            return linear;
        }
        let (d_in, d_out, device) = (linear.d_input(), linear.d_output(), linear.device());
        linear.with_adapter(LoraAdapter::init(d_in, d_out, r, scaling, dropout, &device))
    }))
}
