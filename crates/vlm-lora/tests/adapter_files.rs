//! PEFT adapter folders: what we write, what we read back, and the typed errors of broken
//! ones.

mod common;

use std::fs;
use std::path::Path;

use burn::tensor::{Distribution, Tensor};
use common::{peft_tensors, Toy, FC1, Q_PROJ};
use serde_json::Value;
use vlm_hf::{HfError, SafetensorsWriter, WeightStore};
use vlm_lora::{AdaptableModel, LoraAdapter, LoraConfig, LoraError, TargetModules};
use vlm_testkit::{device, fixture, TestBackend};

type B = TestBackend;

fn config() -> LoraConfig {
    LoraConfig::new(3, 6.0, TargetModules::names(["q_proj", "mlp.fc1"]))
        .with_dropout(0.1)
        .with_base_model("toy")
}

/// A toy model with both adapters attached and random (non-zero) `A` and `B`.
fn trained_toy(config: &LoraConfig) -> Toy<B> {
    let toy = vlm_lora::apply(Toy::new(&device()), config).expect("apply");
    let (r, scaling, dropout) = (config.r, config.scaling(), config.lora_dropout);
    toy.map_linears(&mut |_, linear| {
        let random =
            |shape: [usize; 2]| Tensor::random(shape, Distribution::Normal(0.0, 0.3), &device());
        let a = random([r, linear.d_input()]);
        let b = random([linear.d_output(), r]);
        linear.with_adapter(LoraAdapter::from_peft(a, b, scaling, dropout))
    })
}

fn saved(config: &LoraConfig) -> (tempfile::TempDir, Toy<B>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toy = trained_toy(config);
    vlm_lora::save_adapter(&toy, config, dir.path()).expect("save");
    (dir, toy)
}

fn load(dir: &Path) -> Result<Toy<B>, LoraError> {
    vlm_lora::load_adapter(Toy::new(&device()), dir)
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("adapter_config.json");
    let mut json: Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("json");
    edit(json.as_object_mut().expect("object"));
    fs::write(&path, json.to_string()).expect("write");
}

/// Rewrites the adapter weights: `keep` decides which stored tensors stay, `extra` adds some.
fn rewrite_weights(dir: &Path, keep: impl Fn(&str) -> bool, extra: &[(&str, [usize; 2])]) {
    let path = dir.join("adapter_model.safetensors");
    let store = WeightStore::open_file(&path).expect("open");
    let mut writer = SafetensorsWriter::new();
    for key in store.keys().into_iter().filter(|key| keep(key)) {
        writer.add(
            key,
            store.float_any::<B, 2>(key, &device()).expect("tensor"),
        );
    }
    for (key, shape) in extra {
        writer.add(*key, Tensor::<B, 2>::zeros(*shape, &device()));
    }
    drop(store);
    writer.write(&path).expect("rewrite");
}

#[test]
fn saved_adapters_load_back_bit_identical() {
    let config = config();
    let (dir, toy) = saved(&config);
    let loaded = load(dir.path()).expect("load");
    assert_eq!(vlm_lora::adapted_modules(&loaded), [Q_PROJ, FC1]);
    assert_eq!(peft_tensors(&loaded.q_proj), peft_tensors(&toy.q_proj));
    assert_eq!(peft_tensors(&loaded.fc1), peft_tensors(&toy.fc1));
    let adapter = loaded.fc1.adapter.as_ref().expect("adapter");
    assert_eq!((adapter.scaling, adapter.dropout.prob), (2.0, 0.1));
    assert_eq!(LoraConfig::load(dir.path()).expect("config"), config);
}

