//! A toy model for the vlm-lora tests: two adaptable linears under PEFT-style paths, one
//! linear that is not adaptable and a norm-like vector.

#![allow(dead_code)] // each test binary uses a different subset

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use vlm_lora::{AdaptableModel, LoraLinear};

pub const Q_PROJ: &str = "encoder.layers.0.self_attn.q_proj";
pub const FC1: &str = "encoder.layers.0.mlp.fc1";
pub const D_MODEL: usize = 6;
pub const D_FF: usize = 10;

/// `head(fc1(q_proj(x)) * scale)`.
#[derive(Module, Debug)]
pub struct Toy<B: Backend> {
    pub q_proj: LoraLinear<B>,
    pub fc1: LoraLinear<B>,
    pub head: Linear<B>,
    pub scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> Toy<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            q_proj: LoraLinear::new(linear(D_MODEL, D_MODEL, device)),
            fc1: LoraLinear::new(linear(D_MODEL, D_FF, device)),
            head: linear(D_FF, 3, device),
            scale: Param::from_tensor(Tensor::random(
                [D_FF],
                Distribution::Uniform(0.5, 1.5),
                device,
            )),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let hidden = self.fc1.forward(self.q_proj.forward(x));
        self.head.forward(hidden * self.scale.val().unsqueeze())
    }
}

impl<B: Backend> AdaptableModel<B> for Toy<B> {
    fn visit_linears(&self, visitor: &mut dyn FnMut(&str, &LoraLinear<B>)) {
        visitor(Q_PROJ, &self.q_proj);
        visitor(FC1, &self.fc1);
    }

    fn map_linears(self, mapper: &mut dyn FnMut(&str, LoraLinear<B>) -> LoraLinear<B>) -> Self {
        Self {
            q_proj: mapper(Q_PROJ, self.q_proj),
            fc1: mapper(FC1, self.fc1),
            ..self
        }
    }
}

/// A random `d_in -> d_out` linear with bias, initialised now (a lazily initialised
/// `LinearConfig` linear would draw new weights in each clone).
pub fn linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    let bound = 1.0 / (d_in as f64).sqrt();
    let uniform = Distribution::Uniform(-bound, bound);
    Linear {
        weight: Param::from_tensor(Tensor::random([d_in, d_out], uniform, device)),
        bias: Some(Param::from_tensor(Tensor::random([d_out], uniform, device))),
    }
}

/// The adapter's `(A, B)` of a linear in PEFT layout, as plain vectors.
pub fn peft_tensors<B: Backend>(linear: &LoraLinear<B>) -> (Vec<f32>, Vec<f32>) {
    let adapter = linear.adapter.as_ref().expect("adapter attached");
    (values(adapter.peft_a()), values(adapter.peft_b()))
}

pub fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data")
}

/// Random `x` of `rows x D_MODEL`.
pub fn input<B: Backend>(rows: usize, device: &B::Device) -> Tensor<B, 2> {
    Tensor::random([rows, D_MODEL], Distribution::Normal(0.0, 1.0), device)
}
