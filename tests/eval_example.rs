//! The `eval` example on a small random model over the bundled held-out data: one JSON line
//! per question, batched answers equal unbatched ones, the printed scores agree with the
//! lines, and references equal to the model's own answers score 100%.

mod common;

use std::path::Path;
use std::process::Command;

use common::{checkpoint, example};
use serde_json::{json, Value};
use vlm_testkit::fixture;

fn sample_dir() -> std::path::PathBuf {
    fixture("..").join("sample")
}

/// Runs eval on `data` and returns the printed summary and the answer lines.
fn eval(data: &Path, images: &Path, out: &Path, flags: &[&str]) -> (String, Vec<Value>) {
    let output = Command::new(example("eval"))
        .arg("--checkpoint")
        .arg(checkpoint())
        .arg("--data")
        .arg(data)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(["--max-new-tokens", "4"])
        .args(flags)
        .output()
        .expect("run eval");
    assert!(output.status.success(), "{output:?}");
    let lines = std::fs::read_to_string(out).expect("answers");
    let lines = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    (String::from_utf8(output.stdout).expect("utf-8"), lines)
}

fn answers(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["answer"].as_str().expect("answer"))
        .collect()
}

fn count(lines: &[Value], key: &str) -> usize {
    lines.iter().filter(|l| l[key] == json!(true)).count()
}

#[test]
fn eval_scores_every_question_and_batches_like_single_answers() {
    let work = tempfile::tempdir().expect("tempdir");
    let heldout = std::fs::read_to_string(sample_dir().join("heldout.jsonl")).expect("manifest");
    let manifest = work.path().join("three.jsonl");
    let three: Vec<&str> = heldout.lines().take(3).collect();
    std::fs::write(&manifest, three.join("\n")).expect("write manifest");
    let turns: usize = three
        .iter()
        .map(|line| {
            let conversation: Value = serde_json::from_str(line).expect("json");
            conversation["turns"].as_array().expect("turns").len() / 2
        })
        .sum();

    let (summary, batched) = eval(
        &manifest,
        &sample_dir(),
        &work.path().join("a.jsonl"),
        &["--batch-size", "5"],
    );
    assert_eq!(batched.len(), turns, "one line per assistant turn");
    let (exact, contains) = (count(&batched, "exact"), count(&batched, "contains"));
    let expected = format!("exact match {exact}/{turns} ");
    assert!(summary.contains(&expected), "{summary}");
    assert!(
        summary.contains(&format!("contains-match {contains}/{turns} ")),
        "{summary}"
    );
    assert_eq!(batched[0]["id"], "heldout_0000#0");
    assert_eq!(batched[0]["reference"], "Three.");

    // The tokenizer given as a file (the default is the LLM folder's copy of it).
    let tokenizer = common::tokenizer_file().display().to_string();
    let (_, single) = eval(
        &manifest,
        &sample_dir(),
        &work.path().join("b.jsonl"),
        &["--batch-size", "1", "--tokenizer", &tokenizer],
    );
    assert_eq!(
        answers(&single),
        answers(&batched),
        "left-padded batches change nothing"
    );

    // References equal to the model's own first answers: every one matches.
    let mut own = Vec::new();
    for (line, answer) in three.iter().zip(answers(&batched).into_iter().step_by(4)) {
        let mut conversation: Value = serde_json::from_str(line).expect("json");
        let first_user = conversation["turns"][0].clone();
        let reference = json!({"role": "assistant", "text": format!("{answer}.")});
        conversation["turns"] = json!([first_user, reference]);
        if !answer.trim().is_empty() {
            own.push(conversation.to_string());
        }
    }
    assert!(own.len() >= 2, "non-empty answers to score: {batched:?}");
    let own_manifest = work.path().join("own.jsonl");
    std::fs::write(&own_manifest, own.join("\n")).expect("write manifest");
    // The tokenizer given as its folder: the same answers, so every reference matches.
    let folder = common::tokenizer_file();
    let folder = folder
        .parent()
        .expect("tokenizer folder")
        .display()
        .to_string();
    let (summary, lines) = eval(
        &own_manifest,
        &sample_dir(),
        &work.path().join("c.jsonl"),
        &["--tokenizer", &folder],
    );
    let n = own.len();
    assert_eq!(count(&lines, "exact"), n, "{lines:?}");
    assert_eq!(count(&lines, "contains"), n, "{lines:?}");
    assert!(
        summary.contains(&format!("exact match {n}/{n} (100.0%)")),
        "{summary}"
    );
}

#[test]
fn eval_reads_llava_json_too() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = sample_dir().join("llava_heldout.json");
    let images = sample_dir().join("images");
    let (_, lines) = eval(
        &data,
        &images,
        &work.path().join("l.jsonl"),
        &["--limit", "3"],
    );
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["reference"].is_string() && l["question"].is_string()));
}

/// Runs eval from the folder above `data/sample` with `flags`, expecting success; returns
/// what it printed.
fn eval_in_data_folder(flags: &[&str], out: &Path) -> String {
    let output = Command::new(example("eval"))
        .current_dir(sample_dir().join(".."))
        .arg("--checkpoint")
        .arg(checkpoint())
        .args(flags)
        .args(["--max-new-tokens", "2"])
        .arg("--output")
        .arg(out)
        .output()
        .expect("run eval");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn eval_takes_relative_image_folders_and_counts_records_without_an_answer() {
    let work = tempfile::tempdir().expect("tempdir");
    let heldout = std::fs::read_to_string(sample_dir().join("heldout.jsonl")).expect("manifest");
    let first: Value = serde_json::from_str(heldout.lines().next().expect("line")).expect("json");
    let mut unanswered = first.clone();
    unanswered["id"] = json!("no-answer");
    unanswered["turns"] = json!([first["turns"][0]]);
    let lines = [first.to_string(), unanswered.to_string()].join("\n");
    let manifest = work.path().join("two.jsonl");
    std::fs::write(&manifest, lines).expect("write manifest");
    let data = manifest.to_str().expect("utf-8");
    let summary = eval_in_data_folder(
        &["--data", data, "--images", "sample"],
        &work.path().join("a.jsonl"),
    );
    assert!(
        summary.contains("1 records without an answer to score were left out"),
        "{summary}"
    );
    let llava = [
        "--data",
        "sample/llava_heldout.json",
        "--images",
        "sample/images",
    ];
    eval_in_data_folder(
        &[&llava[..], &["--limit", "1"]].concat(),
        &work.path().join("l.jsonl"),
    );
}
