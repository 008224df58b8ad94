//! The LoRA hyper-parameters: rank, alpha, dropout, targets.

use crate::{LoraError, TargetModules};

/// The settings of one LoRA adapter, as PEFT's `LoraConfig` names them.
///
/// Every targeted linear `W` gets `y = W x + B(A(dropout(x))) * scaling` with `A` `[r, in]`,
/// `B` `[out, r]` and `scaling = lora_alpha / r` (`lora_alpha / sqrt(r)` with rsLoRA). The
/// seed recipe is rank 128, alpha 32, dropout 0.1 on `c_attn|w1|w2` of Qwen-7B v1:
///
/// ```
/// use vlm_lora::{LoraConfig, TargetModules};
///
/// let config = LoraConfig::new(128, 32.0, TargetModules::parse("c_attn|w1|w2"))
///     .with_dropout(0.1);
/// assert_eq!(config.scaling(), 0.25);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of every adapter.
    pub r: usize,
    /// `lora_alpha`: the scaling numerator.
    pub lora_alpha: f64,
    /// Dropout probability on the adapter's input, applied only while training (on an
    /// autodiff backend).
    pub lora_dropout: f64,
    /// Which modules get an adapter.
    pub target_modules: TargetModules,
    /// rsLoRA: scale by `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
    /// Where the base model lives (informational, written to `adapter_config.json`).
    pub base_model_name_or_path: Option<String>,
}

impl LoraConfig {
    /// Rank `r`, `lora_alpha` and targets; no dropout, plain (not rs-) LoRA.
    pub fn new(r: usize, lora_alpha: f64, target_modules: TargetModules) -> Self {
        Self {
            r,
            lora_alpha,
            lora_dropout: 0.0,
            target_modules,
            use_rslora: false,
            base_model_name_or_path: None,
        }
    }

    /// Sets the dropout probability.
    pub fn with_dropout(self, lora_dropout: f64) -> Self {
        Self {
            lora_dropout,
            ..self
        }
    }

    /// Switches rsLoRA scaling on or off.
    pub fn with_rslora(self, use_rslora: bool) -> Self {
        Self { use_rslora, ..self }
    }

    /// Records the base model's name or path.
    pub fn with_base_model(self, base: impl Into<String>) -> Self {
        Self {
            base_model_name_or_path: Some(base.into()),
            ..self
        }
    }

    /// The factor applied to the adapter's output: `alpha / r`, or `alpha / sqrt(r)` with
    /// rsLoRA (PEFT's `LoraLayer.update_layer`).
    pub fn scaling(&self) -> f64 {
        let r = self.r as f64;
        if self.use_rslora {
            self.lora_alpha / r.sqrt()
        } else {
            self.lora_alpha / r
        }
    }

    /// Checks the ranges: `r >= 1`, finite `lora_alpha`, `0 <= lora_dropout < 1`, and a
    /// non-empty target list.
    pub fn validate(&self) -> Result<(), LoraError> {
        let invalid = |reason: String| Err(LoraError::InvalidConfig(reason));
        if self.r == 0 {
            return invalid("r must be at least 1".into());
        }
        if !self.lora_alpha.is_finite() {
            return invalid(format!("lora_alpha {} is not finite", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return invalid(format!(
                "lora_dropout {} is outside [0, 1)",
                self.lora_dropout
            ));
        }
        match &self.target_modules {
            TargetModules::Names(names) if names.is_empty() => {
                invalid("target_modules is empty".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LoraConfig {
        LoraConfig::new(4, 8.0, TargetModules::names(["q_proj"]))
    }

    #[test]
    fn scaling_is_alpha_over_r_or_its_square_root() {
        assert_eq!(config().scaling(), 2.0);
        assert_eq!(config().with_rslora(true).scaling(), 4.0);
    }

    #[test]
    fn out_of_range_settings_are_rejected() {
        let bad = [
            LoraConfig { r: 0, ..config() },
            config().with_dropout(1.0),
            config().with_dropout(-0.1),
            LoraConfig {
                lora_alpha: f64::NAN,
                ..config()
            },
            LoraConfig {
                target_modules: TargetModules::Names(vec![]),
                ..config()
            },
        ];
        for config in bad {
            let err = config.validate().expect_err("invalid");
            assert!(matches!(err, LoraError::InvalidConfig(_)), "{err:?}");
        }
        config().validate().expect("valid");
    }
}
