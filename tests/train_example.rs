//! The `train` program on a small random model: `--tokenizer` takes a `tokenizer.json` or the
//! folder holding it, every checkpoint carries a copy of the tokenizer and records it, and
//! `chat` loads such a checkpoint with no tokenizer flag even though its language model folder
//! has none; default LoRA settings fit a Qwen2 model; run folders belong to one run; one seed
//! gives one loss curve; `--resume DIR` needs no other flag; SIGTERM checkpoints the step in
//! progress, which `--resume` continues from.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{checkpoint, example, tokenizer_file};
use serde_json::Value;
use vlm::qwen::QwenModel;
use vlm_testkit::{device, fixture, TestBackend};

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
    train_with(
        llm,
        tokenizer,
        out,
        1,
        &["--mode", "projector", "--max_steps", "1"],
    )
}

/// Runs `train` on the first `records` sample records into `out` (transformers' flag
/// spellings for some settings, kebab-case for the rest), with `extra` flags; the pseudo-flag
/// `--with-bad-record` appends a record the dataset skips.
fn train_with(llm: &Path, tokenizer: &Path, out: &Path, records: usize, extra: &[&str]) -> Output {
    train_command(llm, tokenizer, out, records, extra)
        .output()
        .expect("run train")
}

/// The `train` command of [`train_with`].
fn train_command(
    llm: &Path,
    tokenizer: &Path,
    out: &Path,
    records: usize,
    extra: &[&str],
) -> Command {
    let mut command = data_command(out, records, extra);
    command
        .arg("--llm")
        .arg(llm)
        .arg("--vision")
        .arg(fixture("siglip_vision"))
        .args(["--vision-feature-select-strategy", "full"])
        .arg("--tokenizer")
        .arg(tokenizer);
    command
}

/// `train` on the first `records` sample records into `out` with `extra` flags, given no
/// model yet (see [`train_with`]).
fn data_command(out: &Path, records: usize, extra: &[&str]) -> Command {
    let sample = fixture("..").join("sample");
    let manifest = out.with_extension("jsonl");
    let lines = std::fs::read_to_string(sample.join("train.jsonl")).expect("manifest");
    let first: Vec<&str> = lines.lines().take(records).collect();
    let mut text = first.join("\n");
    if extra.contains(&"--with-bad-record") {
        text.push_str("\n{\"id\":\"bad\",\"image\":\"images/missing.png\",\"turns\":[]}");
    }
    std::fs::write(&manifest, text).expect("write manifest");
    let extra: Vec<&str> = extra
        .iter()
        .copied()
        .filter(|flag| *flag != "--with-bad-record")
        .collect();
    let mut command = Command::new(example("train"));
    command
        .arg("--manifest")
        .arg(&manifest)
        .arg("--image-root")
        .arg(&sample)
        .args(["--max-len", "256", "--workers", "1"])
        .args(["--gradient_accumulation_steps", "1"])
        .args(["--disable_progress_bar", "true"])
        .args(&extra)
        .arg("--output_dir")
        .arg(out);
    command
}

/// Flags of a projector-only run of `max_steps` steps, a checkpoint every `save_steps`, a log
/// line every step.
fn projector_run<'a>(max_steps: &'a str, save_steps: &'a str) -> [&'a str; 8] {
    [
        "--mode",
        "projector",
        "--max-steps",
        max_steps,
        "--save-steps",
        save_steps,
        "--logging-steps",
        "1",
    ]
}

