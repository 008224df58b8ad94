//! Qwen as a LoRA host: its projections listed under the checkpoint's own module paths.

use burn::tensor::backend::Backend;
use vlm_lora::{AdaptableModel, LoraLinear};

use crate::names::Names;
use crate::{QwenDecoder, QwenModel};

/// The attention and MLP projections of every decoder layer are adaptable, named as in the
/// checkpoint's layout, which is what PEFT matches on the original model: v1 offers
/// `transformer.h.N.attn.c_attn` (fused query/key/value), `attn.c_proj`, `mlp.w1`, `mlp.w2`,
/// `mlp.c_proj`; Qwen2/3 offer `model.layers.N.self_attn.{q,k,v,o}_proj` and
/// `model.layers.N.mlp.{gate,up,down}_proj`. The LM head and the embedding are not adaptable.
impl<B: Backend> AdaptableModel<B> for QwenModel<B> {
    fn visit_linears(&self, visitor: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        let names = Names::of(self.config().variant);
        for (index, layer) in self.model.layers.iter().enumerate() {
            layer.visit_linears(&names.layer(index), visitor);
        }
    }

    fn map_linears(self, mapper: &mut dyn FnMut(&str, LoraLinear<B>) -> LoraLinear<B>) -> Self {
        let names = Names::of(self.config().variant);
        let layers = self
            .model
            .layers
            .into_iter()
            .enumerate()
            .map(|(index, layer)| layer.map_linears(&names.layer(index), mapper))
            .collect();
        Self {
            model: QwenDecoder {
                layers,
                ..self.model
            },
            ..self
        }
    }
}
