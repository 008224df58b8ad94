//! `tools/gpu/check.sh`, the GPU check, as a dry run on the CPU build: `--backend cpu
//! --bin-dir target/<profile>/examples --dry-run` (tiny models) on the example binaries
//! `cargo test` builds. Its report must have every section, every fixture within tolerance of
//! the transformers references, our figures measured, and bf16 reported as unavailable. Also
//! `bench_run`'s real-size config from the published configs the check benchmarks on a GPU.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The fixtures the check runs `forward --reference` on (both serialisations, and qwen_v1).
const FIXTURES: usize = 29;

/// The inference figures and their units.
const INFERENCE: &[(&str, &str)] = &[
    ("vision_forward", "images/s"),
    ("prefill", "tokens/s"),
    ("decode_b1", "tokens/s"),
    ("decode_b8", "tokens/s"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `report[path...]`, failing with the path when it is missing.
fn at<'a>(report: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(report, |value, key| match value.get(key) {
        Some(inner) => inner,
        None => panic!("the report has no {path:?}: {value}"),
    })
}

/// Checks one measured run: status ok, every figure with a positive rate in its unit, and no
/// GPU figure on the CPU. The peak RSS is sampled every 0.05 s: a tiny model's process may
/// end before it is measured (null), a longer one's must be at least a MiB.
fn check_measured(run: &Value, figures: &[(&str, &str)]) {
    assert_eq!(at(run, &["status"]), "ok", "{run}");
    for (figure, unit) in figures {
        let entry = at(run, &["figures", figure]);
        assert_eq!(at(entry, &["unit"]), unit, "{figure}: {entry}");
        let rate = at(entry, &["rate"]).as_f64().expect("rate is a number");
        assert!(rate.is_finite() && rate > 0.0, "{figure}: {entry}");
        let seconds = at(entry, &["seconds"]).as_array().expect("seconds");
        assert_eq!(seconds.len(), 1, "one timed value in a dry run: {entry}");
    }
    let rss = at(run, &["peak_rss_bytes"]);
    assert!(
        rss.is_null() || rss.as_u64().is_some_and(|b| b > 1 << 20),
        "{run}"
    );
    assert!(at(run, &["peak_gpu_bytes"]).is_null(), "{run}");
}

