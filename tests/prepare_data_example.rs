//! The `prepare_data` example refuses what would lose data or give an empty manifest: an
//! output that is one of its inputs (the annotation file, through a symlink, or the config
//! file), and a missing images folder.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::example;

const ANNOTATIONS: &str = r#"[{"id": "1", "image": "a.png",
  "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]}]"#;

fn prepare_data(dir: &Path, args: &[&str]) -> Output {
    Command::new(example("prepare_data"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run prepare_data")
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("images")).expect("images");
    std::fs::write(dir.path().join("images/a.png"), b"").expect("image");
    std::fs::write(dir.path().join("ann.json"), ANNOTATIONS).expect("annotations");
    dir
}

fn refused(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr.contains(needle), "{stderr}");
}

#[test]
fn an_output_that_is_an_input_is_refused() {
    let dir = fixture();
    std::os::unix::fs::symlink("ann.json", dir.path().join("alias.json")).expect("symlink");
    let source = "--source=kind=llava,annotations=ann.json,images=images";
    for output in ["ann.json", "alias.json", "./images/../ann.json"] {
        let run = prepare_data(dir.path(), &["--output", output, source]);
        refused(&run, "is the input");
        let text = std::fs::read_to_string(dir.path().join("ann.json")).expect("read");
        assert_eq!(text, ANNOTATIONS, "the annotation file is untouched");
    }
    let config = "output = \"prep.toml\"\n[[source]]\nkind = \"llava\"\n\
                  annotations = \"ann.json\"\nimages = \"images\"\n";
    std::fs::write(dir.path().join("prep.toml"), config).expect("config");
    refused(
        &prepare_data(dir.path(), &["--config", "prep.toml"]),
        "is the input",
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("prep.toml")).expect("read"),
        config
    );
    let ok = prepare_data(dir.path(), &["--output", "m.jsonl", source]);
    assert!(ok.status.success(), "{ok:?}");
}

#[test]
fn a_missing_images_folder_is_an_error() {
    let dir = fixture();
    let run = prepare_data(
        dir.path(),
        &[
            "--output",
            "m.jsonl",
            "--source=kind=llava,annotations=ann.json,images=imgs",
        ],
    );
    refused(&run, "image folder imgs");
    assert!(!dir.path().join("m.jsonl").exists());
}
