//! LoRA for vlm: adapter layers over frozen linears, target selection by module name as PEFT
//! does it, merge/unmerge, and PEFT-compatible adapter files.
//!
//! Model-agnostic: depends only on `vlm-hf`. A model takes adapters by implementing
//! [`AdaptableModel`]: its projections are [`LoraLinear`]s (a plain linear until an adapter is
//! attached), listed under the module paths PEFT would see for the checkpoint layout.
//!
//! ```no_run
//! use burn::tensor::backend::Backend;
//! use vlm_lora::{AdaptableModel, LoraConfig, LoraError, TargetModules};
//!
//! fn finetune<B: Backend, M: AdaptableModel<B>>(model: M) -> Result<M, LoraError> {
//!     let config = LoraConfig::new(128, 32.0, TargetModules::parse("c_attn|w1|w2"))
//!         .with_dropout(0.1);
//!     let model = vlm_lora::apply(model, &config)?; // base frozen, adapters trainable
//!     // ... train ...
//!     vlm_lora::save_adapter(&model, &config, "out/adapter")?; // PEFT loads this folder
//!     Ok(vlm_lora::merge(model)) // inference at base-model cost
//! }
//! ```
//!
//! # Semantics (PEFT 0.21)
//!
//! - Forward: `y = base(x) + B(A(dropout(x))) * scaling`, `scaling = alpha / r` or
//!   `alpha / sqrt(r)` with rsLoRA; dropout only on an autodiff backend (training).
//! - Initialisation: `A` kaiming-uniform (`a = sqrt(5)`: uniform in `±1/sqrt(in)`), `B` zeros.
//! - Targets: [`TargetModules`] (a name list matched exactly or as a `.`-suffix, or one regex
//!   matched against the whole path).
//! - Freezing: [`apply`] and [`load_adapter`] leave only the adapters requiring gradients, so
//!   base weights get no gradient and no optimizer state; [`unfreeze`] opts modules back in.
//! - Files: [`save_adapter`] / [`load_adapter`] read and write PEFT's `adapter_config.json`
//!   and `adapter_model.safetensors` (`base_model.model.<path>.lora_A.weight` `[r, in]`,
//!   `...lora_B.weight` `[out, r]`).
//!
//! # Forward pass: factored, not dense
//!
//! PEFT computes `base(x) + B(A(dropout(x))) * s`; the alternative forms `W + s A B` on every
//! forward and runs one matmul (what a dense "LoRA linear", such as a `W + s*A*B` module,
//! does). Measured with `cargo bench -p vlm-lora --bench lora_forward`: a `512 -> 1408`
//! linear, `r = 8`, `1040 x 512` activations, Flex f32 on the 2-core CPU machine
//! (2026-11-24), medians of 40 interleaved rounds, two runs:
//!
//! | pass                       | factored (PEFT) | dense `W + sAB` | dense / factored |
//! |----------------------------|-----------------|-----------------|------------------|
//! | forward, run 1             | 24.26 ms        | 22.36 ms        | 0.92             |
//! | forward + backward, run 1  | 34.21 ms        | 45.61 ms        | 1.33             |
//! | forward, run 2             | 24.97 ms        | 21.66 ms        | 0.87             |
//! | forward + backward, run 2  | 30.26 ms        | 42.24 ms        | 1.40             |
//!
//! Dense is ~10% faster forward (the factored form adds an output-sized rank-8 matmul and
//! sum), but 1.33-1.40x slower to train: its backward computes the full `[in, out]` gradient
//! `x^T dy` of the combined weight, as large as the base matmul, only to reduce it to `A` and
//! `B`, while the factored form never touches a gradient of the frozen `W`. Dense also cannot
//! apply dropout to the adapter's input alone, which PEFT does. So [`LoraAdapter::forward`]
//! is factored (training is what unmerged adapters are for), and [`merge`] gives inference
//! the base model's cost, better than either.

//! # Checked against PEFT
//!
//! `crates/vlm-qwen/tests/lora_peft.rs` loads the committed peft adapters (`lora`,
//! `lora_rslora`, `lora_regex`, and `lora_v1` in the v1 layout) and matches peft's logits and
//! `merge_and_unload` logits within 1e-4 (measured: at most 3.4e-6). The other direction:
//! `crates/vlm-qwen/tests/lora_training.rs` trains adapters here (AdamW, dropout 0.1, three
//! steps), saves them with [`save_adapter`], our logits and the merged model (via
//! `QwenModel::save_merged`) under `target/tmp/vlm-lora-peft-check/<base>/`, and
//! `tools/reference/check_adapter.py` loads them into peft 0.21.2 / transformers 4.57.6 (one
//! run; training starts from a random `A` and random dropout masks, so the last digits vary):
//!
//! ```text
//! $ cargo test -p vlm-qwen --test lora_training
//! $ for b in qwen2_tied qwen_v1; do tools/reference/.venv/bin/python \
//!       tools/reference/check_adapter.py target/tmp/vlm-lora-peft-check/$b/adapter; done
//! target/tmp/vlm-lora-peft-check/qwen2_tied/adapter: peft PeftType.LORA r=4 alpha=8 rslora=True targets=['k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'] over /work/main/data/fixtures/qwen2_tied (10 adapted modules)
//!   max |base logits - ours|        = 3.938e+00 (the adapter's effect)
//!   max |peft logits - ours|        = 1.788e-06
//!   max |peft merged logits - ours| = 2.265e-06
//!   max |our merged folder in transformers (from_pretrained) - ours| = 2.265e-06
//! target/tmp/vlm-lora-peft-check/qwen_v1/adapter: peft PeftType.LORA r=4 alpha=32 rslora=False targets=['c_attn', 'w1', 'w2'] over /work/main/data/fixtures/qwen_v1 (v1 as its Qwen2 equivalent, 10 adapted modules)
//!   max |base logits - ours|        = 2.825e+00 (the adapter's effect)
//!   max |peft logits - ours|        = 1.111e-06
//!   max |peft merged logits - ours| = 9.732e-07
//!   max |our merged folder in transformers (as its Qwen2 equivalent) - ours| = 9.732e-07
//! ```
//!
//! transformers cannot run v1 (`trust_remote_code`), so v1 adapters and checkpoints are
//! checked through the Qwen2 model with the same weights: a LoRA on the fused `c_attn` (one
//! `A` `[r, h]`, `B` `[3h, r]`) equals LoRAs on `q_proj`/`k_proj`/`v_proj` that share `A`
//! and take `B`'s row thirds (`tools/reference/qwen_v1_lora.py`; fixture `lora_v1`).

#![warn(missing_docs)]

mod adapter;
mod adapter_file;
mod apply;
mod config;
mod error;
mod freeze;
mod linear;
mod merge;
mod model;
mod peft_config;
mod target;

pub use adapter::LoraAdapter;
pub use adapter_file::{load_adapter, save_adapter};
pub use apply::apply;
pub use config::LoraConfig;
pub use error::LoraError;
pub use freeze::unfreeze;
pub use linear::LoraLinear;
pub use merge::{merge, merge_and_unload, unmerge};
pub use model::{adapted_modules, adapter_params, AdaptableModel};
pub use target::TargetModules;
