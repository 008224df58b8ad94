//! Checkpoints: save -> load gives bit-identical logits; broken checkpoints are typed errors
//! naming what is wrong; writes replace a previous checkpoint atomically; the LoRA adapter
//! hook.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use common::Llava;
use vlm_model::{
    load_checkpoint, ChatTemplateConfig, LlavaLayout, ModelError, PixelShuffleProjector,
    StagedCheckpoint, VisionLanguageModel, VisionTower, VisionTowerConfig, VlmBatch, VlmConfig,
    CONFIG_FILE, PROJECTOR_FILE,
};
use vlm_qwen::QwenModel;
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{FeatureSelection, SelectStrategy};

fn chatml() -> ChatTemplateConfig {
    ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: Some("You are a helpful assistant.".into()),
    }
}

/// The llava fixture's model and the config describing it: tower and language model both
/// come from the LLaVA checkpoint itself.
fn llava_with_config() -> (Llava, VlmConfig) {
    let llava = Llava::load("llava");
    let vision = VisionTowerConfig {
        path: fixture("llava"),
        weight_prefix: LlavaLayout::Legacy.vision_prefix().into(),
        feature_layer: -2,
        feature_strategy: SelectStrategy::Full,
    };
    let config = VlmConfig::for_model(&llava.model, fixture("llava"), vision, chatml());
    (llava, config)
}

fn bits(logits: Tensor<TestBackend, 3>) -> Vec<u32> {
    logits.into_data().iter::<f32>().map(f32::to_bits).collect()
}

#[test]
fn saved_llava_loads_back_with_bit_identical_logits() {
    let (llava, config) = llava_with_config();
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("checkpoints/step-100");
    let written = llava.model.save_checkpoint(&dir, &config).expect("save");
    assert_eq!(written, dir);

    let (loaded, loaded_config) = load_checkpoint::<TestBackend>(&dir, &device()).expect("load");
    assert_eq!(loaded_config, config);
    let before = llava.model.forward(llava.batch()).expect("forward");
    let after = loaded.forward(llava.batch()).expect("forward loaded");
    assert!(
        bits(before) == bits(after),
        "logits differ after save -> load"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE)).expect("read")).expect("json");
    assert_eq!(json["vision_tower"]["vision_feature_layer"], -2);
    assert_eq!(
        json["vision_tower"]["vision_feature_select_strategy"],
        "full"
    );
    assert_eq!(json["projector"]["kind"]["type"], "mlp2x_gelu");
    assert_eq!(json["image_token_id"], 511);
    assert_eq!(json["tokens_per_image"], 16);
    assert!(json.get("adapter").is_none());
    let projector = vlm_hf::WeightStore::open_file(dir.join(PROJECTOR_FILE)).expect("projector");
    assert_eq!(
        projector.keys(),
        [
            "multi_modal_projector.linear_1.bias",
            "multi_modal_projector.linear_1.weight",
            "multi_modal_projector.linear_2.bias",
            "multi_modal_projector.linear_2.weight",
        ]
    );
    let leftovers = std::fs::read_dir(dir.parent().expect("parent"))
        .expect("list")
        .count();
    assert_eq!(leftovers, 1, "no staging folder is left behind");
}