#[test]
fn the_dry_run_on_the_cpu_build_writes_a_passing_report() {
    let bin_dir = common::example("forward")
        .parent()
        .expect("the examples folder")
        .to_path_buf();
    common::example("bench_run");
    let out = tempfile::tempdir().expect("tempdir");
    let report_path = out.path().join("report.json");
    let output = Command::new("bash")
        .arg(root().join("tools/gpu/check.sh"))
        .args(["--backend", "cpu", "--bin-dir"])
        .arg(&bin_dir)
        .arg("--dry-run")
        .arg("--out")
        .arg(&report_path)
        .current_dir(root())
        .output()
        .expect("run check.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "check.sh failed: {stderr}");
    let text = std::fs::read_to_string(&report_path).expect("the report");
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));

    assert_eq!(at(&report, &["tool"]), "tools/gpu/check.sh");
    assert_eq!(at(&report, &["format"]), 1);
    assert_eq!(at(&report, &["dry_run"]), true);
    assert_eq!(at(&report, &["passed"]), true);
    assert_eq!(at(&report, &["backend", "requested"]), "cpu");
    let binary = at(&report, &["backend", "binary", "backend"]);
    assert!(binary.as_str().is_some_and(|b| !b.is_empty()), "{binary}");
    assert!(at(&report, &["host", "cores"])
        .as_u64()
        .is_some_and(|c| c > 0));

    let parity = at(&report, &["parity"]);
    assert_eq!(at(parity, &["passed"]), true, "{parity}");
    assert_eq!(at(parity, &["failures"]), 0, "{parity}");
    let tolerance = at(parity, &["tolerance"]).as_f64().expect("tolerance");
    assert_eq!(tolerance, 1e-4);
    let fixtures = at(parity, &["fixtures"]).as_array().expect("fixtures");
    assert_eq!(fixtures.len(), FIXTURES, "{parity}");
    for fixture in fixtures {
        assert_eq!(at(fixture, &["pass"]), true, "{fixture}");
        let diff = at(fixture, &["max_abs_diff"]).as_f64().expect("a number");
        assert!((0.0..=tolerance).contains(&diff), "{fixture}");
        let outputs = at(fixture, &["per_output"]).as_object().expect("outputs");
        assert!(!outputs.is_empty(), "{fixture}");
    }
    let named = |name: &str| fixtures.iter().find(|f| f["fixture"] == name);
    for name in [
        "qwen2_tied",
        "v5/qwen3",
        "siglip_vision",
        "v5/clip_vision",
        "llava_clip",
    ] {
        assert!(named(name).is_some(), "{name} missing from {parity}");
    }
    let llava = named("v5/llava").expect("v5/llava");
    for output in [
        "logits",
        "inputs_embeds",
        "image_features",
        "vision_features",
        "loss",
    ] {
        assert!(llava["per_output"].get(output).is_some(), "{llava}");
    }
    let tower = named("siglip_vision").expect("siglip_vision");
    assert!(
        tower["per_output"].get("image_features").is_some(),
        "{tower}"
    );

    let throughput = at(&report, &["throughput"]);
    assert_eq!(at(throughput, &["config", "llm", "hidden_size"]), 64);
    let ours = at(throughput, &["f32", "ours"]);
    assert_eq!(at(ours, &["status"]), "ran", "{ours}");
    check_measured(at(ours, &["train"]), &[("train_step", "tokens/s")]);
    check_measured(at(ours, &["inference"]), INFERENCE);
    let torch = at(throughput, &["f32", "pytorch"]);
    match at(torch, &["status"]).as_str() {
        Some("skipped") => assert!(at(torch, &["reason"]).is_string()),
        Some("ran") => {
            check_measured(at(torch, &["train"]), &[("train_step", "tokens/s")]);
            check_measured(at(torch, &["inference"]), INFERENCE);
        }
        other => panic!("PyTorch status {other:?}: {torch}"),
    }
    assert_eq!(
        at(throughput, &["bf16", "status"]),
        "not available in this build"
    );
    let total = at(&report, &["seconds", "total"])
        .as_f64()
        .expect("seconds");
    eprintln!("check.sh --dry-run: {total} s");
}

/// Runs `bench_run` with `args` from the repository root.
fn bench_run(args: &[&str]) -> std::process::Output {
    Command::new(common::example("bench_run"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run bench_run")
}

#[test]
fn the_real_size_config_comes_from_the_published_configs() {
    let output = bench_run(&[
        "--llm-config",
        "data/configs/Qwen--Qwen2.5-0.5B-Instruct/config.json",
        "--vision-config",
        "data/configs/google--siglip-so400m-patch14-384/config.json",
        "show-config",
    ]);
    assert!(output.status.success(), "{output:?}");
    let config: Value = serde_json::from_slice(&output.stdout).expect("a config");
    assert_eq!(config["llm"]["vocab_size"], 151936);
    assert_eq!(config["llm"]["hidden_size"], 896);
    assert_eq!(config["llm"]["num_hidden_layers"], 24);
    assert_eq!(config["llm"]["num_key_value_heads"], 2);
    assert_eq!(config["vision"]["hidden_size"], 1152);
    assert_eq!(config["vision"]["num_hidden_layers"], 27);
    // 384 px in 14 px patches: 27 x 27 image tokens per sample.
    assert_eq!(config["train"]["image_tokens"], 729);

    // Another architecture is refused, not benchmarked as Qwen2.
    let output = bench_run(&[
        "--llm-config",
        "data/configs/Qwen--Qwen3-0.6B/config.json",
        "show-config",
    ]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("qwen3"), "{stderr}");
}
