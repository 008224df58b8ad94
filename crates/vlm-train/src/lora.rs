//! The language model as a run trains it: with fresh LoRA adapters in mode `lora`.

use burn::tensor::backend::Backend;
use vlm_lora::{AdaptableModel, LoraConfig};

use crate::{TrainConfig, TrainError};

/// `llm` ready for the run's mode: in mode `lora`, every parameter frozen and a fresh
/// adapter (the run's [`TrainConfig::lora`] settings) attached to each targeted linear; in
/// the other modes, `llm` as given. Also returns the LoRA settings used, which the
/// checkpoint's adapter files record.
pub fn attach_lora<B: Backend, M: AdaptableModel<B>>(
    llm: M,
    config: &TrainConfig,
) -> Result<(M, Option<LoraConfig>), TrainError> {
    match config.lora() {
        Some(lora) => Ok((vlm_lora::apply(llm, &lora)?, Some(lora))),
        None => Ok((llm, None)),
    }
}
