//! Linear layers applied as one 2-D matrix product.
//!
//! Burn 0.21's `Linear::forward` (and `module::linear`) broadcasts the `[in, out]` weight over
//! the leading dimensions of `[..., in]`, which the Flex CPU backend runs as one product per
//! batch entry, each packing the weight again; in a batched decode step every entry is a
//! single row, so the weight is read once per sequence. Folding the leading dimensions into
//! the rows makes it one product of `[rows, in]` by `[in, out]` on every backend (the reshape
//! of a contiguous tensor is free), and the weight's gradient one product instead of one per
//! batch entry plus a sum.

use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// `x` `[..., in]` times `weight` `[in, out]` -> `[..., out]`, as one 2-D product.
pub fn flat_matmul<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let [d_in, d_out] = weight.dims();
    let rows = dims[..D - 1].iter().product();
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    x.reshape([rows, d_in]).matmul(weight).reshape(out_dims)
}

/// `layer` applied to `[..., in]` as one 2-D product ([`flat_matmul`]) plus its bias: what
/// `layer.forward(x)` computes.
pub fn apply_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let y = flat_matmul(x, layer.weight.val());
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze(),
        None => y,
    }
}
