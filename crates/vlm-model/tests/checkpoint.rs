//! Checkpoints: save -> load gives bit-identical logits; broken checkpoints are typed errors
//! naming what is wrong; writes replace a previous checkpoint atomically; the LoRA adapter
//! hook.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use common::Llava;
use vlm_model::{
    load_checkpoint, ChatTemplateConfig, ModelError, PixelShuffleProjector, StagedCheckpoint,
    VisionLanguageModel, VisionTower, VisionTowerConfig, VlmBatch, VlmConfig, CONFIG_FILE,
    PROJECTOR_FILE, TOKENIZER_FILE,
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
        weight_prefix: None,
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
    let tower = VisionTower::load(fixture("siglip_vision"), None, selection, &dev);
    let llm = QwenModel::<TestBackend>::load(fixture("qwen2_tied"), &dev).expect("llm");
    let projector = PixelShuffleProjector::new(32, 64, 2, &dev).expect("projector");
    let model = VisionLanguageModel::new(tower.expect("tower"), projector, llm, 500).expect("vlm");
    assert_eq!(model.tokens_per_image(), 4, "4 x 4 patches merged 2 x 2");
    let vision = VisionTowerConfig {
        path: fixture("siglip_vision"),
        weight_prefix: None,
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

#[test]
fn a_recorded_tokenizer_must_be_written_before_commit_and_is_read_back() {
    let (llava, mut config) = llava_with_config();
    config.tokenizer = Some(PathBuf::from(TOKENIZER_FILE));
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("ckpt");
    let err = llava
        .model
        .save_checkpoint(&dir, &config)
        .expect_err("no tokenizer written");
    assert!(matches!(err, ModelError::MissingTokenizer { .. }), "{err}");
    assert!(err.to_string().contains(TOKENIZER_FILE), "{err}");
    assert!(!dir.exists());

    let staged = StagedCheckpoint::new(&dir, &llava.model, &config).expect("stage");
    std::fs::write(staged.path().join(TOKENIZER_FILE), "{}").expect("tokenizer");
    staged.commit().expect("commit");
    let (_, loaded) = load_checkpoint::<TestBackend>(&dir, &device()).expect("load");
    assert_eq!(loaded.tokenizer, Some(PathBuf::from(TOKENIZER_FILE)));
}

/// The VLM [`siglip_qwen_vlm`] builds.
type ShuffleVlm = VisionLanguageModel<
    TestBackend,
    VisionTower<TestBackend>,
    PixelShuffleProjector<TestBackend>,
    QwenModel<TestBackend>,
>;

/// A VLM over qwen2_tied (siglip tower, fresh pixel-shuffle projector) whose language model
/// is `llm`, with the config describing it.
fn siglip_qwen_vlm(llm: QwenModel<TestBackend>) -> (ShuffleVlm, VlmConfig) {
    let dev = device();
    let selection = FeatureSelection {
        layer: -1,
        strategy: SelectStrategy::Full,
    };
    let tower = VisionTower::load(fixture("siglip_vision"), None, selection, &dev);
    let projector = PixelShuffleProjector::new(32, 64, 2, &dev).expect("projector");
    let model = VisionLanguageModel::new(tower.expect("tower"), projector, llm, 500).expect("vlm");
    let vision = VisionTowerConfig {
        path: fixture("siglip_vision"),
        weight_prefix: None,
        feature_layer: -1,
        feature_strategy: SelectStrategy::Full,
    };
    let config = VlmConfig::for_model(&model, fixture("qwen2_tied"), vision, chatml());
    (model, config)
}

fn siglip_qwen_batch() -> VlmBatch<TestBackend> {
    let ids = common::ids_tensor(&[vec![3, 500, 500, 500, 500, 7, 9], vec![0, 0, 4, 5, 6, 7, 8]]);
    let mask = common::ids_tensor(&[vec![1; 7], vec![0, 0, 1, 1, 1, 1, 1]]);
    VlmBatch {
        input_ids: ids,
        attention_mask: Some(mask),
        pixel_values: Some(Tensor::random(
            [1, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device(),
        )),
    }
}

fn qwen2_tied() -> QwenModel<TestBackend> {
    QwenModel::<TestBackend>::load(fixture("qwen2_tied"), &device()).expect("llm")
}

#[test]
fn a_peft_adapter_travels_with_the_checkpoint_bit_exactly() {
    let adapter = fixture("lora").join("adapter");
    let llm = vlm_lora::load_adapter(qwen2_tied(), &adapter).expect("peft adapter");
    let lora = vlm_lora::LoraConfig::load(&adapter).expect("adapter config");
    let (model, config) = siglip_qwen_vlm(llm);
    assert_eq!(config.adapter, None);
    let out = tempfile::tempdir().expect("tempdir");
    let dir = model
        .save_checkpoint_with_lora(out.path().join("ckpt"), &config, &lora)
        .expect("save");
    assert!(dir.join("adapter/adapter_config.json").is_file());
    assert!(dir.join("adapter/adapter_model.safetensors").is_file());
    assert_eq!(
        vlm_lora::LoraConfig::load(dir.join("adapter")).expect("saved adapter config"),
        lora
    );

    let (loaded, loaded_config) = load_checkpoint::<TestBackend>(&dir, &device()).expect("load");
    assert_eq!(
        loaded_config.adapter,
        Some(PathBuf::from(vlm_model::ADAPTER_DIR))
    );
    assert_eq!(
        vlm_lora::adapted_modules(loaded.language_model()),
        vlm_lora::adapted_modules(model.language_model())
    );
    let batch = siglip_qwen_batch();
    let before = model.forward(batch.clone()).expect("forward");
    let after = loaded.forward(batch.clone()).expect("forward loaded");
    assert!(
        bits(before.clone()) == bits(after),
        "logits differ after save -> load"
    );

    // The adapter matters: without it the language model's logits are the base model's.
    let ids = common::ids_tensor(&[vec![4, 5, 6, 7, 8]]);
    let plain = qwen2_tied()
        .forward(ids.clone(), None, None, None)
        .expect("base");
    let adapted = loaded
        .language_model()
        .forward(ids, None, None, None)
        .expect("adapted");
    assert!(
        bits(plain) != bits(adapted),
        "the adapter changes the logits"
    );
}

#[test]
fn adapters_applied_in_training_are_saved_by_save_checkpoint() {
    let lora = vlm_lora::LoraConfig::new(4, 8.0, vlm_lora::TargetModules::parse("q_proj|v_proj"));
    let llm = vlm_lora::apply(qwen2_tied(), &lora).expect("apply");
    // B starts at zero; give it values, as a training step would.
    use vlm_lora::AdaptableModel;
    let llm = llm.map_linears(&mut |_, mut linear| match linear.adapter.take() {
        Some(adapter) => {
            let b = Tensor::random(
                [linear.d_output(), adapter.rank()],
                burn::tensor::Distribution::Normal(0.0, 0.5),
                &device(),
            );
            let fresh = vlm_lora::LoraAdapter::from_peft(adapter.peft_a(), b, adapter.scaling, 0.0);
            linear.with_adapter(fresh)
        }
        None => linear,
    });
    let (model, config) = siglip_qwen_vlm(llm);
    let out = tempfile::tempdir().expect("tempdir");
    let dir = model
        .save_checkpoint(out.path().join("ckpt"), &config)
        .expect("save");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE)).expect("read")).expect("json");
    assert_eq!(json["adapter"], "adapter");

    let (loaded, _) = load_checkpoint::<TestBackend>(&dir, &device()).expect("load");
    let batch = siglip_qwen_batch();
    let before = model.forward(batch.clone()).expect("forward");
    let after = loaded.forward(batch).expect("forward loaded");
    assert!(
        bits(before) == bits(after),
        "logits differ after save -> load"
    );

    // A checkpoint whose adapter folder went missing is refused, naming the folder.
    std::fs::remove_dir_all(dir.join("adapter")).expect("remove adapter");
    let err = load_err(&dir);
    assert!(matches!(err, ModelError::Adapter { .. }), "{err}");
    assert!(err.to_string().contains("adapter"), "{err}");
    assert!(
        err.to_string()
            .contains(&dir.join("adapter").display().to_string()),
        "{err}"
    );

    // A LoRA config without adapters to save is refused.
    let (plain, config) = siglip_qwen_vlm(qwen2_tied());
    let err = plain
        .save_checkpoint_with_lora(out.path().join("plain"), &config, &lora)
        .expect_err("no adapter to save");
    assert!(matches!(err, ModelError::Adapter { .. }), "{err}");
}

