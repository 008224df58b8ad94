//! Attention masks and position ids for left-padded batches, with Hugging Face semantics.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

/// Position ids as Hugging Face `generate()` derives them from a `[batch, len]` 0/1 attention
/// mask: `cumsum(mask) - 1`, with padded positions set to 1.
///
/// Under left padding this gives every sample positions `0, 1, ...` from its first real token,
/// so a padded sample computes the same logits as the unpadded sequence.
pub fn position_ids_from_mask<B: Backend>(attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
    let padding = attention_mask.clone().equal_elem(0);
    attention_mask.cumsum(1).sub_scalar(1).mask_fill(padding, 1)
}

/// Which keys each query may NOT see: `[batch, 1, seq, total]`, `true` = blocked.
///
/// `attention_mask` is `[batch, total]` over the cached keys followed by the `seq` new ones
/// (Hugging Face semantics: the mask always covers the whole sequence so far). Query `i` (the
/// key at index `total - seq + i`) is blocked from later keys (causal) and from padding keys.
pub(crate) fn blocked_keys<B: Backend>(
    attention_mask: Tensor<B, 2, Int>,
    seq: usize,
) -> Tensor<B, 4, Bool> {
    let [batch, total] = attention_mask.dims();
    let device = attention_mask.device();
    let past = (total - seq) as i64;
    let queries = Tensor::<B, 1, Int>::arange(past..total as i64, &device)
        .reshape([seq, 1])
        .expand([seq, total]);
    let keys = Tensor::<B, 1, Int>::arange(0..total as i64, &device)
        .reshape([1, total])
        .expand([seq, total]);
    let future = keys.greater(queries).reshape([1, 1, seq, total]);
    let padding = attention_mask.equal_elem(0).reshape([batch, 1, 1, total]);
    future
        .expand([batch, 1, seq, total])
        .bool_or(padding.expand([batch, 1, seq, total]))
}
