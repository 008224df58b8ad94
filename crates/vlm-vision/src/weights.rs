use burn::module::{Module, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::tensor::{backend::Backend, Tensor, TensorCreationOptions};
use vlm_hf::{join_key, HfError, WeightStore};

/// The key suffix every CLIP and SigLIP tower stores, whatever its layout.
const TOWER_ANCHOR: &str = "embeddings.patch_embedding.weight";

/// Burn's container type of a layer norm, as module visitors name it.
const LAYER_NORM: &str = "Struct:LayerNorm";
/// Burn's container type of the patch embeddings, as module visitors name it.
pub(crate) const PATCH_EMBEDDINGS: &str = "Struct:PatchEmbeddings";
/// Burn's container type of a linear layer, as module visitors name it.
pub(crate) const LINEAR: &str = "Struct:Linear";

/// The tower's name table. Its module tree mirrors transformers' (same field names, nesting
/// and order), so a parameter's key is its module path below the tower's prefix, except for
/// the fields Burn names differently, listed here as (container type, Burn field,
/// transformers' name). [`TowerWeights`] reads and the saver writes through it; linear
/// weights are also stored transposed ([`WeightStore::linear`]).
const RENAMED_FIELDS: [(&str, &str, &str); 3] = [
    (LAYER_NORM, "gamma", "weight"),
    (LAYER_NORM, "beta", "bias"),
    (
        PATCH_EMBEDDINGS,
        "position_embedding",
        "position_embedding.weight",
    ),
];

/// transformers' name of the parameter `field` of a module of type `container` (Burn's
/// `"Struct:Name"`), from [`RENAMED_FIELDS`].
pub(crate) fn hf_field<'a>(container: &str, field: &'a str) -> &'a str {
    RENAMED_FIELDS
        .iter()
        .find(|(renamed_in, burn, _)| *renamed_in == container && *burn == field)
        .map_or(field, |(_, _, hf)| hf)
}

/// The key prefix of the one CLIP or SigLIP vision tower in `store`, found from its keys:
/// `vision_model` (a vision model as transformers 4 saves it, or a dual-tower model), `""` (a
/// vision model as transformers 5 saves it), `vision_tower.vision_model` or `vision_tower`
/// (llava-hf as transformers 4 / 5 save it), `model.vision_tower...` (a raw `state_dict`).
///
/// No tower is [`HfError::LayoutNotFound`] listing the key prefixes seen; more than one is
/// [`HfError::AmbiguousLayout`] listing them (pass the prefix explicitly then).
pub fn find_tower_prefix(store: &WeightStore) -> Result<String, HfError> {
    store.find_prefix(TOWER_ANCHOR, "vision tower")
}

/// The tensors of one tower (or one sub-module of it) in a [`WeightStore`], addressed by
/// Hugging Face names under a key prefix, turned into frozen Burn modules one tensor at a time.
///
/// Every parameter is created with `require_grad = false`, so a tower loaded on an autodiff
/// backend is frozen: its forward pass records no graph and its weights get no gradient.
pub(crate) struct TowerWeights<'a, B: Backend> {
    store: &'a WeightStore,
    prefix: String,
    /// The device, and the dtype when not the device's default (f32).
    options: TensorCreationOptions<B>,
}

impl<'a, B: Backend> TowerWeights<'a, B> {
    /// Tensors named `{prefix}.{name}` (`{name}` alone when the prefix is empty).
    pub(crate) fn new(
        store: &'a WeightStore,
        prefix: &str,
        options: TensorCreationOptions<B>,
    ) -> Self {
        Self {
            store,
            prefix: prefix.to_string(),
            options,
        }
    }

    /// The weights of a sub-module, e.g. `child("encoder.layers.3")`.
    pub(crate) fn child(&self, name: &str) -> Self {
        Self::new(self.store, &self.key(name), self.options.clone())
    }

    fn key(&self, name: &str) -> String {
        join_key(&self.prefix, name)
    }

    /// A frozen parameter of exactly `shape`.
    pub(crate) fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<B, D>>, HfError> {
        Ok(frozen(self.tensor(name, shape)?))
    }

    fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, HfError> {
        self.store
            .float::<B, D>(&self.key(name), shape, self.options.clone())
    }

    /// A frozen linear layer with bias (see [`WeightStore::linear`] for the layouts).
    pub(crate) fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Linear<B>, HfError> {
        let linear =
            self.store
                .linear(&self.key(name), [d_in, d_out], true, self.options.clone())?;
        Ok(linear.no_grad())
    }

    /// A layer norm with weight and bias of size `dim`.
    pub(crate) fn layer_norm(
        &self,
        name: &str,
        dim: usize,
        eps: f64,
    ) -> Result<LayerNorm<B>, HfError> {
        let weights = self.child(name);
        let mut norm = LayerNormConfig::new(dim)
            .with_epsilon(eps)
            .init(&self.options.device);
        norm.gamma = weights.param(hf_field(LAYER_NORM, "gamma"), [dim])?;
        norm.beta = Some(weights.param(hf_field(LAYER_NORM, "beta"), [dim])?);
        Ok(norm)
    }

    /// The patch embedding: a `patch x patch` convolution with stride `patch` and no padding,
    /// `[dim, channels, patch, patch]`, with a bias only where the checkpoint has one.
    pub(crate) fn patch_conv(
        &self,
        name: &str,
        [channels, dim, patch]: [usize; 3],
        bias: bool,
    ) -> Result<Conv2d<B>, HfError> {
        let weights = self.child(name);
        let bias = match bias {
            true => Some(weights.param("bias", [dim])?),
            false => None,
        };
        Ok(Conv2d {
            weight: weights.param("weight", [dim, channels, patch, patch])?,
            bias,
            stride: [patch, patch],
            kernel_size: [patch, patch],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Valid,
        })
    }
}

/// A parameter that never requires a gradient (a leaf the autodiff graph ignores).
fn frozen<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::initialized(ParamId::new(), tensor.set_require_grad(false))
}
