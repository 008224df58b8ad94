//! `export`: a small LoRA checkpoint written as a transformers `LlavaForConditionalGeneration`
//! folder. transformers 5.25 reads it as we do (`data/fixtures/llava_export/`, written by
//! `tools/reference/export_reference.py` from the folder this test's ignored
//! `write_exported_folder` exports); it loads back through `load_llava_hf` with the logits of
//! the checkpoint it came from; what transformers cannot express is refused.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{checkpoint, example};
use vlm::burn::tensor::{DType, Tensor};
use vlm::data::{Conversation, EncoderConfig, SampleEncoder, Tokenizer};
use vlm::hf::{read_config, write_json, WeightStore};
use vlm::image::ImageProcessor;
use vlm::lora::merge_and_unload;
use vlm::model::{
    export_llava, load_checkpoint, load_llava_hf, LlavaExport, LlavaLayout, ModelError, QwenVlm,
    TransformersLayout, VisionLanguageModel, VlmBatch, VlmConfig, CONFIG_FILE, PROJECTOR_FILE,
};
use vlm::qwen::GenerationConfig;
use vlm::vision::VisionEncoder;
use vlm_testkit::{assert_close, device, fixture, max_abs_diff, TestBackend};

type B = TestBackend;

/// transformers' logits against ours.
const TOL: f32 = 1e-4;
/// The question the reference asks about the image (`export_reference.py`'s `QUESTION`).
const QUESTION: &str = "<image>\nWhat is in the picture?";
/// The image the reference is about.
const IMAGE: &str = "sample/images/train_0000.png";

/// The LoRA checkpoint: the programs' test checkpoint (SigLIP fixture tower, random MLP
/// projector, random Qwen2 over the real tokenizer) with the PEFT fixture adapter
/// (`lora/adapter`: `init_lora_weights = false`, so B is not zero) over its language model.
fn lora_checkpoint(root: &Path) -> PathBuf {
    let base = checkpoint();
    let dir = root.join("lora-checkpoint");
    let adapter = dir.join("adapter");
    fs::create_dir_all(&adapter).expect("checkpoint dir");
    fs::copy(base.join(PROJECTOR_FILE), dir.join(PROJECTOR_FILE)).expect("copy projector");
    let source = fixture("lora/adapter");
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        fs::copy(source.join(file), adapter.join(file)).expect("copy adapter");
    }
    let mut config: VlmConfig = read_config(base.join(CONFIG_FILE)).expect("config");
    config.adapter = Some(PathBuf::from("adapter"));
    write_json(&dir.join(CONFIG_FILE), &config).expect("write config");
    dir
}

/// A temporary folder under Cargo's target tmp folder.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// Exports `checkpoint` into `out` with `options`.
fn export(checkpoint: &Path, out: &Path, options: &LlavaExport) -> Result<PathBuf, ModelError> {
    export_llava::<B>(checkpoint, out, options, &device())
}

/// The reference's prompt, encoded by our template and tokenizer, with our pixels of
/// [`IMAGE`] for `model`.
fn prompt(
    model: &QwenVlm<B>,
    tokenizer: &Path,
    system: Option<String>,
) -> (Vec<u32>, Tensor<B, 4>) {
    let tokenizer = Tokenizer::from_file(tokenizer).expect("tokenizer");
    let template = match system {
        Some(system) => vlm::data::ChatTemplate::new(system),
        None => vlm::data::ChatTemplate::without_system(),
    };
    let config = EncoderConfig::new(model.tokens_per_image(), 4096);
    let encoder = SampleEncoder::new(tokenizer, template, config).expect("encoder");
    let conversation: Conversation = serde_json::from_value(serde_json::json!({
        "id": "export",
        "image": IMAGE,
        "turns": [{"role": "user", "text": QUESTION}],
    }))
    .expect("conversation");
    let ids = encoder
        .encode_prompt(&conversation)
        .expect("prompt")
        .input_ids;
    let processor = ImageProcessor::new(model.vision().preprocessing().clone());
    let pixels = processor
        .process_path(fixture("..").join(IMAGE))
        .expect("image");
    let [c, h, w] = pixels.shape;
    let data = vlm::burn::tensor::TensorData::new(pixels.data, [1, c, h, w]);
    (ids, Tensor::from_data(data, &device()))
}

fn batch(ids: &[u32], pixels: &Tensor<B, 4>) -> VlmBatch<B> {
    VlmBatch::left_padded(&[ids.to_vec()], 0, Some(pixels.clone()), &device()).expect("batch")
}

/// `[seq, vocab]` logits of `model` on one prompt.
fn logits(model: &QwenVlm<B>, ids: &[u32], pixels: &Tensor<B, 4>) -> Tensor<B, 2> {
    let logits = model.forward(batch(ids, pixels)).expect("forward");
    let [_, seq, vocab] = logits.dims();
    logits.reshape([seq, vocab])
}