#[test]
fn files_are_in_peft_format() {
    let (dir, toy) = saved(&config().with_rslora(true));
    let json: Value = serde_json::from_str(
        &fs::read_to_string(dir.path().join("adapter_config.json")).expect("read"),
    )
    .expect("json");
    for (key, expected) in [
        ("peft_type", Value::from("LORA")),
        ("task_type", "CAUSAL_LM".into()),
        ("r", 3.into()),
        ("lora_alpha", 6.into()),
        ("lora_dropout", 0.1.into()),
        ("target_modules", serde_json::json!(["mlp.fc1", "q_proj"])),
        ("bias", "none".into()),
        ("fan_in_fan_out", false.into()),
        ("use_rslora", true.into()),
        ("use_dora", false.into()),
        ("base_model_name_or_path", "toy".into()),
    ] {
        assert_eq!(json[key], expected, "{key}");
    }
    let store =
        WeightStore::open_file(dir.path().join("adapter_model.safetensors")).expect("weights");
    let key = |module: &str, part: &str| format!("base_model.model.{module}.{part}.weight");
    assert_eq!(
        store.keys(),
        [
            key(FC1, "lora_A"),
            key(FC1, "lora_B"),
            key(Q_PROJ, "lora_A"),
            key(Q_PROJ, "lora_B")
        ]
    );
    // PEFT layout: A [r, in], B [out, r].
    let a = store.info(&key(FC1, "lora_A")).expect("A");
    let b = store.info(&key(FC1, "lora_B")).expect("B");
    assert_eq!((a.shape, a.dtype.as_str()), (vec![3, 6], "F32"));
    assert_eq!(b.shape, vec![10, 3]);
    let stored_a: Tensor<B, 2> = store.float_any(&key(FC1, "lora_A"), &device()).expect("A");
    assert_eq!(common::values(stored_a), peft_tensors(&toy.fc1).0);
}

#[test]
fn peft_fixture_configs_parse() {
    let lora = LoraConfig::load(fixture("lora/adapter")).expect("lora");
    assert_eq!((lora.r, lora.lora_alpha, lora.lora_dropout), (4, 8.0, 0.0));
    assert_eq!(
        lora.base_model_name_or_path.as_deref(),
        Some("../qwen2_tied")
    );
    assert!(matches!(&lora.target_modules, TargetModules::Names(n) if n.len() == 7));
    assert_eq!(lora.scaling(), 2.0);
    let rslora = LoraConfig::load(fixture("lora_rslora/adapter")).expect("rslora");
    assert_eq!((rslora.use_rslora, rslora.scaling()), (true, 4.0));
    let regex = LoraConfig::load(fixture("lora_regex/adapter")).expect("regex");
    assert_eq!(
        regex.target_modules,
        TargetModules::Regex(
            r".*\.layers\.1\.self_attn\.(q_proj|v_proj)|.*\.mlp\.down_proj".into()
        )
    );
    let v1 = LoraConfig::load(fixture("lora_v1/adapter")).expect("v1");
    assert_eq!(
        v1.target_modules,
        TargetModules::names(["c_attn", "c_proj", "w1", "w2"])
    );
    assert_eq!(v1.scaling(), 4.0);
}

#[test]
fn wrong_rank_is_a_rank_mismatch() {
    let (dir, _) = saved(&config());
    edit_config(dir.path(), |c| {
        c.insert("r".into(), 5.into());
    });
    let err = load(dir.path()).expect_err("rank 3 tensors, r = 5");
    assert!(
        matches!(&err, LoraError::RankMismatch { key, expected: 5, actual: 3, .. }
            if key.ends_with("q_proj.lora_A.weight")),
        "{err:?}"
    );
}

#[test]
fn missing_tensor_is_a_missing_key() {
    let (dir, _) = saved(&config());
    rewrite_weights(dir.path(), |key| !key.contains("fc1.lora_B"), &[]);
    let err = load(dir.path()).expect_err("fc1's B is gone");
    assert!(
        matches!(&err, LoraError::MissingKey { key, path }
            if key == &format!("base_model.model.{FC1}.lora_B.weight")
                && path.ends_with("adapter_model.safetensors")),
        "{err:?}"
    );
}

