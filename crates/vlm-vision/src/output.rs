use burn::tensor::{backend::Backend, Tensor};

/// Everything a Hugging Face vision model returns with `output_hidden_states=True`, for
/// checking a tower against transformers or using CLIP's pooled embedding.
#[derive(Debug, Clone)]
pub struct VisionOutput<B: Backend> {
    /// `hidden_states`: entry 0 is the embedding output (after CLIP's `pre_layrnorm`), entry
    /// `i` the output of encoder layer `i`; no final norm on any of them.
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// `last_hidden_state`: the last layer's output; SigLIP applies `post_layernorm` to it,
    /// CLIP does not.
    pub last_hidden_state: Tensor<B, 3>,
    /// `pooler_output`: CLIP's `post_layernorm` of the CLS token, `[batch, hidden]`. `None`
    /// for SigLIP, whose attention-pool head is not loaded.
    pub pooler_output: Option<Tensor<B, 2>>,
}