#[test]
fn a_recorded_dtype_is_the_default_type_to_load_in_and_a_bad_one_is_named() {
    use burn::tensor::{DType, TensorCreationOptions};
    use vlm_hf::Precision;

    let (llava, mut config) = llava_with_config();
    config.dtype = Some(Precision::Bf16);
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("ckpt");
    llava.model.save_checkpoint(&dir, &config).expect("save");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE)).expect("read")).expect("json");
    assert_eq!(json["dtype"], "bf16");

    let embedding_dtype = |model: &vlm_model::QwenVlm<TestBackend>| {
        let embeds = model
            .language_model()
            .embed(common::ids_tensor(&[vec![1, 2]]));
        embeds.expect("embed").dtype()
    };
    let (recorded, loaded_config) = load_checkpoint::<TestBackend>(&dir, &device()).expect("bf16");
    assert_eq!(loaded_config.dtype, Some(Precision::Bf16));
    assert_eq!(embedding_dtype(&recorded), DType::BF16, "the recorded type");
    let f32 = TensorCreationOptions::new(device()).with_dtype(DType::F32);
    let (asked, _) = load_checkpoint::<TestBackend>(&dir, f32).expect("f32");
    assert_eq!(
        embedding_dtype(&asked),
        DType::F32,
        "the type asked for wins"
    );

    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).expect("read");
    let bad = text.replace("\"bf16\"", "\"fp8\"");
    std::fs::write(dir.join(CONFIG_FILE), bad).expect("write");
    let message = load_err(&dir).to_string();
    assert!(message.contains(CONFIG_FILE), "{message}");
    assert!(
        message.contains("unknown dtype \"fp8\": expected f32, bf16 or f16"),
        "{message}"
    );
}
