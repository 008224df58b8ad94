//! The `train` program for one step on a small random model: `--tokenizer` takes a
//! `tokenizer.json` or the folder holding it, every checkpoint carries a copy of the tokenizer
//! and records it, and `chat` loads such a checkpoint with no tokenizer flag even though its
//! language model folder has none.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{checkpoint, example, tokenizer_file};
use serde_json::Value;
use vlm_testkit::fixture;

/// A language model folder without a tokenizer: the test model's config and weights, linked
/// (or copied) next to Cargo's target tmp folder.
fn llm_without_tokenizer() -> tempfile::TempDir {
    let source = checkpoint().parent().expect("model root").join("llm");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    for file in ["config.json", "model.safetensors"] {
        let (from, to) = (source.join(file), dir.path().join(file));
        std::fs::hard_link(&from, &to)
            .or_else(|_| std::fs::copy(&from, &to).map(drop))
            .expect("link model file");
    }
    dir
}

/// Trains one step (projector only, one sample record) into `out` with `--tokenizer tokenizer`.
fn train(llm: &Path, tokenizer: &Path, out: &Path) -> Output {
    let sample = fixture("..").join("sample");
    let manifest = out.with_extension("jsonl");
    let records = std::fs::read_to_string(sample.join("train.jsonl")).expect("manifest");
    let first = records.lines().next().expect("a record");
    std::fs::write(&manifest, first).expect("write manifest");
    Command::new(example("train"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--image-root")
        .arg(&sample)
        .arg("--llm")
        .arg(llm)
        .arg("--vision")
        .arg(fixture("siglip_vision"))
        .args(["--vision-feature-select-strategy", "full"])
        .arg("--tokenizer")
        .arg(tokenizer)
        .args(["--max-len", "256", "--workers", "1", "--mode", "projector"])
        .args(["--max_steps", "1", "--gradient_accumulation_steps", "1"])
        .args(["--disable_progress_bar", "true"])
        .arg("--output_dir")
        .arg(out)
        .output()
        .expect("run train")
}

/// `chat --checkpoint checkpoint --prompt Hi`, two greedy tokens, no tokenizer flag.
fn chat(checkpoint: &Path) -> Output {
    Command::new(example("chat"))
        .arg("--checkpoint")
        .arg(checkpoint)
        .args(["--prompt", "Hi", "--max-new-tokens", "2"])
        .output()
        .expect("run chat")
}

#[test]
fn checkpoints_carry_the_tokenizer_given_as_a_file_or_folder_and_chat_loads_it() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let tokenizer = tokenizer_file();
    let folder = tokenizer.parent().expect("tokenizer folder").to_path_buf();
    let expected = std::fs::read(&tokenizer).expect("tokenizer bytes");

    let mut models: Vec<PathBuf> = Vec::new();
    for (name, given) in [("file", &tokenizer), ("folder", &folder)] {
        let out = work.path().join(name);
        let output = train(llm.path(), given, &out);
        assert!(output.status.success(), "--tokenizer {name}: {output:?}");
        let model = out.join("checkpoint-1/model");
        let copy = std::fs::read(model.join("tokenizer.json")).expect("tokenizer copy");
        assert!(
            copy == expected,
            "the checkpoint's tokenizer.json is the one given"
        );
        let config: Value =
            serde_json::from_slice(&std::fs::read(model.join("vlm_config.json")).expect("config"))
                .expect("config json");
        assert_eq!(config["tokenizer"], "tokenizer.json", "{config}");
        models.push(model);
    }

    let output = chat(&models[0]);
    assert!(output.status.success(), "{output:?}");
    assert!(!output.stdout.is_empty(), "{output:?}");

    // Without the record, the language model folder's tokenizer is looked for, and it has
    // none: the recorded copy is what made the chat above work.
    let config_path = models[0].join("vlm_config.json");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("config")).expect("json");
    config.as_object_mut().expect("object").remove("tokenizer");
    std::fs::write(&config_path, config.to_string()).expect("write config");
    let output = chat(&models[0]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no tokenizer.json"), "{stderr}");
}
