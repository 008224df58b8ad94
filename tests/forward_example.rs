//! `examples/forward.rs` on the reference fixtures: the tensors it writes are transformers'
//! (1e-4 on logits), by every route to a model, and bad input is an error, not a panic.

#[allow(dead_code)] // the example's `main`: these tests call `run`
#[path = "../examples/forward.rs"]
mod forward;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;
use forward::{run, Args, Comparison, ForwardError};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use tempfile::TempDir;
use vlm::burn::tensor::{Int, Tensor};
use vlm::hf::{HfError, WeightStore};
use vlm::model::{load_llava_hf, ChatTemplateConfig, VisionTowerConfig, VlmConfig};
use vlm::vision::SelectStrategy;
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};

const TOL: f32 = 1e-4;

/// A fixture's `reference.safetensors`.
fn reference(name: &str) -> PathBuf {
    fixture(name).join("reference.safetensors")
}

/// Runs the example with `flags` (paths and strings), writing into a new temporary folder;
/// returns the folder and the written file.
fn forward(flags: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<(TempDir, WeightStore), ForwardError> {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("out.safetensors");
    let mut argv: Vec<OsString> = vec!["forward".into(), "--out".into(), out.clone().into()];
    argv.extend(flags.iter().map(|flag| flag.as_ref().to_os_string()));
    let args = Args::try_parse_from(argv).expect("valid flags");
    run(&args)?;
    let written = WeightStore::open_file(&out).expect("output file");
    Ok((out_dir, written))
}

fn float<const D: usize>(store: &WeightStore, key: &str) -> Tensor<TestBackend, D> {
    store
        .float_any(key, &device())
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn ints(store: &WeightStore, key: &str) -> Tensor<TestBackend, 2, Int> {
    store
        .int(key, &device())
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Asserts the largest difference over unpadded positions is within `TOL`.
fn check_masked(what: &str, written: &WeightStore, expected: &WeightStore, key: &str) {
    let (actual, expected_value) = (float::<3>(written, key), float::<3>(expected, key));
    let padding = ints(expected, "attention_mask")
        .equal_elem(0)
        .unsqueeze_dim::<3>(2)
        .expand(expected_value.dims());
    let actual = actual.mask_where(padding, expected_value.clone());
    let diff = max_abs_diff(&actual, &expected_value);
    eprintln!("{what} {key}: max |diff| on unmasked positions = {diff:e}");
    assert!(diff <= TOL, "{what} {key}: {diff:e}");
}

fn check<const D: usize>(
    what: &str,
    actual: Tensor<TestBackend, D>,
    expected: Tensor<TestBackend, D>,
) {
    let diff = max_abs_diff(&actual, &expected);
    eprintln!("{what}: max |diff| = {diff:e}");
    assert!(diff <= TOL, "{what}: {diff:e}");
}

#[test]
fn qwen_logits_from_safetensors_and_json_ids() {
    let expected = WeightStore::open_file(reference("qwen2_tied")).expect("reference");
    let (_dir, written) = forward(&[
        &"--llm",
        &fixture("qwen2_tied"),
        &"--ids",
        &reference("qwen2_tied"),
    ])
    .expect("run");
    check_masked("qwen2_tied", &written, &expected, "logits");

    let rows = |key| {
        let x = ints(&expected, key);
        let [_, len] = x.dims();
        let values: Vec<i64> = x.into_data().iter::<i64>().collect();
        values.chunks(len).map(<[i64]>::to_vec).collect::<Vec<_>>()
    };
    let json = serde_json::json!({
        "input_ids": rows("input_ids"),
        "attention_mask": rows("attention_mask"),
    });
    let ids_dir = tempfile::tempdir().expect("tempdir");
    let ids = ids_dir.path().join("ids.json");
    std::fs::write(&ids, json.to_string()).expect("write ids");
    let (_dir, written) =
        forward(&[&"--llm", &fixture("qwen2_tied"), &"--ids", &ids]).expect("run");
    check_masked("qwen2_tied (json)", &written, &expected, "logits");
}

/// Checks a VLM run's outputs against the llava fixture's references.
fn check_llava(what: &str, name: &str, written: &WeightStore) {
    let expected = WeightStore::open_file(reference(name)).expect("reference");
    for key in ["logits", "inputs_embeds"] {
        check_masked(what, written, &expected, key);
    }
    for key in ["vision_features", "image_features"] {
        check(
            &format!("{what} {key}"),
            float::<3>(written, key),
            float(&expected, key),
        );
    }
    let loss = float::<1>(written, "loss").into_scalar();
    let expected_loss = float::<1>(&expected, "loss").into_scalar();
    assert!(
        (loss - expected_loss).abs() <= 1e-5,
        "{what} loss {loss} vs {expected_loss}"
    );
}

#[test]
fn a_llava_folder_runs_whole() {
    // As transformers 4.57 and 5.25 save it, and as a raw state_dict: the layout is found
    // from the keys, with no flag.
    for name in [
        "llava",
        "llava_clip",
        "v5/llava",
        "v5/llava_clip",
        "v5/llava_state_dict",
    ] {
        let inputs = reference(name);
        let flags: [&dyn AsRef<std::ffi::OsStr>; 6] = [
            &"--llava",
            &fixture(name),
            &"--ids",
            &inputs,
            &"--pixels",
            &inputs,
        ];
        let (_dir, written) = forward(&flags).expect("run");
        check_llava(name, name, &written);
    }
}

#[test]
fn the_vlm_from_its_parts() {
    // The tower's key prefix (`vision_tower.vision_model`, 5.x: `vision_tower`) is found
    // from the keys.
    for name in ["llava_clip", "v5/llava_clip"] {
        let (dir, inputs) = (fixture(name), reference(name));
        let projector = dir.join("projector.safetensors");
        let (_out, written) = forward(&[
            &"--llm",
            &dir,
            &"--vision",
            &dir,
            &"--projector",
            &projector,
            &"--image-token-id",
            &"383",
            &"--ids",
            &inputs,
            &"--pixels",
            &inputs,
        ])
        .expect("run");
        check_llava(&format!("{name} parts"), name, &written);
    }
}

#[test]
fn a_vlm_checkpoint() {
    let dev = device();
    let model = load_llava_hf::<TestBackend>(fixture("llava"), &dev).expect("llava");
    let vision = VisionTowerConfig {
        path: fixture("llava"),
        weight_prefix: None,
        feature_layer: -2,
        feature_strategy: SelectStrategy::Full,
    };
    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: None,
    };
    let config = VlmConfig::for_model(&model, fixture("llava"), vision, template);
    let out = tempfile::tempdir().expect("tempdir");
    let checkpoint = model
        .save_checkpoint(out.path().join("ckpt"), &config)
        .expect("save");
    let inputs = reference("llava");
    let (_dir, written) = forward(&[
        &"--checkpoint",
        &checkpoint,
        &"--ids",
        &inputs,
        &"--pixels",
        &inputs,
    ])
    .expect("run");
    check_llava("llava checkpoint", "llava", &written);
}

#[test]
fn a_vision_tower_on_images_and_on_pixels() {
    let images = fixture("image_processor");
    let processed =
        WeightStore::open_file(images.join("reference.safetensors")).expect("reference");
    let (_dir, written) = forward(&[
        &"--vision",
        &fixture("siglip_vision"),
        &"--image",
        &images.join("small_rgb.jpg"),
        &images.join("small_gray.png"),
    ])
    .expect("run");
    let pixels = float::<4>(&written, "pixel_values");
    let expected = [
        "siglip_small.small_rgb.jpg.pixel_values",
        "siglip_small.small_gray.png.pixel_values",
    ]
    .map(|key| float::<4>(&processed, key));
    check(
        "siglip pixel_values",
        pixels,
        Tensor::cat(expected.to_vec(), 0),
    );
    assert_eq!(float::<3>(&written, "image_features").dims(), [2, 16, 32]);

    // Saved by transformers 4 (`vision_model.*`) and 5 (no prefix): no flag either way.
    for name in ["siglip_vision", "v5/siglip_vision"] {
        let tower_outputs = reference(name);
        let (_dir, written) = forward(&[
            &"--vision",
            &fixture(name),
            &"--pixels",
            &tower_outputs,
            &"--feature-layer",
            &"-2",
            &"--feature-strategy",
            &"full",
        ])
        .expect("run");
        let expected = WeightStore::open_file(&tower_outputs).expect("reference");
        check(
            &format!("{name} image_features"),
            float::<3>(&written, "image_features"),
            float(&expected, "hidden_states.2"),
        );
    }
}

/// qwen2_tied's reference with `delta` added to the logits at flat index `index`, written
/// into `dir`.
fn perturbed_reference(dir: &Path, index: usize, delta: f32) -> PathBuf {
    let bytes = std::fs::read(reference("qwen2_tied")).expect("reference");
    let tensors = SafeTensors::deserialize(&bytes).expect("safetensors");
    let logits = tensors.tensor("logits").expect("logits");
    let mut changed = logits.data().to_vec();
    let at = index * 4;
    let value = f32::from_le_bytes(changed[at..at + 4].try_into().expect("4 bytes")) + delta;
    changed[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let views: Vec<(String, TensorView)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| match name.as_str() {
            "logits" => {
                let shape = view.shape().to_vec();
                let view = TensorView::new(Dtype::F32, shape, &changed).expect("view");
                (name, view)
            }
            _ => (name, view),
        })
        .collect();
    let path = dir.join(format!("perturbed-{index}.safetensors"));
    safetensors::serialize_to_file(views, None, &path).expect("write");
    path
}

/// `forward --llm qwen2_tied --reference REFERENCE` and its comparison.
fn compare_with(reference: &Path, extra: &[&str]) -> Result<Comparison, ForwardError> {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut argv: Vec<OsString> = vec!["forward".into(), "--out".into()];
    argv.push(out_dir.path().join("out.safetensors").into());
    argv.extend(["--llm".into(), fixture("qwen2_tied").into()]);
    argv.extend(["--ids".into(), self::reference("qwen2_tied").into()]);
    argv.extend(["--reference".into(), reference.into()]);
    argv.extend(extra.iter().map(OsString::from));
    let args = Args::try_parse_from(argv).expect("valid flags");
    Ok(run(&args)?.comparison.expect("a comparison"))
}

#[test]
fn a_reference_file_is_compared_where_the_attention_mask_is_one() {
    let exact = compare_with(&reference("qwen2_tied"), &[]).expect("run");
    let compared: Vec<&String> = exact.max_abs_diff.keys().collect();
    assert_eq!(compared, ["logits"]);
    assert!(exact.pass && exact.worst <= TOL, "{exact:?}");
    assert_eq!(exact.tolerance, TOL);

    // logits [2, 12, 512]; sample 1 is left-padded by 4: (1, 0, 0) is padding, (0, 5, 7) not.
    let dir = tempfile::tempdir().expect("tempdir");
    let padded = perturbed_reference(dir.path(), 12 * 512, 100.0);
    let at_padding = compare_with(&padded, &[]).expect("run");
    assert!(at_padding.pass, "{at_padding:?}");
    assert_eq!(at_padding.worst, exact.worst);
    let unpadded = perturbed_reference(dir.path(), 5 * 512 + 7, 0.01);
    let off = compare_with(&unpadded, &[]).expect("run");
    assert!(!off.pass && off.worst > 0.0099, "{off:?}");
    let tolerant = compare_with(&unpadded, &["--tolerance", "0.02"]).expect("run");
    assert!(tolerant.pass, "{tolerant:?}");

    let err = compare_with(
        &reference("qwen2_tied"),
        &["--reference-name", "nope=logits"],
    )
    .expect_err("not an output");
    assert!(matches!(err, ForwardError::Usage(_)), "{err}");
    let err = compare_with(&reference("projector"), &[]).expect_err("nothing to compare");
    assert!(matches!(err, ForwardError::Input { .. }), "{err}");
    assert!(err.to_string().contains("none of the outputs"), "{err}");
    // The renamed key must match the output's shape.
    let err = compare_with(
        &reference("qwen2_tied"),
        &["--reference-name", "logits=input_ids"],
    )
    .expect_err("shapes differ");
    assert!(err.to_string().contains("input_ids"), "{err}");
}

fn forward_err(flags: &[&dyn AsRef<std::ffi::OsStr>]) -> ForwardError {
    match forward(flags) {
        Ok(_) => panic!("should fail"),
        Err(err) => err,
    }
}

#[test]
fn bad_input_is_an_error_naming_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.json");
    let err = forward_err(&[&"--llm", &fixture("qwen2_tied"), &"--ids", &missing]);
    assert!(matches!(err, ForwardError::Hf(HfError::Io { .. })), "{err}");
    assert!(err.to_string().contains("missing.json"), "{err}");

    let ragged = dir.path().join("ragged.json");
    std::fs::write(&ragged, r#"{"input_ids": [[1, 2, 3], [4]]}"#).expect("write");
    let err = forward_err(&[&"--llm", &fixture("qwen2_tied"), &"--ids", &ragged]);
    assert!(matches!(err, ForwardError::Input { .. }), "{err}");

    let outside = dir.path().join("outside.json");
    std::fs::write(&outside, r#"{"input_ids": [[1, 2, 100000]]}"#).expect("write");
    let err = forward_err(&[&"--llm", &fixture("qwen2_tied"), &"--ids", &outside]);
    assert!(err.to_string().contains("100000"), "{err}");

    let err = forward_err(&[&"--llm", &fixture("qwen2_tied")]);
    assert!(matches!(err, ForwardError::Usage(_)), "{err}");
    let err = forward_err(&[
        &"--vision",
        &fixture("siglip_vision"),
        &"--image",
        &Path::new("nope.png"),
    ]);
    assert!(matches!(err, ForwardError::Image(_)), "{err}");

    let conflicting = ["forward", "--out", "x", "--llava", "a", "--checkpoint", "b"];
    assert!(Args::try_parse_from(conflicting).is_err());
}

// Hugging Face hub ids: `--llm ORG/NAME[@REVISION]` found in a cache laid out on disk, run as
// the `forward` program in a child process with `HF_HUB_CACHE` and `HF_HUB_OFFLINE=1` (no
// network).

mod common;

/// The commit `refs/main` of the test cache names.
const MAIN_COMMIT: &str = "1111111111111111111111111111111111111111";
/// The commit `refs/v2` names.
const V2_COMMIT: &str = "2222222222222222222222222222222222222222";

/// Copies a Qwen fixture's model files (not its references) into `dir`.
fn copy_model(name: &str, dir: &Path) {
    std::fs::create_dir_all(dir).expect("model folder");
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(file), dir.join(file)).expect("copy model file");
    }
}

/// A Hugging Face cache holding `org/tiny`: `refs/main` names a snapshot of the qwen2_tied
/// fixture, `refs/v2` one of qwen2_untied.
fn hub_cache() -> TempDir {
    let cache = tempfile::tempdir().expect("tempdir");
    let repo = cache.path().join("models--org--tiny");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    for (reference, commit, model) in [
        ("main", MAIN_COMMIT, "qwen2_tied"),
        ("v2", V2_COMMIT, "qwen2_untied"),
    ] {
        copy_model(model, &repo.join("snapshots").join(commit));
        std::fs::write(repo.join("refs").join(reference), format!("{commit}\n")).expect("ref");
    }
    cache
}

/// Runs `forward --llm LLM` on `ids_of`'s reference ids from the folder `cwd`, offline over
/// `cache`; on success, checks the logits against that fixture's references.
fn forward_offline(cache: &Path, cwd: &Path, llm: &str, ids_of: &str) -> std::process::Output {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("out.safetensors");
    let output = std::process::Command::new(common::example("forward"))
        .current_dir(cwd)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .args(["--llm", llm, "--ids"])
        .arg(reference(ids_of))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run forward");
    if output.status.success() {
        let written = WeightStore::open_file(&out).expect("output file");
        let expected = WeightStore::open_file(reference(ids_of)).expect("reference");
        check_masked(&format!("{llm} as {ids_of}"), &written, &expected, "logits");
    }
    output
}

#[test]
fn a_hub_id_runs_the_snapshot_its_ref_or_commit_names() {
    let cache = hub_cache();
    let cwd = tempfile::tempdir().expect("tempdir");
    for (llm, model) in [
        ("org/tiny", "qwen2_tied"),
        ("org/tiny@v2", "qwen2_untied"),
        (&*format!("org/tiny@{V2_COMMIT}"), "qwen2_untied"),
    ] {
        let output = forward_offline(cache.path(), cwd.path(), llm, model);
        assert!(output.status.success(), "{llm}: {output:?}");
    }
}

#[test]
fn a_hub_id_missing_from_the_cache_names_where_it_looked_and_how_to_download_it() {
    let cache = hub_cache();
    let cwd = tempfile::tempdir().expect("tempdir");
    let output = forward_offline(cache.path(), cwd.path(), "org/absent", "qwen2_tied");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let looked_at = cache.path().join("models--org--absent/refs/main");
    assert!(
        stderr.contains(&looked_at.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("hf download org/absent"), "{stderr}");
    assert!(stderr.contains("HF_HUB_OFFLINE"), "{stderr}");

    let output = forward_offline(cache.path(), cwd.path(), "org/tiny@v3", "qwen2_tied");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr.contains("models--org--tiny/refs/v3"), "{stderr}");
    assert!(stderr.contains("--revision v3"), "{stderr}");
}

#[test]
fn a_local_folder_wins_over_a_hub_id_of_the_same_text() {
    let cache = hub_cache();
    let cwd = tempfile::tempdir().expect("tempdir");
    // `org/tiny` is qwen2_tied in the cache but qwen2_untied under the working folder.
    copy_model("qwen2_untied", &cwd.path().join("org/tiny"));
    let output = forward_offline(cache.path(), cwd.path(), "org/tiny", "qwen2_untied");
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn dtype_bf16_runs_the_model_in_bf16_and_an_unknown_dtype_is_refused() {
    let llava = reference("llava");
    let flags: [&dyn AsRef<std::ffi::OsStr>; 8] = [
        &"--llava",
        &fixture("llava"),
        &"--ids",
        &llava,
        &"--pixels",
        &llava,
        &"--dtype",
        &"bf16",
    ];
    let (_dir, written) = forward(&flags).expect("bf16 run");
    let inputs = WeightStore::open_file(&llava).expect("llava reference");
    let bf16 = WeightStore::open_file(reference("bf16")).expect("bf16 reference");
    let (logits, expected) = (
        float::<3>(&written, "logits"),
        float::<3>(&bf16, "llava.logits"),
    );
    let padding = ints(&inputs, "attention_mask")
        .equal_elem(0)
        .unsqueeze_dim::<3>(2)
        .expand(expected.dims());
    let diff = max_abs_diff(&logits.mask_where(padding, expected.clone()), &expected);
    // The bound of crates/vlm-model/tests/half_precision.rs (BENCHMARKS.md, "Half precision").
    assert!(
        diff <= 0.0625,
        "bf16 logits differ from transformers bf16 by {diff:e}"
    );

    let unknown = Args::try_parse_from(["forward", "--out", "x.safetensors", "--dtype", "f8"]);
    let message = unknown.expect_err("f8 is no dtype").to_string();
    assert!(message.contains("expected f32, bf16 or f16"), "{message}");
}
