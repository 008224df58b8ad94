//! WeightStore against files written here (errors, dtypes, shards) and against the committed
//! Hugging Face fixtures (a bf16 sharded save of the same model as an f32 one).

use std::collections::HashMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use vlm_hf::{HfError, WeightStore};
use vlm_testkit::{assert_close, device, fixture, TestBackend};

fn write_safetensors(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("valid view");
            (name.to_string(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn reads_f32_bf16_f16_and_int_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let values = [1.5f32, -2.25, 3.0e-3, 65504.0, -0.0, 7.0];
    let bf: Vec<u8> = values
        .iter()
        .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
        .collect();
    let hf: Vec<u8> = values
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    let ids: Vec<u8> = [3i64, -1, 151643]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &[
            ("a.f32", Dtype::F32, vec![2, 3], f32_bytes(&values)),
            ("a.bf16", Dtype::BF16, vec![2, 3], bf),
            ("a.f16", Dtype::F16, vec![2, 3], hf),
            ("ids", Dtype::I64, vec![3], ids),
        ],
    );
    let store = WeightStore::open_dir(dir.path()).unwrap();
    assert_eq!(store.keys(), ["a.bf16", "a.f16", "a.f32", "ids"]);
    let dev = device();
    let exact = store
        .float::<TestBackend, 2>("a.f32", [2, 3], &dev)
        .unwrap();
    assert_eq!(exact.to_data().to_vec::<f32>().unwrap(), values);
    for (key, rounded) in [
        ("a.bf16", values.map(|v| bf16::from_f32(v).to_f32())),
        ("a.f16", values.map(|v| f16::from_f32(v).to_f32())),
    ] {
        let t = store.float::<TestBackend, 2>(key, [2, 3], &dev).unwrap();
        assert_eq!(t.to_data().to_vec::<f32>().unwrap(), rounded, "{key}");
    }
    let ids = store.int::<TestBackend, 1>("ids", &dev).unwrap();
    let ids: Vec<i64> = ids.to_data().convert::<i64>().to_vec().unwrap();
    assert_eq!(ids, [3, -1, 151643]);
}

#[test]
fn errors_name_the_file_the_key_and_the_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let ids: Vec<u8> = [1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_safetensors(
        &path,
        &[
            ("w", Dtype::F32, vec![2, 2], f32_bytes(&[1.0; 4])),
            ("ids", Dtype::I32, vec![2], ids),
        ],
    );
    let store = WeightStore::open_dir(dir.path()).unwrap();
    let dev = device();

    let err = store
        .float::<TestBackend, 2>("w", [2, 3], &dev)
        .unwrap_err();
    assert!(
        matches!(&err, HfError::ShapeMismatch { expected, actual, .. }
        if expected == &[2, 3] && actual == &[2, 2])
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`w`") && msg.contains("model.safetensors"),
        "{msg}"
    );

    let err = store
        .float::<TestBackend, 1>("missing.weight", [4], &dev)
        .unwrap_err();
    assert!(matches!(err, HfError::MissingTensor { ref key, .. } if key == "missing.weight"));

    let err = store.float::<TestBackend, 1>("ids", [2], &dev).unwrap_err();
    assert!(err.to_string().contains("dtype I32"), "{err}");

    let err = store.int::<TestBackend, 1>("w", &dev).unwrap_err();
    assert!(matches!(err, HfError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn corrupt_or_absent_files_are_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        WeightStore::open_dir(dir.path()),
        Err(HfError::NoWeights { .. })
    ));

    let path = dir.path().join("model.safetensors");
    write_safetensors(&path, &[("w", Dtype::F32, vec![4], f32_bytes(&[1.0; 4]))]);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 3]).unwrap();
    let err = WeightStore::open_dir(dir.path())
        .err()
        .expect("truncated file");
    assert!(matches!(err, HfError::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(&path, b"\x05").unwrap();
    assert!(WeightStore::open_dir(dir.path()).is_err());

    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        b"{\"weight_map\": 3}",
    )
    .unwrap();
    let err = WeightStore::open_dir(dir.path()).err().expect("bad index");
    assert!(matches!(err, HfError::Json { .. }), "{err}");
}

#[test]
fn sharded_index_spreads_keys_over_files() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(
        &dir.path().join("model-00001-of-00002.safetensors"),
        &[("a", Dtype::F32, vec![1], f32_bytes(&[1.0]))],
    );
    write_safetensors(
        &dir.path().join("model-00002-of-00002.safetensors"),
        &[("b", Dtype::F32, vec![1], f32_bytes(&[2.0]))],
    );
    let weight_map: HashMap<&str, &str> = [
        ("a", "model-00001-of-00002.safetensors"),
        ("b", "model-00002-of-00002.safetensors"),
    ]
    .into();
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let store = WeightStore::open_dir(dir.path()).unwrap();
    let info = store.info("b").unwrap();
    assert!(info.path.ends_with("model-00002-of-00002.safetensors"));
    assert_eq!((info.shape, info.dtype.as_str()), (vec![1], "F32"));
    let b = store.float::<TestBackend, 1>("b", [1], &device()).unwrap();
    assert_eq!(b.into_scalar(), 2.0);
}

