//! Building Burn modules from a [`WeightStore`], one tensor at a time.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::{HfError, WeightStore};

/// A weight store and the device its tensors go to.
pub(crate) struct Loader<'a, B: Backend> {
    store: &'a WeightStore,
    device: &'a B::Device,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub(crate) fn new(store: &'a WeightStore, device: &'a B::Device) -> Self {
        Self { store, device }
    }

    pub(crate) fn device(&self) -> &B::Device {
        self.device
    }

    /// Reads one float tensor of exactly `shape`.
    pub(crate) fn tensor<const D: usize>(
        &self,
        key: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, HfError> {
        self.store.float(key, shape, self.device)
    }

    /// Reads `{prefix}.weight` (`[d_out, d_in]`, Hugging Face layout) and `{prefix}.bias`.
    pub(crate) fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear<B>, HfError> {
        let weight = self.tensor(&format!("{prefix}.weight"), [d_out, d_in])?;
        let bias = if bias {
            Some(self.tensor(&format!("{prefix}.bias"), [d_out])?)
        } else {
            None
        };
        Ok(linear(weight, bias))
    }

    /// Reads an RMSNorm weight of size `dim`.
    pub(crate) fn rms_norm(&self, key: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, HfError> {
        Ok(RmsNorm {
            gamma: Param::from_tensor(self.tensor(key, [dim])?),
            epsilon: eps,
        })
    }

    /// Reads a `[vocab, dim]` embedding table.
    pub(crate) fn embedding(
        &self,
        key: &str,
        vocab: usize,
        dim: usize,
    ) -> Result<Embedding<B>, HfError> {
        Ok(Embedding {
            weight: Param::from_tensor(self.tensor(key, [vocab, dim])?),
        })
    }
}

/// A Burn [`Linear`] from a Hugging Face `[d_out, d_in]` weight (Burn stores `[d_in, d_out]`).
pub(crate) fn linear<B: Backend>(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias: bias.map(Param::from_tensor),
    }
}
