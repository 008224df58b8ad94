//! A whole trained model in one movable folder, as the quickstart writes it: `llm/` (the full
//! language model, saved by `QwenModel::save_merged`), `vision/` (the tower, saved by
//! `SiglipVisionTower::save`) and `checkpoint/` whose `vlm_config.json` names them as
//! `../llm` and `../vision`. It loads back bit-identically, also after the folder moves.

use std::path::{Path, PathBuf};

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use vlm_model::{
    load_checkpoint, ChatTemplateConfig, PixelShuffleProjector, VisionLanguageModel, VisionTower,
    VisionTowerConfig, VlmBatch, VlmConfig,
};
use vlm_qwen::QwenModel;
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{FeatureSelection, SelectStrategy, SiglipVisionTower};

type B = TestBackend;

const IMAGE_ID: u32 = 500;

const FULL: FeatureSelection = FeatureSelection {
    layer: -1,
    strategy: SelectStrategy::Full,
};

/// Writes the SigLIP + pixel-shuffle + Qwen2 model under `root` in the quickstart's layout
/// and returns its logits on `batch`.
fn write_model_folder(root: &Path, batch: VlmBatch<B>) -> Tensor<B, 3> {
    let dev = device();
    let tower = SiglipVisionTower::<B>::load(fixture("siglip_vision"), FULL, &dev).expect("tower");
    tower.save(root.join("vision")).expect("save tower");
    let llm = QwenModel::<B>::load(fixture("qwen2_tied"), &dev).expect("llm");
    let base_config = fixture("qwen2_tied").join("config.json");
    llm.save_merged(root.join("llm"), base_config)
        .expect("save llm");
    let projector = PixelShuffleProjector::new(32, 64, 2, &dev).expect("projector");
    let model = VisionLanguageModel::new(VisionTower::Siglip(tower), projector, llm, IMAGE_ID)
        .expect("vlm");
    let vision = VisionTowerConfig::new("../vision", FULL);
    let chat = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: None,
    };
    let config = VlmConfig::for_model(&model, PathBuf::from("../llm"), vision, chat);
    model
        .save_checkpoint(root.join("checkpoint"), &config)
        .expect("save checkpoint");
    model.forward(batch).expect("forward")
}

fn batch() -> VlmBatch<B> {
    let ids: Vec<i64> = vec![3, 500, 500, 500, 500, 7, 9];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, 7]), &device());
    VlmBatch {
        input_ids: ids,
        attention_mask: None,
        pixel_values: Some(Tensor::random(
            [1, 3, 32, 32],
            Distribution::Normal(0.0, 1.0),
            &device(),
        )),
    }
}

fn bits(logits: Tensor<B, 3>) -> Vec<u32> {
    logits.into_data().iter::<f32>().map(f32::to_bits).collect()
}

#[test]
fn a_model_folder_with_relative_parts_loads_back_and_moves() {
    let batch = batch();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("model");
    let expected = bits(write_model_folder(&root, batch.clone()));

    let moved = dir.path().join("moved");
    std::fs::rename(&root, &moved).expect("move the folder");
    let (loaded, config) = load_checkpoint::<B>(moved.join("checkpoint"), &device()).expect("load");
    assert_eq!(config.language_model, PathBuf::from("../llm"));
    assert!(
        config.adapter.is_none(),
        "a full language model needs no adapter"
    );
    assert!(matches!(loaded.vision(), VisionTower::Siglip(_)));
    let logits = loaded.forward(batch).expect("forward loaded");
    assert!(
        bits(logits) == expected,
        "logits differ after save -> move -> load"
    );
}
