//! The one thing a model must offer to take adapters: its LoRA-capable linears, by path.

use burn::module::{Module, ParamId};
use burn::tensor::backend::Backend;

use crate::LoraLinear;

/// A model whose projections are [`LoraLinear`]s, each known by its module path.
///
/// Paths are the names PEFT sees for the same module of the original checkpoint layout (what
/// `model.named_modules()` yields in transformers), e.g. `model.layers.0.self_attn.q_proj` for
/// Qwen2 or `transformer.h.0.attn.c_attn` for Qwen v1: target selection matches them and
/// adapter files key tensors by them (`base_model.model.<path>.lora_A.weight`). Both methods
/// must list the same linears, with the same paths, in the same order.
pub trait AdaptableModel<B: Backend>: Module<B> {
    /// Calls `visitor` with every adaptable linear and its path.
    fn visit_linears(&self, visitor: &mut dyn FnMut(&str, &LoraLinear<B>));

    /// Rebuilds the model with `mapper` applied to every adaptable linear.
    fn map_linears(self, mapper: &mut dyn FnMut(&str, LoraLinear<B>) -> LoraLinear<B>) -> Self;
}

/// The paths of the model's linears that carry an adapter, in visiting order.
pub fn adapted_modules<B: Backend, M: AdaptableModel<B>>(model: &M) -> Vec<String> {
    let mut paths = Vec::new();
    model.visit_linears(&mut |path, linear| {
        if linear.adapter.is_some() {
            paths.push(path.to_string());
        }
    });
    paths
}

/// The ids of the adapters' parameters (`lora_A` and `lora_B` of every adapted linear): what
/// trains in a LoRA run.
pub fn adapter_params<B: Backend, M: AdaptableModel<B>>(model: &M) -> Vec<ParamId> {
    let mut ids = Vec::new();
    model.visit_linears(&mut |_, linear| {
        if let Some(adapter) = &linear.adapter {
            ids.extend([adapter.lora_a.id, adapter.lora_b.id]);
        }
    });
    ids
}

/// Every adaptable path of the model, in visiting order.
pub(crate) fn linear_paths<B: Backend, M: AdaptableModel<B>>(model: &M) -> Vec<String> {
    let mut paths = Vec::new();
    model.visit_linears(&mut |path, _| paths.push(path.to_string()));
    paths
}
