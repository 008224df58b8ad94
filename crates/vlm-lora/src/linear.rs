//! A linear layer that can carry a LoRA adapter.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::apply_linear;

use crate::LoraAdapter;

/// A frozen base [`Linear`] plus an optional [`LoraAdapter`]:
/// `y = base(x) + B(A(dropout(x))) * scaling`, as PEFT's `lora.Linear` computes it.
///
/// Without an adapter it is exactly the base linear, so models use this type for every
/// projection LoRA may target. Attaching an adapter moves the base in (no copy of its
/// weights). After [`merge`](Self::merge) the base holds `W + scaling * B A` and the forward
/// pass skips the adapter; [`unmerge`](Self::unmerge) subtracts it again.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// The pretrained projection, Burn layout (`weight` is `[in, out]`).
    pub base: Linear<B>,
    /// The adapter, if one is attached.
    pub adapter: Option<LoraAdapter<B>>,
    merged: bool,
}

impl<B: Backend> LoraLinear<B> {
    /// A linear without adapter.
    pub fn new(base: Linear<B>) -> Self {
        Self {
            base,
            adapter: None,
            merged: false,
        }
    }

    /// Input width.
    pub fn d_input(&self) -> usize {
        self.base.weight.lazy_shape()[0]
    }

    /// Output width.
    pub fn d_output(&self) -> usize {
        self.base.weight.lazy_shape()[1]
    }

    /// The device of the base weight (where an adapter must live).
    pub fn device(&self) -> B::Device {
        self.base.weight.lazy_device()
    }

    /// Whether the adapter's update is currently folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Applies the layer to `[..., in]`.
    ///
    /// When the adapter's float type is not the base's (a frozen bf16 base with f32
    /// adapters, mixed-precision training), the update is computed as PEFT's `Linear.forward`
    /// does: from `x` cast to the adapter's type, added to the base output in that type, and
    /// the sum cast back to the base output's type. In one type every cast is a no-op.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let Some(adapter) = self.active_adapter() else {
            return apply_linear(&self.base, x);
        };
        let adapter_dtype = adapter.lora_a.val().dtype();
        let base = apply_linear(&self.base, x.clone());
        let base_dtype = base.dtype();
        let update = adapter.forward(x.cast(adapter_dtype));
        (base.cast(adapter_dtype) + update).cast(base_dtype)
    }

    /// Attaches `adapter`, replacing (and first unmerging) any previous one.
    pub fn with_adapter(self, adapter: LoraAdapter<B>) -> Self {
        Self {
            adapter: Some(adapter),
            ..self.unmerge()
        }
    }

    /// Folds the adapter into the base weight (`W += scaling * B A`); a no-op without adapter
    /// or when already merged.
    pub fn merge(self) -> Self {
        match self.active_adapter().map(LoraAdapter::delta_weight) {
            Some(delta) => Self {
                base: shift_weight(self.base, delta),
                merged: true,
                ..self
            },
            None => self,
        }
    }

    /// Takes a merged adapter's update back out of the base weight; a no-op otherwise.
    pub fn unmerge(self) -> Self {
        let delta = match (&self.adapter, self.merged) {
            (Some(adapter), true) => adapter.delta_weight(),
            _ => return self,
        };
        Self {
            base: shift_weight(self.base, delta.neg()),
            merged: false,
            ..self
        }
    }

    /// Merges the adapter and drops it: a plain linear with the adapted weight (PEFT's
    /// `merge_and_unload`).
    pub fn merge_and_unload(self) -> Self {
        Self::new(self.merge().base)
    }

    /// The weight this layer applies, `[in, out]`: the base weight plus the adapter's update
    /// when one is attached and not merged. Detached from the autodiff graph.
    pub fn effective_weight(&self) -> Tensor<B, 2> {
        let weight = self.base.weight.val().detach();
        match self.active_adapter() {
            Some(adapter) => {
                let dtype = weight.dtype();
                weight + adapter.delta_weight().cast(dtype)
            }
            None => weight,
        }
    }

    /// The adapter whose update the forward pass must add (attached and not merged).
    fn active_adapter(&self) -> Option<&LoraAdapter<B>> {
        self.adapter.as_ref().filter(|_| !self.merged)
    }
}

/// `W + delta`, keeping the parameter's id, float type (as PEFT merges an f32 update into
/// a half base) and gradient requirement.
fn shift_weight<B: Backend>(base: Linear<B>, delta: Tensor<B, 2>) -> Linear<B> {
    let weight = base.weight.map(|w| {
        let require_grad = w.is_require_grad();
        let delta = delta.cast(w.dtype());
        (w.detach() + delta).set_require_grad(require_grad)
    });
    Linear { weight, ..base }
}
