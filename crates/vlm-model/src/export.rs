//! Exporting a checkpoint as a Hugging Face `LlavaForConditionalGeneration` folder, which
//! transformers (`AutoModelForImageTextToText`, `AutoProcessor`), vLLM and the Hub read, and
//! [`load_llava_hf`](crate::load_llava_hf) reads back.
//!
//! The folder holds the whole model in one set of (sharded) safetensors, named by the same
//! [`LlavaLayout`] the loader detects (tower, projector and language model each through
//! its own name table), with the LoRA adapters merged as `merge` merges them;
//! `config.json` (`text_config` from the base language model's config, `vision_config` from
//! the tower); the tokenizer with the image token and the checkpoint's chat template
//! (`tokenizer_config.json`, `chat_template.json`); and the processor files
//! (`preprocessor_config.json`, `processor_config.json`) from which `AutoProcessor` builds a
//! `LlavaProcessor` that expands the image token to the model's image token count.
//!
//! What transformers' LLaVA cannot compute is refused, naming it: the pixel-shuffle
//! projector (see [`export_llava`]), a Qwen v1 language model (no transformers class) and a
//! chat template other than ChatML.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorCreationOptions};
use serde_json::{json, Map, Value};
use vlm_data::chat::Marker;
use vlm_data::{EncoderConfig, Tokenizer};
use vlm_hf::{
    read_config_section, torch_dtype_from_name, torch_dtype_name, write_json, ConfigSection,
    PreprocessorConfig, SafetensorsWriter, StagedDir, TEXT_CONFIG,
};
use vlm_qwen::QwenVariant;
use vlm_vision::{SelectStrategy, VisionEncoder};

use crate::llava::HF_CONFIG;
use crate::{
    load_checkpoint, AnyProjector, ChatTemplateConfig, LlavaLayout, ModelError,
    PersistentProjector, QwenVlm, TransformersLayout, VisionTower, VlmConfig, HF_PROJECTOR_PREFIX,
    TOKENIZER_FILE,
};

/// transformers' default `max_shard_size` before version 5 (5 GB), which both versions load.
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;
/// Name prefix of the hidden folder an export is staged in beside its destination.
const STAGING_PREFIX: &str = ".vlm-export-";
/// Why the pixel-shuffle projector is refused.
const PIXEL_SHUFFLE: &str =
    "the projector is the pixel-shuffle one: `LlavaForConditionalGeneration`'s \
    projector is a two-layer GELU MLP, and the transformers model whose connector computes a \
    pixel shuffle + linear (Idefics3 / SmolVLM) takes its vision features after the tower's \
    final layer norm rather than from `vision_feature_layer` and prompts images with its own \
    tile tokens, so its logits would not be this model's; train with the MLP projector \
    (mlp2x_gelu) to export";

/// How [`export_llava`] writes the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlavaExport {
    /// Whose `save_pretrained` key layout to follow (transformers 5 by default).
    pub layout: TransformersLayout,
    /// The weights' dtype (f32, bf16 or f16); `None`: the base language model's.
    pub dtype: Option<DType>,
    /// The largest safetensors shard, in bytes (a larger tensor gets a shard of its own).
    pub max_shard_bytes: u64,
    /// Replace an existing folder at the destination (refused otherwise).
    pub overwrite: bool,
}

impl Default for LlavaExport {
    fn default() -> Self {
        Self {
            layout: TransformersLayout::default(),
            dtype: None,
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
            overwrite: false,
        }
    }
}

/// Exports the checkpoint folder `checkpoint` (base folders, projector, LoRA adapter; see
/// [`load_checkpoint`]) as a transformers `LlavaForConditionalGeneration` folder at `output`,
/// written atomically (nothing appears there unless every file was written). Returns
/// `output`.
///
/// A SigLIP tower under the `default` feature strategy is exported as `full`: this crate
/// keeps every SigLIP token under both (SigLIP has no CLS token to drop), and `full` is
/// what makes transformers keep them too.
///
/// Refused with [`ModelError::Export`]: an existing `output` without `overwrite`; the
/// pixel-shuffle projector (transformers' LLaVA has only the MLP one, and the architecture
/// whose connector pixel-shuffles, Idefics3, selects and prompts image features
/// differently); a Qwen v1 language model; a chat template other than ChatML; a tokenizer
/// without the image token as a special token.
pub fn export_llava<B: Backend>(
    checkpoint: &Path,
    output: &Path,
    options: &LlavaExport,
    device: &B::Device,
) -> Result<PathBuf, ModelError> {
    if output.exists() && !options.overwrite {
        return Err(ModelError::Export {
            path: output.to_path_buf(),
            reason: "the output folder exists; ask to overwrite it to replace it".to_string(),
        });
    }
    let refuse = |reason: String| ModelError::Export {
        path: checkpoint.to_path_buf(),
        reason,
    };
    // In f32 whatever type it trained in (its `dtype`): the adapter merges at full precision,
    // and the folder is cast once, to the type asked for.
    let f32 = TensorCreationOptions::new(device.clone()).with_dtype(DType::F32);
    let (model, config) = load_checkpoint::<B>(checkpoint, f32)?;
    check_exportable(&model, &config).map_err(refuse)?;
    let text_config = read_config_section(
        checkpoint.join(&config.language_model).join(HF_CONFIG),
        TEXT_CONFIG,
    )?;
    let dtype = options.dtype.unwrap_or_else(|| config_dtype(&text_config));
    let tokens = ExportTokens::read(checkpoint, &config, model.image_token_id()).map_err(refuse)?;
    let staged = StagedDir::new(output, STAGING_PREFIX)?;
    let dir = staged.path();
    model_weights(&model, &LlavaLayout::saved_by(options.layout))
        .cast(dtype)
        .write_sharded(dir, options.max_shard_bytes)?;
    let llava = llava_config(&model, &config, text_config, dtype)?;
    write_json(&dir.join(HF_CONFIG), &llava)?;
    tokens.write(dir, &config.chat_template)?;
    write_json(
        &dir.join(PreprocessorConfig::FILE_NAME),
        model.vision().preprocessing(),
    )?;
    write_json(
        &dir.join("processor_config.json"),
        &processor_config(&model, &llava, &tokens.image),
    )?;
    Ok(staged.commit()?)
}

