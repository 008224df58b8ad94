//! Folding adapters into the base weights for inference, and back out.

use burn::tensor::backend::Backend;

use crate::{AdaptableModel, LoraLinear};

/// Folds every attached adapter into its base weight (`W += scaling * B A`), keeping the
/// adapters so that [`unmerge`] can restore the base: inference then costs what the base
/// model costs. Training a merged model updates nothing useful; unmerge first.
pub fn merge<B: Backend, M: AdaptableModel<B>>(model: M) -> M {
    model.map_linears(&mut |_, linear| linear.merge())
}

/// Subtracts every merged adapter from its base weight again.
pub fn unmerge<B: Backend, M: AdaptableModel<B>>(model: M) -> M {
    model.map_linears(&mut |_, linear| linear.unmerge())
}

/// Merges every adapter and drops it: a plain model with the adapted weights (PEFT's
/// `merge_and_unload`), ready to be saved as an ordinary checkpoint.
pub fn merge_and_unload<B: Backend, M: AdaptableModel<B>>(model: M) -> M {
    model.map_linears(&mut |_, linear| LoraLinear::merge_and_unload(linear))
}
