//! The float precision a model is loaded and run in (`--dtype`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorCreationOptions};
use serde::{Deserialize, Serialize};

use crate::HfError;

/// The float type a model's weights are loaded in, and so the type its forward pass computes
/// in (activations take the weights' type; norms, softmax and the loss still upcast to f32
/// where transformers does).
///
/// `F32` is the default and what every earlier release did. `Bf16` and `F16` halve the memory
/// of the weights: a checkpoint stored in that type is read without an f32 copy on the way.
///
/// Configs (`dtype` in a training TOML, `vlm_config.json`) spell it as the flag does; another
/// value is an [`UnknownPrecision`] error, whose message names the `dtype` and the choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// bfloat16: f32's range, 8 bits of mantissa.
    Bf16,
    /// IEEE half: 11 bits of mantissa, range up to 65504.
    F16,
}

impl Precision {
    /// Every precision, in the order the flag lists them.
    pub const ALL: [Self; 3] = [Self::F32, Self::Bf16, Self::F16];

    /// The name the flag and the configs use: `f32`, `bf16`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// Burn's dtype of this precision.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    /// Where and how tensors loaded in this precision are created on `device`: what the
    /// loaders (`WeightStore::float`, the model crates' `load`) take.
    ///
    /// Fails with [`HfError::UnsupportedPrecision`] when the backend cannot compute in it
    /// (Burn reports no arithmetic support: `NdArray` has none for f16 and bf16).
    pub fn on<B: Backend>(self, device: &B::Device) -> Result<TensorCreationOptions<B>, HfError> {
        let dtype = self.dtype();
        if !B::supports_dtype(device, dtype) {
            return Err(HfError::UnsupportedPrecision {
                precision: self,
                backend: B::name(device),
            });
        }
        Ok(TensorCreationOptions::new(device.clone()).with_dtype(dtype))
    }

    /// The precision weights stored in `stored` ([`WeightStore::stored_precision`]) load in
    /// when none is asked for: their half type where the backend computes in it natively
    /// (`native_half`: the GPU backends) and supports it on `device`; otherwise f32. On the
    /// CPU backends a half checkpoint still loads in f32: Flex computes bf16 through f32
    /// conversions, slower than f32 (BENCHMARKS.md, "Half precision").
    ///
    /// [`WeightStore::stored_precision`]: crate::WeightStore::stored_precision
    pub fn default_for<B: Backend>(
        stored: Option<Self>,
        device: &B::Device,
        native_half: bool,
    ) -> Self {
        match stored {
            Some(half) if native_half && B::supports_dtype(device, half.dtype()) => half,
            _ => Self::F32,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--dtype` value no precision has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype {0:?}: expected f32, bf16 or f16")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|precision| precision.name() == text)
            .ok_or_else(|| UnknownPrecision(text.to_string()))
    }
}

impl TryFrom<String> for Precision {
    type Error = UnknownPrecision;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlm_testkit::{device, TestBackend};

    #[test]
    fn names_parse_back_and_serialise_as_the_flag_spells_them() {
        for precision in Precision::ALL {
            assert_eq!(precision.name().parse::<Precision>(), Ok(precision));
            let json = serde_json::to_string(&precision).expect("json");
            assert_eq!(json, format!("\"{precision}\""));
        }
        let unknown = "fp8".parse::<Precision>().expect_err("no fp8");
        assert_eq!(
            unknown.to_string(),
            "unknown dtype \"fp8\": expected f32, bf16 or f16"
        );
        assert_eq!(Precision::default(), Precision::F32);
        let error = serde_json::from_str::<Precision>("\"fp8\"").expect_err("no fp8");
        assert!(
            error.to_string().starts_with("unknown dtype \"fp8\""),
            "{error}"
        );
    }

    #[test]
    fn a_half_checkpoint_defaults_to_its_type_only_where_half_is_native() {
        let default =
            |stored, native| Precision::default_for::<TestBackend>(stored, &device(), native);
        assert_eq!(default(Some(Precision::Bf16), true), Precision::Bf16);
        assert_eq!(default(Some(Precision::F16), true), Precision::F16);
        assert_eq!(default(Some(Precision::Bf16), false), Precision::F32);
        assert_eq!(default(Some(Precision::F32), true), Precision::F32);
        assert_eq!(default(None, true), Precision::F32);
    }

    #[test]
    fn the_cpu_test_backend_takes_every_precision() {
        for precision in Precision::ALL {
            let options = precision.on::<TestBackend>(&device()).expect("supported");
            assert_eq!(options.dtype, Some(precision.dtype()));
        }
    }
}
