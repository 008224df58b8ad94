use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::gelu;
use burn::tensor::{backend::Backend, Tensor, TensorCreationOptions};
use vlm_hf::apply_linear;
use vlm_hf::{join_key, WeightStore};

use super::linear::{in_dtype_of, init_linear, linear_dims};
use super::{
    check_input_width, PersistentProjector, Projector, ProjectorConfig, ProjectorKind,
    HF_PROJECTOR_PREFIX,
};
use crate::ModelError;

/// llava-hf's names of the two linears below [`HF_PROJECTOR_PREFIX`].
const LINEAR_1: &str = "linear_1";
const LINEAR_2: &str = "linear_2";

/// LLaVA-1.5's two-layer MLP projector (transformers' `LlavaMultiModalProjector`):
/// `Linear(vision_dim -> llm_dim)`, exact (erf) GELU, `Linear(llm_dim -> llm_dim)`, both with
/// bias. One embedding per vision feature.
///
/// Field names are the llava-hf module names, so its weights are
/// `multi_modal_projector.linear_1.{weight,bias}` and `linear_2.*` in checkpoints.
#[derive(Module, Debug)]
pub struct MlpProjector<B: Backend> {
    linear_1: Linear<B>,
    linear_2: Linear<B>,
}

impl<B: Backend> MlpProjector<B> {
    /// A new projector to train: weights drawn from N(0, 0.01^2) (standard deviation 0.01),
    /// biases zero.
    pub fn new(input_dim: usize, output_dim: usize, device: &B::Device) -> Self {
        Self {
            linear_1: init_linear(input_dim, output_dim, true, device),
            linear_2: init_linear(output_dim, output_dim, true, device),
        }
    }

    /// Reads `multi_modal_projector.linear_{1,2}.{weight,bias}` of exactly these widths (a
    /// llava-hf checkpoint, a `projector.safetensors`); a wrong shape is an error naming the
    /// file and the key.
    pub fn from_store(
        store: &WeightStore,
        input_dim: usize,
        output_dim: usize,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, ModelError> {
        Self::from_store_at(store, HF_PROJECTOR_PREFIX, input_dim, output_dim, options)
    }

    /// [`from_store`](Self::from_store) with the weights under `{prefix}.linear_{1,2}`, e.g.
    /// `model.multi_modal_projector` in checkpoints of transformers 4.52 and later.
    pub fn from_store_at(
        store: &WeightStore,
        prefix: &str,
        input_dim: usize,
        output_dim: usize,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, ModelError> {
        let options = options.into();
        let layer = |name, dims| store.linear(&join_key(prefix, name), dims, true, options.clone());
        Ok(Self {
            linear_1: layer(LINEAR_1, [input_dim, output_dim])?,
            linear_2: layer(LINEAR_2, [output_dim, output_dim])?,
        })
    }
}

impl<B: Backend> Projector<B> for MlpProjector<B> {
    fn forward(&self, features: Tensor<B, 3>) -> Result<Tensor<B, 3>, ModelError> {
        check_input_width(&features, self.input_dim(), "the MLP projector")?;
        let hidden = gelu(apply_linear(
            &self.linear_1,
            in_dtype_of(features, &self.linear_1),
        ));
        Ok(apply_linear(&self.linear_2, hidden))
    }

    fn input_dim(&self) -> usize {
        linear_dims(&self.linear_1)[0]
    }

    fn output_dim(&self) -> usize {
        linear_dims(&self.linear_2)[1]
    }

    fn output_tokens(&self, input_tokens: usize) -> Result<usize, ModelError> {
        Ok(input_tokens)
    }
}

impl<B: Backend> PersistentProjector<B> for MlpProjector<B> {
    fn config(&self) -> ProjectorConfig {
        ProjectorConfig {
            kind: ProjectorKind::Mlp2xGelu,
            input_dim: self.input_dim(),
            output_dim: self.output_dim(),
        }
    }

    fn linears(&self) -> Vec<(&'static str, &Linear<B>)> {
        vec![(LINEAR_1, &self.linear_1), (LINEAR_2, &self.linear_2)]
    }
}
