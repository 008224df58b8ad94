use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor, TensorCreationOptions};
use vlm_hf::WeightStore;

use super::{
    MlpProjector, PersistentProjector, PixelShuffleProjector, Projector, ProjectorConfig,
    ProjectorKind,
};
use crate::ModelError;

/// Calls `$method` on whichever projector `$self` holds.
macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            AnyProjector::Mlp(projector) => projector.$method($($arg),*),
            AnyProjector::PixelShuffle(projector) => projector.$method($($arg),*),
        }
    };
}

/// Any projector of this crate, chosen at run time from a [`ProjectorConfig`]: what a
/// checkpoint loads, whatever kind it was trained with.
// One value per model, so the size gap between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyProjector<B: Backend> {
    /// LLaVA's two-layer MLP.
    Mlp(MlpProjector<B>),
    /// nanoVLM's pixel shuffle + linear.
    PixelShuffle(PixelShuffleProjector<B>),
}

impl<B: Backend> AnyProjector<B> {
    /// A new projector to train, of the configured kind and widths.
    pub fn new(config: &ProjectorConfig, device: &B::Device) -> Result<Self, ModelError> {
        let (input, output) = (config.input_dim, config.output_dim);
        Ok(match config.kind {
            ProjectorKind::Mlp2xGelu => Self::Mlp(MlpProjector::new(input, output, device)),
            ProjectorKind::PixelShuffle { scale_factor } => Self::PixelShuffle(
                PixelShuffleProjector::new(input, output, scale_factor, device)?,
            ),
        })
    }

    /// Reads the configured projector's weights (llava-hf names) from `store` onto a device
    /// (f32) or a device and dtype (`options`, as `vlm_hf::WeightStore::float` takes).
    pub fn from_store(
        store: &WeightStore,
        config: &ProjectorConfig,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, ModelError> {
        let (input, output) = (config.input_dim, config.output_dim);
        Ok(match config.kind {
            ProjectorKind::Mlp2xGelu => {
                Self::Mlp(MlpProjector::from_store(store, input, output, options)?)
            }
            ProjectorKind::PixelShuffle { scale_factor } => Self::PixelShuffle(
                PixelShuffleProjector::from_store(store, input, output, scale_factor, options)?,
            ),
        })
    }
}

impl<B: Backend> Projector<B> for AnyProjector<B> {
    fn forward(&self, features: Tensor<B, 3>) -> Result<Tensor<B, 3>, ModelError> {
        dispatch!(self.forward(features))
    }

    fn input_dim(&self) -> usize {
        dispatch!(self.input_dim())
    }

    fn output_dim(&self) -> usize {
        dispatch!(self.output_dim())
    }

    fn output_tokens(&self, input_tokens: usize) -> Result<usize, ModelError> {
        dispatch!(self.output_tokens(input_tokens))
    }
}

impl<B: Backend> PersistentProjector<B> for AnyProjector<B> {
    fn config(&self) -> ProjectorConfig {
        dispatch!(self.config())
    }

    fn linears(&self) -> Vec<(&'static str, &Linear<B>)> {
        dispatch!(self.linears())
    }
}
