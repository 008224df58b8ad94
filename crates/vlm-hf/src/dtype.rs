//! PyTorch's names of float dtypes, as `config.json` records them (`dtype`, or
//! `torch_dtype` before transformers 5).

use burn::tensor::DType;

/// PyTorch's name of a float dtype (`float32` for any non-float one).
pub fn torch_dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}

/// The float dtype PyTorch names `name` (`float32`, `bfloat16`, `float16`, `float64`, and
/// their short spellings `fp32`, `bf16`, `fp16`, `f32`, `f16`); `None` for any other name.
pub fn torch_dtype_from_name(name: &str) -> Option<DType> {
    match name {
        "float32" | "fp32" | "f32" => Some(DType::F32),
        "bfloat16" | "bf16" => Some(DType::BF16),
        "float16" | "fp16" | "f16" | "half" => Some(DType::F16),
        "float64" | "f64" => Some(DType::F64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for dtype in [DType::F32, DType::BF16, DType::F16, DType::F64] {
            assert_eq!(torch_dtype_from_name(torch_dtype_name(dtype)), Some(dtype));
        }
        assert_eq!(torch_dtype_from_name("int8"), None);
    }
}