#[test]
fn stray_or_misshapen_tensors_are_refused() {
    let (dir, _) = saved(&config());
    let stray = "base_model.model.encoder.layers.0.mlp.fc2.lora_A.weight";
    rewrite_weights(dir.path(), |_| true, &[(stray, [3, 10])]);
    let err = load(dir.path()).expect_err("fc2 is not in the model");
    assert!(
        matches!(&err, LoraError::UnexpectedKey { key, .. } if key == stray),
        "{err:?}"
    );

    let (dir, _) = saved(&config());
    let key = format!("base_model.model.{Q_PROJ}.lora_A.weight");
    rewrite_weights(dir.path(), |k| k != key, &[(&key, [3, 7])]);
    let err = load(dir.path()).expect_err("A has 7 inputs, q_proj 6");
    assert!(
        matches!(&err, LoraError::ShapeMismatch { expected, actual, .. }
            if expected == &[3, 6] && actual == &[3, 7]),
        "{err:?}"
    );
}

#[test]
fn targets_matching_nothing_are_refused() {
    let (dir, _) = saved(&config());
    edit_config(dir.path(), |c| {
        c.insert("target_modules".into(), serde_json::json!(["k_proj"]));
    });
    let err = load(dir.path()).expect_err("no k_proj");
    assert!(
        matches!(&err, LoraError::NoTargetMatched { examples, .. } if examples.contains(Q_PROJ)),
        "{err:?}"
    );
    // PEFT semantics: a string is a regex over the whole path, so a bare name matches nothing.
    let regex = LoraConfig::new(2, 2.0, TargetModules::Regex("q_proj".into()));
    let err = vlm_lora::apply(Toy::<B>::new(&device()), &regex).expect_err("bare regex");
    assert!(matches!(err, LoraError::NoTargetMatched { .. }), "{err:?}");
}

#[test]
fn unsupported_peft_features_are_refused() {
    for (field, value) in [
        ("use_dora", Value::from(true)),
        ("peft_type", "IA3".into()),
        ("bias", "lora_only".into()),
        ("rank_pattern", serde_json::json!({"q_proj": 8})),
        ("modules_to_save", serde_json::json!(["lm_head"])),
        ("target_modules", "all-linear".into()),
    ] {
        let (dir, _) = saved(&config());
        edit_config(dir.path(), |c| {
            c.insert(field.into(), value.clone());
        });
        let err = load(dir.path()).expect_err(field);
        assert!(
            matches!(&err, LoraError::Unsupported { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    let (dir, _) = saved(&config());
    edit_config(dir.path(), |c| {
        c.insert("r".into(), 0.into());
    });
    let err = load(dir.path()).expect_err("r = 0");
    assert!(matches!(err, LoraError::InvalidConfig(_)), "{err:?}");
}

#[test]
fn saving_with_a_config_that_disagrees_is_refused() {
    let toy = trained_toy(&config());
    let dir = tempfile::tempdir().expect("tempdir");
    let only_q = LoraConfig {
        target_modules: TargetModules::names(["q_proj"]),
        ..config()
    };
    let other_rank = LoraConfig { r: 4, ..config() };
    for bad in [only_q, other_rank] {
        let err = vlm_lora::save_adapter(&toy, &bad, dir.path()).expect_err("disagrees");
        assert!(matches!(err, LoraError::ConfigDisagrees { .. }), "{err:?}");
    }
    assert_eq!(
        fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "nothing written"
    );
}

#[test]
fn writes_replace_files_atomically() {
    let config = config();
    let (dir, _) = saved(&config);
    let newer = trained_toy(&config);
    vlm_lora::save_adapter(&newer, &config, dir.path()).expect("overwrite");
    let loaded = load(dir.path()).expect("load");
    assert_eq!(peft_tensors(&loaded.q_proj), peft_tensors(&newer.q_proj));
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(dir.path()),
        ["adapter_config.json", "adapter_model.safetensors"]
    );

    // A write that cannot complete leaves no temporary file and names the target.
    let blocked = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(blocked.path().join("adapter_model.safetensors/occupied")).expect("mkdir");
    let err = vlm_lora::save_adapter(&newer, &config, blocked.path()).expect_err("blocked");
    assert!(
        matches!(&err, LoraError::Hf(HfError::Write { path, .. }) if path.ends_with("adapter_model.safetensors")),
        "{err:?}"
    );
    assert_eq!(names(blocked.path()), ["adapter_model.safetensors"]);
}
