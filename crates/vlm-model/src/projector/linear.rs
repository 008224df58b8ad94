//! Linear layers of projectors: initialisation, Hugging Face layout in and out.

use burn::module::{Initializer, Param};
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use vlm_hf::{HfError, WeightStore};

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

/// Reads `{prefix}.weight` (`[d_out, d_in]`, Hugging Face layout) and `{prefix}.bias` into a
/// trainable Burn linear.
///
/// The weight is stored contiguously in Burn's `[d_in, d_out]` layout, as a freshly
/// initialised one is, so a saved and reloaded projector computes bit-identical outputs.
pub(crate) fn load_linear<B: Backend>(
    store: &WeightStore,
    prefix: &str,
    [d_in, d_out]: [usize; 2],
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, HfError> {
    let weight = store.float::<B, 2>(&format!("{prefix}.weight"), [d_out, d_in], device)?;
    let weight = Tensor::from_data(weight.transpose().into_data(), device);
    let bias = match bias {
        true => Some(store.float::<B, 1>(&format!("{prefix}.bias"), [d_out], device)?),
        false => None,
    };
    Ok(Linear {
        weight: Param::from_tensor(weight),
        bias: bias.map(Param::from_tensor),
    })
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