/// `train` with only `args` (a resumed run).
fn train_only(args: &[&str]) -> Output {
    Command::new(example("train"))
        .args(args)
        .output()
        .expect("run train")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The logged losses of a run, step by step.
fn logged_losses(out: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json line"))
        .filter(|record| record["event"] == "log")
        .map(|record| {
            let step = record["step"].as_u64().expect("step");
            (step, record["loss"].as_f64().expect("loss"))
        })
        .collect()
}

#[test]
fn default_lora_settings_train_a_qwen2_model_and_write_an_adapter_peft_loads() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("lora");
    let output = train_with(
        llm.path(),
        &tokenizer_file(),
        &out,
        1,
        &["--max-steps", "1"],
    );
    assert!(output.status.success(), "{output:?}");
    let err = stderr(&output);
    assert!(
        err.contains("LoRA rank 128 exceeds the width 64 of `q_proj`"),
        "{err}"
    );
    let adapter = out.join("checkpoint-1/model/adapter");
    let config = vlm::lora::LoraConfig::load(&adapter).expect("peft config");
    let json = config.to_peft_json();
    assert_eq!(json["r"], 128, "{json}");
    assert_eq!(json["lora_alpha"], 256.0, "{json}");
    let targets = &json["target_modules"];
    for name in [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ] {
        assert!(
            targets.as_array().expect("list").iter().any(|t| t == name),
            "{json}"
        );
    }
    let base = QwenModel::<TestBackend>::load(llm.path(), &device()).expect("base");
    let adapted = vlm::lora::load_adapter(base, &adapter).expect("the adapter loads");
    assert_eq!(vlm::lora::adapted_modules(&adapted).len(), 14);
}

#[test]
fn a_fresh_run_refuses_a_folder_holding_another_run_unless_overwrite() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("run");
    let first = train(llm.path(), &tokenizer_file(), &out);
    assert!(first.status.success(), "{first:?}");
    let metrics = std::fs::read(out.join("metrics.jsonl")).expect("metrics");

    let second = train(llm.path(), &tokenizer_file(), &out);
    assert!(!second.status.success(), "{second:?}");
    let err = stderr(&second);
    assert!(err.contains("holds another run"), "{err}");
    assert!(err.contains("checkpoint-1"), "{err}");
    assert!(!err.contains("OutputDir {"), "Display, not Debug: {err}");
    assert_eq!(
        std::fs::read(out.join("metrics.jsonl")).expect("metrics"),
        metrics,
        "the old run's metrics are untouched"
    );

    let extra = ["--mode", "projector", "--max-steps", "1", "--overwrite"];
    let third = train_with(llm.path(), &tokenizer_file(), &out, 1, &extra);
    assert!(third.status.success(), "{third:?}");
}

#[test]
fn one_seed_gives_one_loss_curve() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let extra = [
        "--lora-rank",
        "4",
        "--max-steps",
        "5",
        "--logging-steps",
        "1",
        "--seed",
        "5",
        "--save-steps",
        "0",
    ];
    let runs: Vec<Vec<(u64, f64)>> = ["a", "b"]
        .iter()
        .map(|name| {
            let out = work.path().join(name);
            let output = train_with(llm.path(), &tokenizer_file(), &out, 3, &extra);
            assert!(output.status.success(), "{output:?}");
            logged_losses(&out)
        })
        .collect();
    assert_eq!(runs[0].len(), 5, "{runs:?}");
    assert_eq!(runs[0], runs[1], "same seed, same losses");
}

#[test]
fn resume_needs_only_the_folder_and_may_only_extend_the_run() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("run");
    let extra = projector_run("2", "1");
    let first = train_with(llm.path(), &tokenizer_file(), &out, 2, &extra);
    assert!(first.status.success(), "{first:?}");
    let dir = out.to_str().expect("utf-8 path");

    let refused = train_only(&["--resume", dir, "--learning-rate", "1"]);
    assert!(!refused.status.success(), "{refused:?}");
    let err = stderr(&refused);
    assert!(
        err.contains("`learning_rate` cannot change when resuming"),
        "{err}"
    );

    let resumed = train_only(&["--resume", dir, "--max-steps", "3"]);
    assert!(resumed.status.success(), "{resumed:?}");
    let err = stderr(&resumed);
    assert!(
        err.contains("resuming from checkpoint-2 (step 2, epoch 1.00, samples seen 2)"),
        "{err}"
    );
    assert!(out.join("checkpoint-3").is_dir());
    let steps: Vec<u64> = logged_losses(&out).iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [1, 2, 3]);
}

