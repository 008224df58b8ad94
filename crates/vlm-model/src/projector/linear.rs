//! Linear layers of projectors: initialisation and Hugging Face layout out (in: [`vlm_hf::WeightStore::linear`]).

use burn::module::Initializer;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor, TensorData};

/// Standard deviation of the normal distribution new projector weights are drawn from.
const INIT_STD: f64 = 0.01;

/// A trainable `d_in -> d_out` linear with weights drawn from N(0, 0.01^2) and a zero bias.
pub(crate) fn init_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    let normal = Initializer::Normal {
        mean: 0.0,
        std: INIT_STD,
    };
    Linear {
        weight: normal.init([d_in, d_out], device),
        bias: bias.then(|| Initializer::Zeros.init([d_out], device)),
    }
}

/// `{prefix}.weight` in Hugging Face's `[d_out, d_in]` layout and `{prefix}.bias`, as f32.
pub(crate) fn linear_tensors<B: Backend>(
    linear: &Linear<B>,
    prefix: &str,
) -> Vec<(String, TensorData)> {
    let weight = linear.weight.val().transpose().into_data().convert::<f32>();
    let mut tensors = vec![(format!("{prefix}.weight"), weight)];
    if let Some(bias) = &linear.bias {
        let bias = bias.val().into_data().convert::<f32>();
        tensors.push((format!("{prefix}.bias"), bias));
    }
    tensors
}

/// `[d_in, d_out]` of a Burn linear.
pub(crate) fn linear_dims<B: Backend>(linear: &Linear<B>) -> [usize; 2] {
    linear.weight.val().dims()
}

/// `x` in the float type of `linear`'s weight: in mixed-precision training the projector
/// trains in f32 over a frozen half tower, and takes the tower's features cast to its type
/// (a no-op when both are in one type).
pub(crate) fn in_dtype_of<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    linear: &Linear<B>,
) -> Tensor<B, D> {
    x.cast(linear.weight.val().dtype())
}
