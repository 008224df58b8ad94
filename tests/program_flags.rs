//! The programs share one kebab-case flag vocabulary (the old spellings stay as aliases), and
//! `--help` works everywhere, `inspect` included.

mod common;

use std::process::Command;

use common::example;
use vlm_testkit::fixture;

fn help(program: &str) -> String {
    let output = Command::new(example(program))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success(), "{program}: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn every_program_prints_help_in_one_vocabulary() {
    let expected = [
        ("inspect", "Usage: inspect"),
        ("chat", "--system-prompt <TEXT>"),
        ("eval", "--output <FILE>"),
        ("merge", "--output-dir <DIR>"),
        ("export", "--output-dir <DIR>"),
        ("export", "--max-shard-size <SIZE>"),
        ("forward", "--output <FILE>"),
        ("make_sample_data", "--output-dir <DIR>"),
        ("prepare_data", "--output <OUTPUT>"),
        ("eval", "[default: eval_answers.jsonl]"),
        ("make_sample_data", "[default: data/sample]"),
    ];
    for (program, flag) in expected {
        let text = help(program);
        assert!(
            text.contains(flag),
            "{program} --help lacks {flag}:\n{text}"
        );
    }
}

#[test]
fn inspect_reads_a_folder_and_refuses_a_missing_one() {
    let output = Command::new(example("inspect"))
        .arg(fixture("qwen2_tied"))
        .output()
        .expect("run inspect");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("parameters"));
    let output = Command::new(example("inspect"))
        .arg("no/such-folder-here")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run inspect");
    assert!(!output.status.success());
}

#[test]
fn errors_are_displayed_not_debug_dumped() {
    let output = Command::new(example("bench_run"))
        .args(["--config", "/dev/zero", "show-config"])
        .output()
        .expect("run bench_run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot read /dev/zero: larger than the 64 MiB limit"),
        "{stderr}"
    );
}