#[test]
fn sigterm_checkpoints_the_step_in_progress_and_resume_continues_from_it() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("run");
    let extra = projector_run("40", "20");
    let mut child = train_command(llm.path(), &tokenizer_file(), &out, 2, &extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start train");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut err = String::new();
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        err.push_str(&line);
        err.push('\n');
        if line.starts_with("step 1/40") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    for line in lines {
        err.push_str(&line.expect("stderr line"));
        err.push('\n');
    }
    let status = child.wait().expect("wait");
    assert!(!status.success(), "{err}");
    let (step, rest) = err
        .split_once("interrupted at step ")
        .and_then(|(_, rest)| rest.split_once(':'))
        .unwrap_or_else(|| panic!("no interruption message: {err}"));
    let step: usize = step.parse().expect("step");
    assert!((1..20).contains(&step), "mid-interval: {err}");
    let dir = out.to_str().expect("utf-8 path");
    assert!(
        rest.starts_with(&format!(
            " checkpoint-{step} written; resume with `train --resume {dir}`"
        )),
        "{err}"
    );
    assert!(out.join(format!("checkpoint-{step}/model")).is_dir());

    for flag in [
        ["--max-len", "256"],
        ["--vision-feature-layer", "-1"],
        ["--vision-feature-select-strategy", "full"],
    ] {
        let refused = train_only(&["--resume", dir, flag[0], flag[1]]);
        assert!(!refused.status.success(), "{refused:?}");
        let message = format!("{} cannot be given with --resume", flag[0]);
        assert!(stderr(&refused).contains(&message), "{refused:?}");
    }

    let resumed = train_only(&["--resume", dir, "--max-steps", &(step + 1).to_string()]);
    assert!(resumed.status.success(), "{resumed:?}");
    let err = stderr(&resumed);
    assert!(
        err.contains(&format!("resuming from checkpoint-{step} (step {step},")),
        "{err}"
    );
    assert!(out.join(format!("checkpoint-{}", step + 1)).is_dir());
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

#[test]
fn a_bad_record_is_counted_once_however_many_epochs_meet_it() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("run");
    let extra = [
        "--mode",
        "projector",
        "--max-steps",
        "4",
        "--with-bad-record",
    ];
    let output = train_with(llm.path(), &tokenizer_file(), &out, 1, &extra);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 records skipped"), "{stdout}");
    let err = stderr(&output);
    assert_eq!(err.matches("skipped manifest line 2").count(), 1, "{err}");
}

/// A rank-4 LoRA run of two steps, a checkpoint after each, whose first update has a
/// learning rate of 0: its checkpoint-1 holds the weights it started from.
const LORA_FROM_STEP_ZERO: [&str; 10] = [
    "--mode",
    "lora",
    "--lora-rank",
    "4",
    "--max-steps",
    "2",
    "--warmup-steps",
    "1",
    "--save-steps",
    "1",
];

/// The bytes of the projector a run saved in its checkpoint `step`.
fn saved_projector(out: &Path, step: usize) -> Vec<u8> {
    let path = out.join(format!("checkpoint-{step}/model/projector.safetensors"));
    std::fs::read(path).expect("projector file")
}

