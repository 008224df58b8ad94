//! The `merge` example: a checkpoint carrying the PEFT `lora` fixture's adapter over the
//! `qwen2_tied` fixture, merged into a plain Hugging Face folder whose logits equal the
//! adapter model's within 1e-4 (and differ from the base model's).

mod common;

use std::path::Path;
use std::process::Command;

use common::{example, random_projector, siglip_tower};
use vlm::burn::tensor::{Int, Tensor, TensorData};
use vlm::lora::load_adapter;
use vlm::model::{
    load_checkpoint, load_language_model, ChatTemplateConfig, VisionLanguageModel, VlmConfig,
};
use vlm::qwen::QwenModel;
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};

type B = TestBackend;

/// A checkpoint over `qwen2_tied` with the `lora` fixture's adapter (image token id 500).
fn lora_checkpoint(dir: &Path) {
    let dev = device();
    let (tower, vision) = siglip_tower();
    let base = load_language_model::<B>(fixture("qwen2_tied"), &dev).expect("base");
    let adapted = load_adapter(base, fixture("lora").join("adapter")).expect("adapter");
    let model = VisionLanguageModel::new(vision, random_projector(), adapted, 500);
    let model = model.expect("model");
    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: None,
    };
    let config = VlmConfig::for_model(&model, fixture("qwen2_tied"), tower, template);
    model.save_checkpoint(dir, &config).expect("save");
}

fn logits(model: &QwenModel<B>) -> Tensor<B, 3> {
    let ids: Vec<i64> = vec![3, 17, 42, 7, 260, 511, 0, 99];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, 8]), &device());
    model.forward(ids, None, None, None).expect("forward")
}

#[test]
fn the_merged_folder_gives_the_adapter_models_logits() {
    let work = tempfile::tempdir().expect("tempdir");
    let checkpoint = work.path().join("checkpoint");
    lora_checkpoint(&checkpoint);
    let merged = work.path().join("merged");
    let output = Command::new(example("merge"))
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg("--out")
        .arg(&merged)
        .output()
        .expect("run merge");
    assert!(output.status.success(), "{output:?}");

    let dev = device();
    let (adapted, _) = load_checkpoint::<B>(&checkpoint, &dev).expect("checkpoint");
    let expected = logits(adapted.language_model());
    let merged = QwenModel::<B>::load(&merged, &dev).expect("merged folder");
    let diff = max_abs_diff(&logits(&merged), &expected);
    eprintln!("merged vs adapter model: max |logit difference| {diff:e}");
    assert!(diff < 1e-4, "merged logits differ by {diff}");
    let base = QwenModel::<B>::load(fixture("qwen2_tied"), &dev).expect("base");
    let moved = max_abs_diff(&logits(&base), &expected);
    assert!(moved > 0.1, "the adapter changes the logits ({moved})");
}

#[test]
fn a_checkpoint_without_adapter_is_refused() {
    let output = Command::new(example("merge"))
        .arg("--checkpoint")
        .arg(common::checkpoint())
        .args(["--out", "unused"])
        .output()
        .expect("run merge");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no LoRA adapter"), "{stderr}");
    assert!(!Path::new("unused").exists());
}
