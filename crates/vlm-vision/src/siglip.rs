use std::path::Path;

use burn::module::Module;
use burn::nn::LayerNorm;
use burn::tensor::{backend::Backend, Tensor, TensorCreationOptions};
use serde::{Deserialize, Serialize};
use vlm_hf::{PreprocessorConfig, WeightStore};

use crate::config::{check_preprocessing, read_preprocessing, read_vision_config};
use crate::embeddings::{EmbeddingKind, PatchEmbeddings};
use crate::vit::{VitDims, VitEncoder};
use crate::weights::{find_tower_prefix, TowerWeights};
use crate::{Activation, FeatureSelection, VisionEncoder, VisionError, VisionOutput};

/// The SigLIP vision tower's `config.json` (`SiglipVisionConfig`), read straight with serde.
///
/// Absent keys take transformers' defaults (ViT-B/16 at 224 pixels), unknown keys (such as
/// `vision_use_head`) are ignored; [`SiglipVisionConfig::from_file`] also reads the nested
/// `vision_config` of `SiglipModel` and LLaVA checkpoints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct SiglipVisionConfig {
    /// Width of every token.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Channels of the input image.
    pub num_channels: usize,
    /// Side of the square input image in pixels.
    pub image_size: usize,
    /// Side of a square patch in pixels.
    pub patch_size: usize,
    /// The MLP activation (`gelu_pytorch_tanh` for SigLIP).
    pub hidden_act: Activation,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// The dtype the checkpoint stores its weights in (`dtype`, or `torch_dtype` in older
    /// files), for information: weights are converted to the backend's float type on load.
    pub dtype: Option<String>,
}

impl Default for SiglipVisionConfig {
    /// transformers' `SiglipVisionConfig()` defaults.
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 16,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
            dtype: None,
        }
    }
}

impl SiglipVisionConfig {
    /// `model_type` values of SigLIP vision configs: the tower's own and the dual-tower model's.
    pub const MODEL_TYPES: &'static [&'static str] = &["siglip_vision_model", "siglip"];

    /// Reads a `config.json` with `model_type` `siglip_vision_model` (flat) or any config with
    /// a nested `vision_config` of that type (`siglip`, `llava`).
    ///
    /// Sizes no tower can have are a [`VisionError::UnsupportedField`] naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VisionError> {
        let path = path.as_ref();
        let config: Self = read_vision_config(path, Self::MODEL_TYPES)?;
        config.dims().map_err(|err| err.in_file(path))?;
        Ok(config)
    }

    fn dims(&self) -> Result<VitDims, VisionError> {
        VitDims {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
        }
        .validated()
    }
}

/// A frozen SigLIP ViT (Hugging Face `SiglipVisionTransformer`) used as a LLaVA vision tower.
///
/// Embeddings are one token per patch (patch convolution with bias) plus position
/// embeddings: no CLS token and no norm before the encoder layers. As a [`VisionEncoder`] it
/// runs only the layers up to the selected `hidden_states` entry and keeps every token
/// under either strategy: SigLIP has no CLS token to drop, and the `[:, 1:]` that
/// transformers' LLaVA applies for "default" would discard a real patch. `post_layernorm`
/// only serves [`SiglipVisionTower::outputs`]'s `last_hidden_state`; the attention-pool head
/// (`head.*`) is not loaded.
///
/// Parameters never require gradients, so under an autodiff backend the forward pass records
/// no graph: the features are constants for whatever is trained on top.
#[derive(Module, Debug)]
pub struct SiglipVisionTower<B: Backend> {
    embeddings: PatchEmbeddings<B>,
    encoder: VitEncoder<B>,
    post_layernorm: LayerNorm<B>,
    feature_layer: usize,
    #[module(skip)]
    preprocessing: PreprocessorConfig,
    #[module(skip)]
    config: SiglipVisionConfig,
}

impl<B: Backend> SiglipVisionTower<B> {
    /// Loads a `SiglipVisionModel` or `SiglipModel` folder (`config.json`,
    /// `preprocessor_config.json` and safetensors, in any key layout
    /// [`find_tower_prefix`] knows; the text tower and the pooling head are not read).
    pub fn load(
        dir: impl AsRef<Path>,
        selection: FeatureSelection,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, VisionError> {
        let dir = dir.as_ref();
        let config = SiglipVisionConfig::from_file(dir.join("config.json"))?;
        let preprocessing = read_preprocessing(dir)?;
        let store = WeightStore::open_dir(dir)?;
        let prefix = find_tower_prefix(&store)?;
        Self::from_store(&store, &config, preprocessing, &prefix, selection, options)
    }

    /// Loads the tower from weights named `{prefix}.embeddings...`, e.g. prefix
    /// `vision_tower.vision_model` inside a LLaVA checkpoint, with the image preprocessing it
    /// expects (see [`read_preprocessing`](crate::read_preprocessing)). Tensors are read one
    /// at a time. A preprocessing that makes images of another size than the tower's is an
    /// [`VisionError::InvalidConfig`]. The selection's strategy is ignored: no token is ever
    /// dropped.
    pub fn from_store(
        store: &WeightStore,
        config: &SiglipVisionConfig,
        preprocessing: PreprocessorConfig,
        prefix: &str,
        selection: FeatureSelection,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, VisionError> {
        let dims = config.dims()?;
        check_preprocessing(&preprocessing, dims.image_size)?;
        let feature_layer = selection.hidden_state_index(dims.num_hidden_layers)?;
        let weights = TowerWeights::new(store, prefix, options.into());
        let kind = EmbeddingKind {
            cls_token: false,
            conv_bias: true,
        };
        Ok(Self {
            embeddings: PatchEmbeddings::load(&weights.child("embeddings"), &dims, kind)?,
            encoder: VitEncoder::load(&weights.child("encoder"), &dims)?,
            post_layernorm: weights.layer_norm(
                "post_layernorm",
                dims.hidden_size,
                dims.layer_norm_eps,
            )?,
            feature_layer,
            preprocessing,
            config: config.clone(),
        })
    }

    /// The config the tower was built from (what [`save`](Self::save) writes back).
    pub fn config(&self) -> &SiglipVisionConfig {
        &self.config
    }

    /// Runs every layer and returns what transformers' `SiglipVisionModel` returns with
    /// `output_hidden_states=True`, except the head's `pooler_output` (always `None`).
    pub fn outputs(&self, pixels: Tensor<B, 4>) -> Result<VisionOutput<B>, VisionError> {
        let hidden_states = self.encoder.hidden_states(self.embeddings.forward(pixels)?);
        let last = hidden_states[hidden_states.len() - 1].clone();
        Ok(VisionOutput {
            hidden_states,
            last_hidden_state: self.post_layernorm.forward(last),
            pooler_output: None,
        })
    }
}

impl<B: Backend> VisionEncoder<B> for SiglipVisionTower<B> {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        let embedded = self.embeddings.forward(pixels)?;
        Ok(self.encoder.forward(embedded, self.feature_layer))
    }

    fn output_dim(&self) -> usize {
        self.embeddings.hidden_size()
    }

    fn tokens_per_image(&self) -> usize {
        self.embeddings.num_tokens()
    }

    fn image_size(&self) -> usize {
        self.embeddings.image_size()
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        &self.preprocessing
    }
}