#[test]
fn stage_two_starts_from_the_stage_one_projector_and_refuses_a_mismatched_one() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let stage1 = work.path().join("stage1");
    // One warmup step: the first update has a learning rate of 0, the second trains.
    let extra = [&projector_run("2", "1")[..], &["--warmup-steps", "1"]].concat();
    let output = train_with(llm.path(), &tokenizer_file(), &stage1, 1, &extra);
    assert!(output.status.success(), "{output:?}");
    let trained = saved_projector(&stage1, 2);
    assert_ne!(saved_projector(&stage1, 1), trained, "stage 1 trained");

    // Stage 2's first update has a learning rate of 0: its checkpoint-1 holds its step-0
    // projector, which must be stage 1's trained one (the run folder names its latest).
    let stage2 = work.path().join("stage2");
    let stage1_dir = stage1.to_str().expect("utf-8 path");
    let extra = [
        &LORA_FROM_STEP_ZERO[..],
        &["--seed", "7", "--pretrained_projector", stage1_dir],
    ]
    .concat();
    let output = train_with(llm.path(), &tokenizer_file(), &stage2, 1, &extra);
    assert!(output.status.success(), "{output:?}");
    assert!(
        saved_projector(&stage2, 1) == trained,
        "stage 1's projector, bit for bit"
    );
    let program =
        std::fs::read_to_string(stage2.join("checkpoint-1/train_program.json")).expect("program");
    let recorded = stage1.join("checkpoint-2/model/projector.safetensors");
    let recorded = std::fs::canonicalize(recorded).expect("projector path");
    assert!(
        program.contains(recorded.to_str().expect("utf-8")),
        "{program}"
    );

    let dir = stage2.to_str().expect("utf-8 path");
    let refused = train_only(&["--resume", dir, "--pretrained-projector", stage1_dir]);
    assert!(!refused.status.success(), "{refused:?}");
    let message = "--pretrained-projector cannot be given with --resume";
    assert!(stderr(&refused).contains(message), "{refused:?}");
    let resumed = train_only(&["--resume", dir, "--max-steps", "3"]);
    assert!(resumed.status.success(), "{resumed:?}");

    // A projector of other widths: refused, naming the file and both projectors.
    let narrow = work.path().join("narrow.safetensors");
    let mut writer = vlm::hf::SafetensorsWriter::new();
    for (name, shape) in [
        ("linear_1.weight", vec![8, 4]),
        ("linear_1.bias", vec![8]),
        ("linear_2.weight", vec![8, 8]),
        ("linear_2.bias", vec![8]),
    ] {
        let values = vec![0.0f32; shape.iter().product()];
        let data = burn::tensor::TensorData::new(values, shape);
        writer.add_data(format!("multi_modal_projector.{name}"), data);
    }
    writer.write(&narrow).expect("write projector");
    let flag = ["--pretrain-mm-mlp-adapter", narrow.to_str().expect("utf-8")];
    let extra = [&projector_run("1", "1")[..], &flag].concat();
    let out = work.path().join("mismatch");
    let output = train_with(llm.path(), &tokenizer_file(), &out, 1, &extra);
    assert!(!output.status.success(), "{output:?}");
    let err = stderr(&output);
    assert!(
        err.contains("narrow.safetensors does not hold the mlp2x_gelu projector from width"),
        "{err}"
    );
    assert!(err.contains("linear_1.weight"), "{err}");
}