#[test]
fn new_pixel_shuffle_projector_round_trips_bit_exactly() {
    let dev = device();
    let selection = FeatureSelection {
        layer: -1,
        strategy: SelectStrategy::Full,
    };
    let tower = VisionTower::load(fixture("siglip_vision"), "vision_model", selection, &dev);
    let llm = QwenModel::<TestBackend>::load(fixture("qwen2_tied"), &dev).expect("llm");
    let projector = PixelShuffleProjector::new(32, 64, 2, &dev).expect("projector");
    let model = VisionLanguageModel::new(tower.expect("tower"), projector, llm, 500).expect("vlm");
    assert_eq!(model.tokens_per_image(), 4, "4 x 4 patches merged 2 x 2");
    let vision = VisionTowerConfig {
        path: fixture("siglip_vision"),
        weight_prefix: "vision_model".into(),
        feature_layer: -1,
        feature_strategy: SelectStrategy::Full,
    };
    let config = VlmConfig::for_model(&model, fixture("qwen2_tied"), vision, chatml());
    let out = tempfile::tempdir().expect("tempdir");
    model
        .save_checkpoint(out.path().join("ckpt"), &config)
        .expect("save");
    let (loaded, _) = load_checkpoint::<TestBackend>(out.path().join("ckpt"), &dev).expect("load");

    let ids = common::ids_tensor(&[vec![3, 500, 500, 500, 500, 7, 9], vec![0, 0, 4, 5, 6, 7, 8]]);
    let mask = common::ids_tensor(&[vec![1; 7], vec![0, 0, 1, 1, 1, 1, 1]]);
    let batch = VlmBatch {
        input_ids: ids,
        attention_mask: Some(mask),
        pixel_values: Some(Tensor::random(
            [1, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        )),
    };
    let before = model.forward(batch.clone()).expect("forward");
    let after = loaded.forward(batch).expect("forward loaded");
    assert!(
        bits(before) == bits(after),
        "logits differ after save -> load"
    );
}

/// Saves the llava fixture's checkpoint into a new temporary folder.
fn saved_llava() -> (Llava, VlmConfig, tempfile::TempDir, PathBuf) {
    let (llava, config) = llava_with_config();
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("ckpt");
    llava.model.save_checkpoint(&dir, &config).expect("save");
    (llava, config, out, dir)
}

fn load_err(dir: &Path) -> ModelError {
    match load_checkpoint::<TestBackend>(dir, &device()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(err) => err,
    }
}

#[test]
fn a_missing_file_is_named() {
    let (_llava, _config, _out, dir) = saved_llava();
    std::fs::remove_file(dir.join(PROJECTOR_FILE)).expect("remove");
    let message = load_err(&dir).to_string();
    assert!(message.contains(PROJECTOR_FILE), "{message}");

    std::fs::remove_file(dir.join(CONFIG_FILE)).expect("remove");
    let message = load_err(&dir).to_string();
    assert!(message.contains(CONFIG_FILE), "{message}");
}

#[test]
fn a_projector_of_other_widths_is_named() {
    let (_llava, _config, _out, dir) = saved_llava();
    let other = fixture("projector").join("model.safetensors"); // 32 -> 64, config says 32 -> 48
    std::fs::copy(other, dir.join(PROJECTOR_FILE)).expect("copy");
    let err = load_err(&dir);
    let message = err.to_string();
    assert!(
        matches!(err, ModelError::Hf(vlm_hf::HfError::ShapeMismatch { .. })),
        "{message}"
    );
    assert!(
        message.contains("multi_modal_projector.linear_1.weight"),
        "{message}"
    );
    assert!(message.contains(PROJECTOR_FILE), "{message}");
}

#[test]
fn a_language_model_of_another_width_is_named() {
    let (_llava, mut config, _out, dir) = saved_llava();
    config.language_model = fixture("qwen2_tied"); // hidden 64, the projector makes 48
    let json = serde_json::to_vec_pretty(&config).expect("json");
    std::fs::write(dir.join(CONFIG_FILE), json).expect("write");
    let err = load_err(&dir);
    assert!(
        matches!(
            err,
            ModelError::DimensionMismatch {
                producer: "the projector",
                produced: 48,
                consumer: "the language model",
                expected: 64,
            }
        ),
        "{err}"
    );
}

#[test]
fn a_config_that_does_not_describe_the_model_is_refused() {
    let (llava, mut config) = llava_with_config();
    config.tokens_per_image = 576;
    let out = tempfile::tempdir().expect("tempdir");
    let err = llava
        .model
        .save_checkpoint(out.path().join("ckpt"), &config)
        .expect_err("wrong token count");
    assert!(
        matches!(
            err,
            ModelError::ConfigMismatch {
                field: "tokens_per_image",
                ..
            }
        ),
        "{err}"
    );
    assert!(!out.path().join("ckpt").exists());
}

#[test]
fn saving_again_replaces_the_previous_checkpoint() {
    let (llava, mut config, out, dir) = saved_llava();
    config.chat_template.system_prompt = None;
    llava
        .model
        .save_checkpoint(&dir, &config)
        .expect("save again");
    let (_, loaded) = load_checkpoint::<TestBackend>(&dir, &device()).expect("load");
    assert_eq!(loaded.chat_template.system_prompt, None);
    let entries = std::fs::read_dir(out.path()).expect("list").count();
    assert_eq!(
        entries, 1,
        "neither the staging folder nor the old checkpoint is left"
    );
}

#[test]
fn the_adapter_hook_must_be_filled_before_commit() {
    let (llava, mut config) = llava_with_config();
    config.adapter = Some(PathBuf::from("adapter"));
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("ckpt");
    let err = llava
        .model
        .save_checkpoint(&dir, &config)
        .expect_err("no adapter written");
    assert!(matches!(err, ModelError::Adapter { .. }), "{err}");
    assert!(!dir.exists());

    let staged = StagedCheckpoint::new(&dir, &llava.model, &config).expect("stage");
    std::fs::create_dir(staged.path().join("adapter")).expect("adapter folder");
    staged.commit().expect("commit");
    assert!(dir.join("adapter").is_dir());
    let err = load_err(&dir);
    assert!(matches!(err, ModelError::Adapter { .. }), "{err}");
}
