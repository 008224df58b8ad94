//! Saving towers as Hugging Face folders: what is written loads back into the same tower
//! (bit-identical outputs), under the same keys, shapes and config as transformers' folder.

use std::path::Path;

use burn::tensor::Tensor;
use vlm_hf::{PreprocessorConfig, WeightStore};
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{
    read_preprocessing, ClipVisionConfig, ClipVisionTower, FeatureSelection, SelectStrategy,
    SiglipVisionConfig, SiglipVisionTower, VisionEncoder, VisionOutput,
};

type B = TestBackend;

/// Every layer, every token: the selection that exposes all the weights.
const FULL: FeatureSelection = FeatureSelection {
    layer: -1,
    strategy: SelectStrategy::Full,
};

/// The input images of a fixture's `reference.safetensors`.
fn pixels(name: &str) -> Tensor<B, 4> {
    let reference = fixture(name).join("reference.safetensors");
    let store = WeightStore::open_file(reference).expect("reference file");
    store
        .float_any::<B, 4>("pixel_values", &device())
        .expect("pixel_values")
}

/// Asserts the two outputs hold exactly the same numbers.
fn assert_bit_identical(saved: VisionOutput<B>, original: VisionOutput<B>) {
    assert_eq!(saved.hidden_states.len(), original.hidden_states.len());
    let pairs = saved
        .hidden_states
        .into_iter()
        .zip(original.hidden_states)
        .chain([(saved.last_hidden_state, original.last_hidden_state)]);
    for (index, (saved, original)) in pairs.enumerate() {
        assert_eq!(saved.into_data(), original.into_data(), "output {index}");
    }
    match (saved.pooler_output, original.pooler_output) {
        (Some(saved), Some(original)) => assert_eq!(saved.into_data(), original.into_data()),
        (saved, original) => assert_eq!(saved.is_some(), original.is_some()),
    }
}

/// Asserts the saved folder holds the fixture's tensors (all but those under `skipped`),
/// with the same shapes and dtypes, and its preprocessing.
fn assert_same_layout(saved: &Path, fixture: &Path, skipped: &str) {
    let (saved_store, fixture_store) = (open(saved), open(fixture));
    let mut expected: Vec<&str> = fixture_store.keys();
    expected.retain(|key| !key.starts_with(skipped));
    expected.sort_unstable();
    let mut keys = saved_store.keys();
    keys.sort_unstable();
    assert_eq!(keys, expected);
    for key in keys {
        let (written, original) = (info(&saved_store, key), info(&fixture_store, key));
        assert_eq!(written, original, "{key}: shape and dtype");
    }
    let preprocessing = |dir: &Path| read_preprocessing(dir).expect("preprocessor config");
    assert_eq!(preprocessing(saved), preprocessing(fixture));
    let file = saved.join(PreprocessorConfig::FILE_NAME);
    PreprocessorConfig::from_file(file).expect("a valid preprocessor_config.json");
}

fn open(dir: &Path) -> WeightStore {
    WeightStore::open_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn info(store: &WeightStore, key: &str) -> (Vec<usize>, String) {
    let info = store.info(key).expect("listed key");
    (info.shape, info.dtype)
}

#[test]
fn siglip_tower_saves_and_loads_back_bit_identically() {
    let pixels = pixels("siglip_vision");
    let original = SiglipVisionTower::<B>::load(fixture("siglip_vision"), FULL, &device())
        .expect("load fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    original.save(dir.path()).expect("save");

    let saved = SiglipVisionTower::<B>::load(dir.path(), FULL, &device()).expect("load saved");
    assert_eq!(saved.config(), original.config());
    let config = SiglipVisionConfig::from_file(dir.path().join("config.json")).expect("config");
    assert_eq!(&config, original.config());
    assert_eq!(saved.preprocessing(), original.preprocessing());
    assert_bit_identical(
        saved.outputs(pixels.clone()).expect("saved forward"),
        original.outputs(pixels).expect("original forward"),
    );
    // The attention-pool head is not part of the tower, and the config says so.
    assert_same_layout(dir.path(), &fixture("siglip_vision"), "vision_model.head.");
    let text = std::fs::read_to_string(dir.path().join("config.json")).expect("config text");
    assert!(text.contains("\"vision_use_head\": false"), "{text}");
}

#[test]
fn clip_tower_saves_and_loads_back_bit_identically() {
    let pixels = pixels("clip_vision");
    let original =
        ClipVisionTower::<B>::load(fixture("clip_vision"), FULL, &device()).expect("load fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("vision");
    original.save(&nested).expect("save into a missing folder");

    let saved = ClipVisionTower::<B>::load(&nested, FULL, &device()).expect("load saved");
    let config = ClipVisionConfig::from_file(nested.join("config.json")).expect("config");
    assert_eq!(&config, original.config());
    assert_bit_identical(
        saved.outputs(pixels.clone()).expect("saved forward"),
        original.outputs(pixels).expect("original forward"),
    );
    assert_same_layout(
        &nested,
        &fixture("clip_vision"),
        "none: every tensor is kept",
    );
}

#[test]
fn saving_into_a_file_names_it() {
    let tower = SiglipVisionTower::<B>::load(fixture("siglip_vision"), FULL, &device())
        .expect("load fixture");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let err = tower.save(file.path()).expect_err("a file is not a folder");
    assert!(
        err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
}
