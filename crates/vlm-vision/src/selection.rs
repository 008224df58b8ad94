use serde::{Deserialize, Serialize};

use crate::VisionError;

/// Which hidden state of the tower becomes the image features, and whether its CLS token is
/// kept: LLaVA's `vision_feature_layer` and `vision_feature_select_strategy`.
///
/// It deserialises from a LLaVA `config.json` (`vlm_hf::read_config::<FeatureSelection>`),
/// with LLaVA's defaults (-2, "default") for absent keys, and serialises to the same two
/// keys. Only a single layer is supported: a list of layers (concatenated features) is a JSON
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct FeatureSelection {
    /// Index into Hugging Face's `hidden_states` tuple, whose entry 0 is the embedding output
    /// and entry `i` the output of encoder layer `i`: -1 is the last layer, -2 the
    /// penultimate one, a non-negative value counts from the embeddings. No final norm is
    /// applied to any of them (SigLIP's `post_layernorm` is not part of `hidden_states`).
    #[serde(rename = "vision_feature_layer", default = "penultimate")]
    pub layer: i64,
    /// Whether the CLS token is dropped.
    #[serde(rename = "vision_feature_select_strategy", default)]
    pub strategy: SelectStrategy,
}

/// Whether a tower's selected hidden state keeps its CLS token; (de)serialised under LLaVA's
/// names, `"default"` and `"full"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectStrategy {
    /// LLaVA's "default": drop the CLS token, keep the patch tokens. A tower without a CLS
    /// token (SigLIP) keeps every token: Hugging Face's LLaVA slices `[:, 1:]` whatever the
    /// tower, which on SigLIP throws away a real patch; this crate does not.
    #[default]
    Default,
    /// LLaVA's "full": keep every token.
    Full,
}

fn penultimate() -> i64 {
    -2
}

impl Default for FeatureSelection {
    /// LLaVA's defaults: the penultimate layer, CLS token dropped.
    fn default() -> Self {
        Self {
            layer: penultimate(),
            strategy: SelectStrategy::Default,
        }
    }
}

impl FeatureSelection {
    /// The position in `hidden_states` (0 = embeddings, `num_layers` = last layer) this
    /// selection picks, which is also how many encoder layers must run.
    pub fn hidden_state_index(&self, num_layers: usize) -> Result<usize, VisionError> {
        let out_of_range = || VisionError::FeatureLayerOutOfRange {
            layer: self.layer,
            num_layers,
        };
        let states = i64::try_from(num_layers + 1).map_err(|_| out_of_range())?;
        let index = if self.layer < 0 {
            states + self.layer
        } else {
            self.layer
        };
        if (0..states).contains(&index) {
            usize::try_from(index).map_err(|_| out_of_range())
        } else {
            Err(out_of_range())
        }
    }

    /// Whether the first token must be dropped from a tower's hidden state: only when the
    /// strategy says so and the tower has a CLS token.
    pub fn drops_cls(&self, tower_has_cls: bool) -> bool {
        tower_has_cls && self.strategy == SelectStrategy::Default
    }
}
