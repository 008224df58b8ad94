//! The crate layering the README promises, checked against the real dependency graph.
//!
//! Lower crates never depend on higher ones: a new `use` of a higher crate fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// For each crate, the vlm crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("vlm-rng", &[]),
    ("vlm-hf", &[]),
    ("vlm-image", &["vlm-hf"]),
    ("vlm-data", &["vlm-hf", "vlm-image", "vlm-rng"]),
    ("vlm-vision", &["vlm-hf"]),
    ("vlm-lora", &["vlm-hf"]),
    ("vlm-qwen", &["vlm-hf", "vlm-lora", "vlm-rng"]),
    (
        "vlm-model",
        &[
            "vlm-hf",
            "vlm-data",
            "vlm-image",
            "vlm-vision",
            "vlm-qwen",
            "vlm-lora",
        ],
    ),
    (
        "vlm-train",
        &[
            "vlm-model",
            "vlm-data",
            "vlm-rng",
            "vlm-hf",
            "vlm-lora",
            "vlm-qwen",
        ],
    ),
    (
        "vlm-sample",
        &[
            "vlm-data",
            "vlm-image",
            "vlm-rng",
            "vlm-hf",
            "vlm-vision",
            "vlm-qwen",
            "vlm-model",
            "vlm-train",
        ],
    ),
    ("vlm-testkit", &[]),
];

fn vlm_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| n.starts_with("vlm-"))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_downwards() {
    let graph = vlm_dependencies();
    let library_crates: BTreeSet<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    let found: BTreeSet<&str> = graph
        .keys()
        .map(String::as_str)
        .filter(|n| *n != "vlm")
        .collect();
    assert_eq!(
        found, library_crates,
        "workspace crates changed: update ALLOWED"
    );
    for (name, allowed) in ALLOWED {
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        let extra: Vec<_> = graph[*name].difference(&allowed).collect();
        assert!(extra.is_empty(), "{name} must not depend on {extra:?}");
    }
}