/// Why transformers' LLaVA cannot express `model`, if it cannot.
fn check_exportable<B: Backend>(model: &QwenVlm<B>, config: &VlmConfig) -> Result<(), String> {
    if matches!(model.projector(), AnyProjector::PixelShuffle(_)) {
        return Err(PIXEL_SHUFFLE.to_string());
    }
    if model.language_model().config().variant == QwenVariant::V1 {
        return Err(
            "the language model is Qwen v1 (`model_type: qwen`), which transformers \
            has no class for"
                .to_string(),
        );
    }
    if config.chat_template.name != ChatTemplateConfig::CHATML {
        return Err(format!(
            "chat_template `{}`: only `{}` is exported",
            config.chat_template.name,
            ChatTemplateConfig::CHATML
        ));
    }
    Ok(())
}

/// The dtype a config records (`dtype`, or `torch_dtype` before transformers 5; in the
/// section or its composite parent), f32 when it records none.
fn config_dtype(section: &ConfigSection) -> DType {
    let recorded = |fields: &Map<String, Value>| {
        ["dtype", "torch_dtype"]
            .iter()
            .find_map(|key| fields.get(*key).and_then(Value::as_str))
            .and_then(torch_dtype_from_name)
    };
    recorded(&section.fields)
        .or_else(|| section.parent.as_ref().and_then(recorded))
        .unwrap_or(DType::F32)
}

/// Every weight of the model under `layout`'s names: the tower's and the projector's in
/// transformers' form, the language model's with its LoRA adapters merged.
fn model_weights<B: Backend>(model: &QwenVlm<B>, layout: &LlavaLayout) -> SafetensorsWriter {
    let mut writer = SafetensorsWriter::new();
    model.vision().add_hf_weights(&mut writer, &layout.vision);
    for (name, data) in model.projector().hf_tensors() {
        let below = name
            .strip_prefix(HF_PROJECTOR_PREFIX)
            .unwrap_or(&name)
            .trim_start_matches('.');
        writer.add_data(vlm_hf::join_key(&layout.projector, below), data);
    }
    model
        .language_model()
        .add_merged_weights_at(&mut writer, &layout.decoder, &layout.lm_head);
    writer
}

/// The feature strategy transformers must be told to compute what `model` computes: SigLIP
/// keeps every token under both strategies here, which is transformers' `full`.
fn exported_strategy<B: Backend>(model: &QwenVlm<B>, config: &VlmConfig) -> SelectStrategy {
    match model.vision() {
        VisionTower::Clip(_) => config.vision_tower.feature_strategy,
        VisionTower::Siglip(_) => SelectStrategy::Full,
    }
}

/// `config.json` of the exported folder.
fn llava_config<B: Backend>(
    model: &QwenVlm<B>,
    config: &VlmConfig,
    text_config: ConfigSection,
    dtype: DType,
) -> Result<Value, ModelError> {
    let dtype_name = torch_dtype_name(dtype);
    let tied = model.language_model().config().tie_word_embeddings;
    let mut text = text_config.fields;
    text.insert("dtype".into(), json!(dtype_name));
    text.insert("tie_word_embeddings".into(), json!(tied));
    text.remove("torch_dtype");
    Ok(json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "dtype": dtype_name,
        "image_token_index": model.image_token_id(),
        "image_seq_length": model.tokens_per_image(),
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": true,
        "vision_feature_layer": config.vision_tower.feature_layer,
        "vision_feature_select_strategy": exported_strategy(model, config),
        "tie_word_embeddings": tied,
        "text_config": text,
        "vision_config": model.vision().hf_config(Some(dtype))?,
    }))
}

