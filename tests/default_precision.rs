//! Without `--dtype`, a model stored in a half type loads in it only where the backend
//! computes half natively (the GPU builds); the CPU builds load it in f32.

use vlm::backend::{device, Inference, NATIVE_HALF};
use vlm::cli::default_precision;
use vlm::hf::{Precision, WeightStore};
use vlm_testkit::fixture;

fn stored(name: &str) -> Option<Precision> {
    WeightStore::open_dir(fixture(name))
        .expect("weights")
        .stored_precision()
}

#[test]
fn a_bf16_model_loads_in_f32_on_the_cpu_and_in_bf16_where_half_is_native() {
    assert_eq!(stored("qwen2_bf16_sharded"), Some(Precision::Bf16));
    assert_eq!(stored("qwen2_f16"), Some(Precision::F16));
    assert_eq!(stored("qwen2_tied"), Some(Precision::F32));

    let bf16 = default_precision::<Inference>(&fixture("qwen2_bf16_sharded"), &device());
    let expected = match NATIVE_HALF {
        true => Precision::Bf16,
        false => Precision::F32,
    };
    assert_eq!(bf16, expected);
    let f32 = default_precision::<Inference>(&fixture("qwen2_tied"), &device());
    assert_eq!(f32, Precision::F32);
    let missing = default_precision::<Inference>(&fixture("no_such_model"), &device());
    assert_eq!(missing, Precision::F32);
}