/// Writes the exported folder `export_reference.py` reads to `$VLM_EXPORT_DIR`
/// (`tools/reference/regenerate.sh` runs it).
#[test]
#[ignore = "fixture generation: run by tools/reference/regenerate.sh"]
fn write_exported_folder() {
    let out = std::env::var_os("VLM_EXPORT_DIR").expect("VLM_EXPORT_DIR");
    let root = scratch();
    let options = LlavaExport {
        overwrite: true,
        ..LlavaExport::default()
    };
    export(&lora_checkpoint(root.path()), Path::new(&out), &options).expect("export");
}

#[test]
fn transformers_reads_the_export_as_we_do() {
    let root = scratch();
    let checkpoint = lora_checkpoint(root.path());
    let folder = root.path().join("llava");
    export(&checkpoint, &folder, &LlavaExport::default()).expect("export");
    let reference =
        WeightStore::open_file(fixture("llava_export/reference.safetensors")).expect("reference");
    let dev = device();
    let ints = |key: &str| -> Vec<u32> {
        let tensor = reference.int::<B, 1>(key, &dev).expect(key);
        tensor
            .into_data()
            .iter::<i64>()
            .map(|id| id as u32)
            .collect()
    };
    let exported = load_llava_hf::<B>(&folder, &dev).expect("load export");
    let (original, config) = load_checkpoint::<B>(&checkpoint, &dev).expect("checkpoint");
    let system = config.chat_template.system_prompt.clone();
    let (ids, pixels) = prompt(&exported, &folder.join("tokenizer.json"), system);
    assert_eq!(
        ids,
        ints("input_ids"),
        "the processor's prompt differs from ours"
    );
    let expected_pixels = reference
        .float_any::<B, 3>("pixel_values", &dev)
        .expect("pixels");
    let [c, h, w] = expected_pixels.dims();
    assert_close(
        "pixel values",
        &pixels,
        &expected_pixels.reshape([1, c, h, w]),
        1e-5,
    );
    let columns = reference
        .int::<B, 1>("logit_columns", &dev)
        .expect("columns");
    let last = reference
        .float_any::<B, 1>("last_logits", &dev)
        .expect("last");
    let sampled = reference.float_any::<B, 2>("logits", &dev).expect("logits");
    for (name, model) in [("exported", &exported), ("checkpoint", &original)] {
        let logits = logits(model, &ids, &pixels);
        let [seq, vocab] = logits.dims();
        let last_row = logits
            .clone()
            .slice([seq - 1..seq, 0..vocab])
            .reshape([vocab]);
        let picked = logits.select(1, columns.clone());
        let diffs = (
            max_abs_diff(&last_row, &last),
            max_abs_diff(&picked, &sampled),
        );
        eprintln!(
            "{name}: max |diff| last row {:e}, sampled columns {:e}",
            diffs.0, diffs.1
        );
        assert!(diffs.0 <= TOL && diffs.1 <= TOL, "{name}: {diffs:?}");
    }
    let tokenizer = Tokenizer::from_file(folder.join("tokenizer.json")).expect("tokenizer");
    let mut generation = GenerationConfig::greedy(8);
    generation.stop_token_ids = vec![tokenizer.token_id("<|im_end|>").expect("im_end")];
    let replies = exported
        .generate(batch(&ids, &pixels), &generation, |_| {})
        .expect("generate");
    let expected = ints("generated");
    assert_eq!(replies[0][..expected.len()], expected[..]);
}

#[test]
fn the_export_loads_back_with_the_merged_checkpoint_logits_bit_for_bit() {
    let root = scratch();
    let checkpoint = lora_checkpoint(root.path());
    let dev = device();
    let (original, _) = load_checkpoint::<B>(&checkpoint, &dev).expect("checkpoint");
    let (ids, pixels) = prompt(
        &original,
        &fixture("..").join("tokenizer/qwen2/tokenizer.json"),
        None,
    );
    let merged = VisionLanguageModel::new(
        original.vision().clone(),
        original.projector().clone(),
        merge_and_unload(original.language_model().clone()),
        original.image_token_id(),
    )
    .expect("merged model");
    let expected = logits(&merged, &ids, &pixels).into_data();
    for layout in [TransformersLayout::V5, TransformersLayout::V4] {
        let folder = root.path().join(format!("{layout:?}"));
        let options = LlavaExport {
            layout,
            max_shard_bytes: 4_000_000,
            ..LlavaExport::default()
        };
        export(&checkpoint, &folder, &options).expect("export");
        assert!(
            folder.join("model.safetensors.index.json").is_file(),
            "sharded"
        );
        let store = WeightStore::open_dir(&folder).expect("weights");
        assert_eq!(
            LlavaLayout::detect(&store).expect("layout"),
            LlavaLayout::saved_by(layout)
        );
        let exported = load_llava_hf::<B>(&folder, &dev).expect("load export");
        let actual = logits(&exported, &ids, &pixels).into_data();
        assert_eq!(actual, expected, "{layout:?}: logits differ");
    }
}

