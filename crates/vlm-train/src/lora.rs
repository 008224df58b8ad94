//! The language model as a run trains it: with fresh LoRA adapters in mode `lora`, on the
//! projections of its model family unless the run names others.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use vlm_lora::{AdaptableModel, LoraConfig, TargetModules};
use vlm_qwen::{QwenModel, QwenVariant};

use crate::{TrainConfig, TrainError};

/// The linears a LoRA run adapts when `target_modules` is not set: every attention and MLP
/// projection of the family, as LLaVA's and Qwen's LoRA recipes do. Qwen2/2.5/3:
/// `q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj`; Qwen v1: the seed's
/// `c_attn, w1, w2`.
pub fn default_target_modules(variant: QwenVariant) -> TargetModules {
    match variant {
        QwenVariant::V1 => TargetModules::names(["c_attn", "w1", "w2"]),
        QwenVariant::Qwen2 | QwenVariant::Qwen3 => TargetModules::names([
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]),
    }
}

/// `llm` ready for the run's mode: in mode `lora`, every parameter frozen and a fresh
/// adapter (the run's [`TrainConfig::lora`] settings for the model's family) attached to
/// each targeted linear, with a warning on stderr for each adapter whose rank exceeds the
/// width of its linear (see [`rank_warnings`]); in the other modes, `llm` as given. Also
/// returns the LoRA settings used, which the checkpoint's adapter files record.
pub fn attach_lora<B: Backend>(
    llm: QwenModel<B>,
    config: &TrainConfig,
) -> Result<(QwenModel<B>, Option<LoraConfig>), TrainError> {
    let Some(lora) = config.lora(llm.config().variant) else {
        return Ok((llm, None));
    };
    let llm = vlm_lora::apply(llm, &lora)?;
    for warning in rank_warnings(&llm) {
        eprintln!("warning: {warning}");
    }
    Ok((llm, Some(lora)))
}

/// One line per kind of adapted linear (the last part of its path) whose adapter's rank is
/// above the linear's smaller width: such an update has no more freedom than rank = width,
/// so the extra rank only costs memory and time.
pub fn rank_warnings<B: Backend, M: AdaptableModel<B>>(model: &M) -> Vec<String> {
    let mut narrow: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    model.visit_linears(&mut |path, linear| {
        let Some(adapter) = &linear.adapter else {
            return;
        };
        let width = linear.d_input().min(linear.d_output());
        if adapter.rank() > width {
            let name = path.rsplit('.').next().unwrap_or(path).to_string();
            narrow.insert(name, (adapter.rank(), width));
        }
    });
    narrow
        .into_iter()
        .map(|(name, (rank, width))| {
            format!(
                "LoRA rank {rank} exceeds the width {width} of `{name}`: the update cannot \
                 use more than rank {width} (lower lora_rank)"
            )
        })
        .collect()
}
