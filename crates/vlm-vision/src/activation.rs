use burn::tensor::{activation, backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

/// The MLP non-linearity of a tower, read from `hidden_act` in `config.json` with Hugging
/// Face's names; any other name is a JSON error naming the file and the supported values.
/// Saving writes the same names back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP's approximation (`quick_gelu`).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact GELU, `x * Phi(x)` with the error function (`gelu`).
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (`gelu_pytorch_tanh`, SigLIP's; `gelu_new` is the same
    /// formula).
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new")]
    GeluTanh,
}

impl Activation {
    /// Applies the activation element-wise.
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::QuickGelu => x.clone() * activation::sigmoid(x * 1.702),
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => gelu_tanh(x),
        }
    }
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, computed as the equal
/// `x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))` (`1 + tanh(z) = 2 sigmoid(2z)`): one `exp` per
/// element instead of a `tanh`, which CPU backends evaluate several times slower (it was a
/// fifth of the SigLIP forward on Flex). The cube is two products so that no backend has to
/// raise a negative number to a float power.
fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let two_sqrt_2_over_pi = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * two_sqrt_2_over_pi;
    x * activation::sigmoid(inner)
}