#[test]
fn hf_bf16_sharded_save_equals_the_f32_model_rounded() {
    let f32_store = WeightStore::open_dir(fixture("qwen2_tied")).unwrap();
    let bf16_store = WeightStore::open_dir(fixture("qwen2_bf16_sharded")).unwrap();
    let shards: std::collections::BTreeSet<_> = bf16_store
        .keys()
        .iter()
        .map(|k| bf16_store.info(k).unwrap().path)
        .collect();
    assert!(shards.len() >= 2, "fixture should be sharded: {shards:?}");
    assert_eq!(f32_store.keys(), bf16_store.keys());
    let dev = device();
    for key in f32_store.keys() {
        let info = bf16_store.info(key).unwrap();
        assert_eq!(info.dtype, "BF16", "{key}");
        let reference = flat(&f32_store, key, &dev).unwrap();
        let rounded: Vec<f32> = reference
            .to_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(|v| bf16::from_f32(v).to_f32())
            .collect();
        let loaded = flat(&bf16_store, key, &dev).unwrap();
        let expected =
            burn::tensor::Tensor::<TestBackend, 1>::from_floats(rounded.as_slice(), &dev);
        assert_close(key, &loaded, &expected, 0.0);
    }
}

/// Reads a tensor of any rank and flattens it.
fn flat(
    store: &WeightStore,
    key: &str,
    dev: &burn::tensor::Device<TestBackend>,
) -> Result<burn::tensor::Tensor<TestBackend, 1>, HfError> {
    match store.info(key)?.shape.len() {
        1 => store.float_any::<TestBackend, 1>(key, dev),
        2 => Ok(store.float_any::<TestBackend, 2>(key, dev)?.flatten(0, 1)),
        n => panic!("unexpected rank {n} for {key}"),
    }
}

/// A file holding one scalar tensor under each of `keys`.
fn store_with_keys(dir: &Path, keys: &[&str]) -> WeightStore {
    let tensors: Vec<_> = keys
        .iter()
        .map(|key| (*key, Dtype::F32, vec![1], f32_bytes(&[1.0])))
        .collect();
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &tensors);
    WeightStore::open_file(&path).expect("open")
}

#[test]
fn a_module_prefix_is_found_from_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = "embeddings.patch_embedding.weight";
    let cases = [
        (
            "vision_model.embeddings.patch_embedding.weight",
            "vision_model",
        ),
        ("embeddings.patch_embedding.weight", ""),
        (
            "model.vision_tower.embeddings.patch_embedding.weight",
            "model.vision_tower",
        ),
    ];
    for (key, prefix) in cases {
        let store = store_with_keys(dir.path(), &[key, "text_model.embeddings.token.weight"]);
        assert_eq!(store.find_prefix(anchor, "vision tower").unwrap(), prefix);
    }
}

#[test]
fn a_missing_or_ambiguous_layout_lists_what_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = "embeddings.patch_embedding.weight";
    let store = store_with_keys(
        dir.path(),
        &["visual.blocks.0.weight", "visual.patch.weight"],
    );
    let err = store.find_prefix(anchor, "vision tower").unwrap_err();
    assert!(
        matches!(&err, HfError::LayoutNotFound { seen, .. } if seen == &["visual.blocks", "visual.patch"]),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("vision tower") && message.contains("visual.blocks"),
        "{message}"
    );

    let keys = [
        "a.embeddings.patch_embedding.weight",
        "embeddings.patch_embedding.weight",
    ];
    let err = store_with_keys(dir.path(), &keys)
        .find_prefix(anchor, "vision tower")
        .unwrap_err();
    assert!(
        matches!(&err, HfError::AmbiguousLayout { prefixes, .. } if prefixes == &["", "a"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("`a`"), "{err}");
}

#[test]
fn nan_and_infinite_weights_are_refused_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bf: Vec<u8> = [1.0f32, f32::INFINITY]
        .iter()
        .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
        .collect();
    let hf: Vec<u8> = [f32::NEG_INFINITY, 0.0]
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &[
            (
                "nan.f32",
                Dtype::F32,
                vec![3],
                f32_bytes(&[0.0, 1.0, f32::NAN]),
            ),
            ("inf.bf16", Dtype::BF16, vec![2], bf),
            ("inf.f16", Dtype::F16, vec![2], hf),
            (
                "ok.f32",
                Dtype::F32,
                vec![2],
                f32_bytes(&[f32::MAX, f32::MIN_POSITIVE]),
            ),
        ],
    );
    let store = WeightStore::open_dir(dir.path()).unwrap();
    let dev = device();
    for (key, index, value) in [
        ("nan.f32", 2, "NaN"),
        ("inf.bf16", 1, "inf"),
        ("inf.f16", 0, "-inf"),
    ] {
        let err = store.float::<TestBackend, 1>(key, [3 - usize::from(key != "nan.f32")], &dev);
        let err = err.unwrap_err();
        assert!(
            matches!(&err, HfError::NonFinite { key: k, index: i, .. } if k == key && *i == index),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("model.safetensors") && text.contains(value),
            "{text}"
        );
    }
    assert!(store.float::<TestBackend, 1>("ok.f32", [2], &dev).is_ok());
}
