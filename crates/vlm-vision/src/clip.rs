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

/// The CLIP vision tower's `config.json` (`CLIPVisionConfig`), read straight with serde.
///
/// Absent keys take transformers' defaults (ViT-B/32 at 224 pixels), unknown keys are
/// ignored; [`ClipVisionConfig::from_file`] also reads the nested `vision_config` of
/// `CLIPModel` and LLaVA checkpoints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClipVisionConfig {
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
    /// The MLP activation (`quick_gelu` for OpenAI CLIP).
    pub hidden_act: Activation,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// The dtype the checkpoint stores its weights in (`dtype`, or `torch_dtype` in older
    /// files), for information: weights are converted to the backend's float type on load.
    pub dtype: Option<String>,
}

impl Default for ClipVisionConfig {
    /// transformers' `CLIPVisionConfig()` defaults.
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            dtype: None,
        }
    }
}

impl ClipVisionConfig {
    /// `model_type` values of CLIP vision configs: the tower's own and the dual-tower model's.
    pub const MODEL_TYPES: &'static [&'static str] = &["clip_vision_model", "clip"];

    /// Reads a `config.json` with `model_type` `clip_vision_model` (flat) or any config with a
    /// nested `vision_config` of that type (`clip`, `llava`).
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

/// A frozen CLIP ViT (Hugging Face `CLIPVisionTransformer`) used as a LLaVA vision tower.
///
/// Embeddings are a CLS token and one token per patch (patch convolution without bias) plus
/// position embeddings, then `pre_layrnorm` (sic, Hugging Face's name) and the encoder
/// layers. As a [`VisionEncoder`] it runs only the layers up to the selected
/// `hidden_states` entry and drops the CLS token under [`SelectStrategy::Default`];
/// `post_layernorm` only serves the pooled output of [`ClipVisionTower::outputs`].
///
/// Parameters never require gradients, so under an autodiff backend the forward pass records
/// no graph: the features are constants for whatever is trained on top.
///
/// [`SelectStrategy::Default`]: crate::SelectStrategy::Default
#[derive(Module, Debug)]
pub struct ClipVisionTower<B: Backend> {
    embeddings: PatchEmbeddings<B>,
    pre_layrnorm: LayerNorm<B>,
    encoder: VitEncoder<B>,
    post_layernorm: LayerNorm<B>,
    feature_layer: usize,
    drop_cls: bool,
    #[module(skip)]
    preprocessing: PreprocessorConfig,
    #[module(skip)]
    config: ClipVisionConfig,
}

impl<B: Backend> ClipVisionTower<B> {
    /// Loads a `CLIPVisionModel` or `CLIPModel` folder (`config.json`,
    /// `preprocessor_config.json` and safetensors, in any key layout
    /// [`find_tower_prefix`] knows; the text tower and projections are not read).
    pub fn load(
        dir: impl AsRef<Path>,
        selection: FeatureSelection,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, VisionError> {
        let dir = dir.as_ref();
        let config = ClipVisionConfig::from_file(dir.join("config.json"))?;
        let preprocessing = read_preprocessing(dir)?;
        let store = WeightStore::open_dir(dir)?;
        let prefix = find_tower_prefix(&store)?;
        Self::from_store(&store, &config, preprocessing, &prefix, selection, options)
    }

    /// Loads the tower from weights named `{prefix}.embeddings...`, e.g. prefix
    /// `vision_tower.vision_model` inside a LLaVA checkpoint, with the image preprocessing it
    /// expects (see [`read_preprocessing`](crate::read_preprocessing)). Tensors are read one
    /// at a time. A preprocessing that makes images of another size than the tower's is an
    /// [`VisionError::InvalidConfig`].
    pub fn from_store(
        store: &WeightStore,
        config: &ClipVisionConfig,
        preprocessing: PreprocessorConfig,
        prefix: &str,
        selection: FeatureSelection,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, VisionError> {
        let dims = config.dims()?;
        check_preprocessing(&preprocessing, dims.image_size)?;
        let feature_layer = selection.hidden_state_index(dims.num_hidden_layers)?;
        let weights = TowerWeights::new(store, prefix, options.into());
        let norm = |name| weights.layer_norm(name, dims.hidden_size, dims.layer_norm_eps);
        let kind = EmbeddingKind {
            cls_token: true,
            conv_bias: false,
        };
        Ok(Self {
            embeddings: PatchEmbeddings::load(&weights.child("embeddings"), &dims, kind)?,
            pre_layrnorm: norm("pre_layrnorm")?,
            encoder: VitEncoder::load(&weights.child("encoder"), &dims)?,
            post_layernorm: norm("post_layernorm")?,
            feature_layer,
            drop_cls: selection.drops_cls(true),
            preprocessing,
            config: config.clone(),
        })
    }

    /// The config the tower was built from (what [`save`](Self::save) writes back).
    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// Runs every layer and returns what transformers' `CLIPVisionModel` returns with
    /// `output_hidden_states=True`, whatever the feature selection.
    pub fn outputs(&self, pixels: Tensor<B, 4>) -> Result<VisionOutput<B>, VisionError> {
        let hidden_states = self.encoder.hidden_states(self.embed(pixels)?);
        let last_hidden_state = hidden_states[hidden_states.len() - 1].clone();
        let [batch, _, hidden] = last_hidden_state.dims();
        let cls = last_hidden_state
            .clone()
            .narrow(1, 0, 1)
            .reshape([batch, hidden]);
        Ok(VisionOutput {
            hidden_states,
            last_hidden_state,
            pooler_output: Some(self.post_layernorm.forward(cls)),
        })
    }

    /// `hidden_states[0]`: embeddings followed by `pre_layrnorm`.
    fn embed(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        Ok(self.pre_layrnorm.forward(self.embeddings.forward(pixels)?))
    }
}

impl<B: Backend> VisionEncoder<B> for ClipVisionTower<B> {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        let hidden = self
            .encoder
            .forward(self.embed(pixels)?, self.feature_layer);
        if !self.drop_cls {
            return Ok(hidden);
        }
        let [_, tokens, _] = hidden.dims();
        Ok(hidden.narrow(1, 1, tokens - 1))
    }

    fn output_dim(&self) -> usize {
        self.embeddings.hidden_size()
    }

    fn tokens_per_image(&self) -> usize {
        self.embeddings.num_tokens() - usize::from(self.drop_cls)
    }

    fn image_size(&self) -> usize {
        self.embeddings.image_size()
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        &self.preprocessing
    }
}