#[test]
fn stage_one_stage_two_export_and_train_llava_chain_end_to_end() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let stage1 = work.path().join("stage1");
    let output = train_with(
        llm.path(),
        &tokenizer_file(),
        &stage1,
        1,
        &projector_run("1", "1"),
    );
    assert!(output.status.success(), "{output:?}");
    let stage2 = work.path().join("stage2");
    let from_stage1 = ["--pretrained-projector", stage1.to_str().expect("utf-8")];
    let lora = ["--mode", "lora", "--lora-rank", "4", "--max-steps", "1"];
    let extra = [&lora[..], &from_stage1].concat();
    let output = train_with(llm.path(), &tokenizer_file(), &stage2, 1, &extra);
    assert!(output.status.success(), "{output:?}");

    let exported = work.path().join("hf");
    let output = Command::new(example("export"))
        .arg("--checkpoint")
        .arg(&stage2)
        .arg("--output-dir")
        .arg(&exported)
        .output()
        .expect("run export");
    assert!(output.status.success(), "{output:?}");

    // Stage 3 from the exported folder, the tower trained too; its first update has a
    // learning rate of 0, so checkpoint-1 holds the folder's projector as it loaded.
    let stage3 = work.path().join("stage3");
    let llava = [
        "--train-vision",
        "--llava",
        exported.to_str().expect("utf-8"),
    ];
    let extra = [&LORA_FROM_STEP_ZERO[..], &llava].concat();
    let output = data_command(&stage3, 1, &extra)
        .output()
        .expect("run train");
    assert!(output.status.success(), "{output:?}");
    assert!(
        saved_projector(&stage3, 1) == saved_projector(&stage2, 1),
        "the exported projector, bit for bit"
    );
    let model = stage3.join("checkpoint-1/model");
    let (_, config) = vlm::model::load_checkpoint::<TestBackend>(&model, &device())
        .expect("the stage 3 checkpoint loads");
    assert_eq!(
        config.language_model,
        exported.canonicalize().expect("path")
    );
    assert_eq!(config.vision_tower.path, PathBuf::from("vision_tower"));
    let patches = |dir: &Path, key: &str| {
        let store = vlm::hf::WeightStore::open_dir(dir).expect("weights");
        let tensor = store
            .float_any::<TestBackend, 4>(key, &device())
            .expect(key);
        tensor.into_data()
    };
    let key = "embeddings.patch_embedding.weight";
    let trained = stage3.join("checkpoint-2/model/vision_tower");
    assert_ne!(
        patches(&trained, &format!("vision_model.{key}")),
        patches(&exported, &format!("vision_tower.{key}")),
        "the tower trained"
    );

    let llm_dir = llm.path().to_str().expect("utf-8");
    let both = [
        "--llava",
        exported.to_str().expect("utf-8"),
        "--llm",
        llm_dir,
    ];
    let refused = data_command(&work.path().join("both"), 1, &both)
        .output()
        .expect("run train");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot be used with"),
        "{refused:?}"
    );
}

#[test]
fn dtype_bf16_trains_lora_over_a_half_base_records_it_for_chat_and_resume_keeps_it() {
    let llm = llm_without_tokenizer();
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("run");
    let lora = "--mode lora --lora-rank 4 --max-steps 2 --save-steps 1 --dtype bf16";
    let lora: Vec<&str> = lora.split(' ').collect();
    let first = train_with(llm.path(), &tokenizer_file(), &out, 2, &lora);
    assert!(first.status.success(), "{first:?}");
    let checkpoint = out.join("checkpoint-2");
    let settings = std::fs::read_to_string(checkpoint.join("train_config.toml")).expect("toml");
    assert!(settings.contains("dtype = \"bf16\""), "{settings}");
    let model = checkpoint.join("model");
    let config: Value =
        serde_json::from_slice(&std::fs::read(model.join("vlm_config.json")).expect("config"))
            .expect("config json");
    assert_eq!(config["dtype"], "bf16", "{config}");
    // What trained is saved in f32.
    for file in [
        model.join("projector.safetensors"),
        model.join("adapter/adapter_model.safetensors"),
        checkpoint.join("trainable.safetensors"),
    ] {
        let store = vlm::hf::WeightStore::open_file(&file).expect("weights");
        for key in store.keys() {
            let dtype = store.info(key).expect("info").dtype;
            assert_eq!(dtype, "F32", "{} {key}", file.display());
        }
    }
    // chat loads the checkpoint in the type it records (bf16) with no --dtype.
    let output = chat(&model);
    assert!(output.status.success(), "{output:?}");

    let dir = out.to_str().expect("utf-8 path");
    let refused = train_only(&["--resume", dir, "--dtype", "f32"]);
    assert!(!refused.status.success(), "{refused:?}");
    let err = stderr(&refused);
    assert!(err.contains("`dtype` cannot change when resuming"), "{err}");
    let resumed = train_only(&["--resume", dir, "--max-steps", "3"]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(out.join("checkpoint-3").is_dir());

    let bad = train_only(&["--dtype", "fp8", "--manifest", "x.jsonl"]);
    assert!(!bad.status.success(), "{bad:?}");
    let err = stderr(&bad);
    assert!(err.contains("--dtype") && err.contains("fp8"), "{err}");
}
