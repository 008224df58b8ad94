//! The low-rank update `B(A(dropout(x))) * scaling` of one linear.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use vlm_hf::flat_matmul;

use crate::freeze::trainable;

/// The adapter of one linear: `A` `[r, in]`, `B` `[out, r]` (PEFT's `lora_A` / `lora_B`), a
/// dropout on its input and a fixed scaling.
///
/// The matrices are stored transposed, in Burn's `[in, out]` [`Linear`](burn::nn::Linear)
/// layout, so the forward pass is two plain matmuls; [`peft_a`](Self::peft_a) and
/// [`peft_b`](Self::peft_b) give them back in PEFT's layout.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `A^T`, `[in, r]`.
    pub lora_a: Param<Tensor<B, 2>>,
    /// `B^T`, `[r, out]`.
    pub lora_b: Param<Tensor<B, 2>>,
    /// Dropout on the adapter's input; Burn applies it only on an autodiff backend, i.e. while
    /// training.
    pub dropout: Dropout,
    /// `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub scaling: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter as PEFT initialises one: `A` kaiming-uniform with `a = sqrt(5)`, i.e.
    /// uniform in `±1/sqrt(in)`, and `B` zeros, so the adapted linear starts equal to the base.
    pub fn init(
        d_input: usize,
        d_output: usize,
        r: usize,
        scaling: f64,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        let bound = 1.0 / (d_input as f64).sqrt();
        let a = Tensor::random([d_input, r], Distribution::Uniform(-bound, bound), device);
        Self::from_transposed(a, Tensor::zeros([r, d_output], device), scaling, dropout)
    }

    /// An adapter from PEFT's tensors: `lora_A.weight` `[r, in]` and `lora_B.weight` `[out, r]`.
    pub fn from_peft(a: Tensor<B, 2>, b: Tensor<B, 2>, scaling: f64, dropout: f64) -> Self {
        Self::from_transposed(
            contiguous(a.transpose()),
            contiguous(b.transpose()),
            scaling,
            dropout,
        )
    }

    fn from_transposed(a: Tensor<B, 2>, b: Tensor<B, 2>, scaling: f64, dropout: f64) -> Self {
        Self {
            lora_a: trainable(a),
            lora_b: trainable(b),
            dropout: DropoutConfig::new(dropout).init(),
            scaling,
        }
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.lazy_shape()[1]
    }

    /// `lora_A.weight` in PEFT's `[r, in]` layout.
    pub fn peft_a(&self) -> Tensor<B, 2> {
        self.lora_a.val().transpose()
    }

    /// `lora_B.weight` in PEFT's `[out, r]` layout.
    pub fn peft_b(&self) -> Tensor<B, 2> {
        self.lora_b.val().transpose()
    }

    /// The update of `x` (`[..., in]` -> `[..., out]`): `B(A(dropout(x))) * scaling`.
    ///
    /// Factored, never forming the `[in, out]` product (see the crate docs for the
    /// measurements behind this choice); the scaling is applied to the rank-`r` intermediate,
    /// the cheapest place.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let hidden = flat_matmul(self.dropout.forward(x), self.lora_a.val());
        flat_matmul(hidden.mul_scalar(self.scaling), self.lora_b.val())
    }

    /// `scaling * A^T B^T`, the change of the base weight in Burn's `[in, out]` layout, cut
    /// from the autodiff graph (merging is not a training step).
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        let a = self.lora_a.val().detach();
        let b = self.lora_b.val().detach();
        a.matmul(b).mul_scalar(self.scaling)
    }
}

/// `tensor` copied into its own contiguous storage (same values and dtype): a transposed view
/// would reach the matrix products as a strided operand, whose results CPU backends round
/// differently from those of the same values stored contiguously, so an adapter read from a
/// file would not compute bit-identically to the one that was saved.
fn contiguous<B: Backend>(tensor: Tensor<B, 2>) -> Tensor<B, 2> {
    let (device, dtype) = (tensor.device(), tensor.dtype());
    Tensor::from_data(tensor.into_data(), (&device, dtype))
}