#[test]
fn the_export_writes_the_config_and_processor_transformers_read() {
    let root = scratch();
    let checkpoint = lora_checkpoint(root.path());
    let folder = root.path().join("bf16");
    let options = LlavaExport {
        dtype: Some(DType::BF16),
        ..LlavaExport::default()
    };
    export(&checkpoint, &folder, &options).expect("export");
    let config: serde_json::Value = read_config(folder.join("config.json")).expect("config");
    assert_eq!(config["architectures"][0], "LlavaForConditionalGeneration");
    assert_eq!(config["model_type"], "llava");
    assert_eq!(config["dtype"], "bfloat16");
    assert_eq!(config["text_config"]["model_type"], "qwen2");
    assert_eq!(config["vision_config"]["model_type"], "siglip_vision_model");
    assert_eq!(config["image_seq_length"], 16);
    assert_eq!(config["vision_feature_layer"], -2);
    assert_eq!(config["vision_feature_select_strategy"], "full");
    let store = WeightStore::open_dir(&folder).expect("weights");
    let key = "language_model.model.embed_tokens.weight";
    assert_eq!(store.info(key).expect("embedding").dtype, "BF16");
    let processor: serde_json::Value =
        read_config(folder.join("processor_config.json")).expect("processor");
    assert_eq!(processor["image_token"], "<|image_pad|>");
    assert_eq!(processor["patch_size"], 8);
    let tokenizer: serde_json::Value =
        read_config(folder.join("tokenizer_config.json")).expect("tokenizer config");
    let template = tokenizer["chat_template"].as_str().expect("template");
    assert!(template.contains(common::SYSTEM_PROMPT), "{template}");
    assert!(folder.join("chat_template.json").is_file());
    assert!(folder.join("preprocessor_config.json").is_file());
    let exported = load_llava_hf::<B>(&folder, &device()).expect("bf16 export loads");
    assert_eq!(exported.tokens_per_image(), 16);
}

#[test]
fn an_existing_folder_is_replaced_only_when_asked() {
    let root = scratch();
    let checkpoint = lora_checkpoint(root.path());
    let folder = root.path().join("taken");
    fs::create_dir_all(&folder).expect("folder");
    fs::write(folder.join("keep.txt"), "mine").expect("file");
    match export(&checkpoint, &folder, &LlavaExport::default()) {
        Err(ModelError::Export { reason, .. }) => assert!(reason.contains("exists"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(folder.join("keep.txt").is_file(), "left as it was");
    let options = LlavaExport {
        overwrite: true,
        ..LlavaExport::default()
    };
    export(&checkpoint, &folder, &options).expect("overwrite");
    assert!(!folder.join("keep.txt").exists());
    assert!(folder.join("config.json").is_file());
}

#[test]
fn the_pixel_shuffle_projector_is_refused_by_name() {
    let root = scratch();
    let dev = device();
    let (model, config) = load_checkpoint::<B>(checkpoint(), &dev).expect("checkpoint");
    let shuffle = vlm::model::ProjectorConfig {
        kind: vlm::model::ProjectorKind::PixelShuffle { scale_factor: 2 },
        input_dim: model.vision().output_dim(),
        output_dim: 64,
    };
    let projector = vlm::model::AnyProjector::<B>::new(&shuffle, &dev).expect("projector");
    let (vision, language_model) = (model.vision().clone(), model.language_model().clone());
    let image_token = config.image_token_id;
    let model =
        VisionLanguageModel::new(vision, projector, language_model, image_token).expect("model");
    let mut shuffled = config.clone();
    shuffled.projector = shuffle;
    shuffled.tokens_per_image = model.tokens_per_image();
    let dir = model
        .save_checkpoint(root.path().join("shuffle"), &shuffled)
        .expect("save");
    match export(&dir, &root.path().join("out"), &LlavaExport::default()) {
        Err(err @ ModelError::Export { .. }) => {
            assert!(err.to_string().contains("pixel-shuffle"), "{err}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!root.path().join("out").exists());
}

#[test]
fn the_program_exports_a_training_checkpoint() {
    let root = scratch();
    let checkpoint = lora_checkpoint(root.path());
    let folder = root.path().join("program");
    let output = Command::new(example("export"))
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg("--output-dir")
        .arg(&folder)
        .args(["--dtype", "f16", "--layout", "4", "--max-shard-size", "2MB"])
        .output()
        .expect("run export");
    assert!(output.status.success(), "{output:?}");
    let store = WeightStore::open_dir(&folder).expect("weights");
    assert_eq!(
        LlavaLayout::detect(&store).expect("layout"),
        LlavaLayout::saved_by(TransformersLayout::V4)
    );
    let output = Command::new(example("export"))
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg("--output-dir")
        .arg(&folder)
        .output()
        .expect("run export");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exists"), "{stderr}");
}
