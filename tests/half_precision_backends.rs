//! `--dtype` on a backend without half types: `NdArray` (feature `ndarray`) refuses bf16 and
//! f16 with an error naming the precision and the backend, and still takes f32.
#![cfg(feature = "ndarray")]

use vlm::burn::backend::NdArray;
use vlm::hf::{HfError, Precision};

#[test]
fn ndarray_refuses_half_precision_by_name() {
    let device = Default::default();
    for precision in [Precision::Bf16, Precision::F16] {
        let error = precision.on::<NdArray>(&device).expect_err("no half types");
        assert!(matches!(error, HfError::UnsupportedPrecision { .. }));
        let message = error.to_string();
        assert!(message.contains(precision.name()), "{message}");
    }
    assert!(Precision::F32.on::<NdArray>(&device).is_ok());
}
