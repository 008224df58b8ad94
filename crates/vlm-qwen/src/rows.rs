//! Regrouping the rows of batched tensors, each row a sequence that ends at the last position
//! (left padding before it): what lets sequences join and leave a running batch.

use burn::tensor::backend::Backend;
use burn::tensor::{BasicOps, Int, Tensor, TensorData};

/// `top`'s rows above `bottom`'s (batch dimension 0), each right-aligned in `seq_dim` to the
/// longer of the two, in a tensor `capacity` long in `seq_dim` (at least that length): zeros
/// before the shorter part and after the longer one's end.
pub(crate) fn stack_aligned<B: Backend, const D: usize, K: BasicOps<B>>(
    top: Tensor<B, D, K>,
    bottom: Tensor<B, D, K>,
    seq_dim: usize,
    capacity: usize,
) -> Tensor<B, D, K> {
    let (top_dims, bottom_dims) = (top.dims(), bottom.dims());
    let len = top_dims[seq_dim].max(bottom_dims[seq_dim]);
    let mut dims = top_dims;
    dims[0] = top_dims[0] + bottom_dims[0];
    dims[seq_dim] = capacity.max(len);
    let options = (&top.device(), top.dtype());
    let mut stacked = Tensor::zeros(dims, options);
    let mut row = 0;
    for part in [top, bottom] {
        let part_dims = part.dims();
        let mut span = part_dims.map(|size| 0..size);
        span[0] = row..row + part_dims[0];
        span[seq_dim] = len - part_dims[seq_dim]..len;
        stacked = stacked.slice_assign(span, part);
        row += part_dims[0];
    }
    stacked
}

/// `rows` as an index tensor for [`Tensor::select`].
pub(crate) fn row_indices<B: Backend>(rows: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let rows: Vec<i64> = rows.iter().map(|&row| row as i64).collect();
    let count = rows.len();
    Tensor::from_data(TensorData::new(rows, [count]), device)
}