/// `processor_config.json`: what `LlavaProcessor` needs to expand one image token into the
/// model's image token count (`(side / patch)^2 + extra tokens - 1 if default`).
fn processor_config<B: Backend>(model: &QwenVlm<B>, llava: &Value, image_token: &str) -> Value {
    let cls_tokens = match model.vision() {
        VisionTower::Clip(_) => 1,
        VisionTower::Siglip(_) => 0,
    };
    json!({
        "processor_class": "LlavaProcessor",
        "image_token": image_token,
        "patch_size": llava["vision_config"]["patch_size"],
        "vision_feature_select_strategy": llava["vision_feature_select_strategy"],
        "num_additional_image_tokens": cls_tokens,
    })
}

/// The tokenizer of a checkpoint and the special tokens the exported folder names.
struct ExportTokens {
    /// The `tokenizer.json` the checkpoint was trained with.
    path: PathBuf,
    /// The image placeholder token (the token of the model's image token id).
    image: String,
    /// ChatML's end of message, which ends an answer.
    im_end: (String, u32),
    /// The padding token.
    pad: (String, u32),
}

impl ExportTokens {
    /// The checkpoint's tokenizer (the one it records, else its language model folder's),
    /// checked to hold the image token id as a special token and ChatML's markers.
    fn read(checkpoint: &Path, config: &VlmConfig, image_id: u32) -> Result<Self, String> {
        let path = match &config.tokenizer {
            Some(file) => checkpoint.join(file),
            None => checkpoint.join(&config.language_model).join(TOKENIZER_FILE),
        };
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| e.to_string())?;
        let image = tokenizer
            .inner()
            .id_to_token(image_id)
            .filter(|_| tokenizer.is_special(image_id))
            .ok_or_else(|| {
                format!(
                    "image_token_index {image_id} is not a special token of {}",
                    path.display()
                )
            })?;
        let token = |name: &str| match tokenizer.token_id(name) {
            Ok(id) => Ok((name.to_string(), id)),
            Err(e) => Err(e.to_string()),
        };
        let pad = token(&EncoderConfig::new(1, 1).pad_token)?;
        Ok(Self {
            im_end: token(Marker::ImEnd.as_str())?,
            pad,
            image,
            path,
        })
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and `chat_template.json` (the
    /// template in both, as transformers 4 and 5 look for it) and `generation_config.json`
    /// (generation stops at ChatML's end of message).
    fn write(&self, dir: &Path, template: &ChatTemplateConfig) -> Result<(), ModelError> {
        let copy = dir.join(TOKENIZER_FILE);
        std::fs::copy(&self.path, &copy).map_err(|source| vlm_hf::HfError::Write {
            path: copy.clone(),
            source,
        })?;
        let chat_template = chatml_jinja(template.system_prompt.as_deref(), &self.image);
        let tokenizer_config = json!({
            "tokenizer_class": "Qwen2Tokenizer",
            "eos_token": self.im_end.0,
            "pad_token": self.pad.0,
            "bos_token": null,
            "unk_token": null,
            "extra_special_tokens": { "image_token": self.image },
            "clean_up_tokenization_spaces": false,
            "split_special_tokens": false,
            "chat_template": chat_template,
        });
        write_json(&dir.join("tokenizer_config.json"), &tokenizer_config)?;
        write_json(
            &dir.join("chat_template.json"),
            &json!({ "chat_template": chat_template }),
        )?;
        let generation = json!({
            "eos_token_id": self.im_end.1,
            "pad_token_id": self.pad.1,
        });
        write_json(&dir.join("generation_config.json"), &generation)?;
        Ok(())
    }
}

/// The Jinja form of `vlm_data::ChatTemplate` (ChatML, `system` as the default system
/// message): a message's content is a string (`<image>` marking the image) or transformers'
/// list of `{"type": "image"}` / `{"type": "text", "text": ...}` items; either way the image
/// becomes one `image_token`, which the processor expands.
fn chatml_jinja(system: Option<&str>, image_token: &str) -> String {
    let literal = |text: &str| Value::String(text.to_string()).to_string();
    let (start, end) = (Marker::ImStart.as_str(), Marker::ImEnd.as_str());
    let image = literal(image_token);
    let default_system = match system {
        Some(system) => format!(
            "{{% if messages[0]['role'] != 'system' %}}{start}system\n{{{{ {} }}}}{end}\n{{% endif %}}",
            literal(system)
        ),
        None => String::new(),
    };
    format!(
        "{default_system}{{% for message in messages %}}{start}{{{{ message['role'] }}}}\n\
         {{% if message['content'] is string %}}{{{{ message['content'] | replace({placeholder}, {image}) }}}}\
         {{% else %}}{{% for item in message['content'] %}}\
         {{% if item['type'] == 'image' %}}{{{{ {image} }}}}\
         {{% elif item['type'] == 'text' %}}{{{{ item['text'] }}}}{{% endif %}}{{% endfor %}}{{% endif %}}\
         {end}\n{{% endfor %}}{{% if add_generation_prompt %}}{start}assistant\n{{% endif %}}",
        placeholder = literal(vlm_data::IMAGE_PLACEHOLDER),
    )
}
