//! Writing back: a staged folder replaces its destination only when committed, and a linear
//! layer read from a file is Burn's transpose of what the file stores.

use std::fs;
use std::path::Path;

use burn::tensor::Tensor;
use vlm_hf::{join_key, SafetensorsWriter, StagedDir, WeightStore};
use vlm_testkit::{device, TestBackend};

const PREFIX: &str = ".staged-";

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_staged_folder_replaces_its_destination_only_on_commit() {
    let root = tempfile::tempdir().expect("tempdir");
    let destination = root.path().join("checkpoint");
    fs::create_dir(&destination).expect("old folder");
    fs::write(destination.join("old.txt"), "old").expect("old file");

    let staged = StagedDir::new(&destination, PREFIX).expect("stage");
    fs::write(staged.path().join("new.txt"), "new").expect("new file");
    assert_eq!(
        entries(&destination),
        ["old.txt"],
        "untouched before commit"
    );

    assert_eq!(staged.commit().expect("commit"), destination);
    assert_eq!(entries(&destination), ["new.txt"]);
    assert_eq!(
        entries(root.path()),
        ["checkpoint"],
        "no staging or old folder left"
    );
}

#[test]
fn an_uncommitted_staged_folder_leaves_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let destination = root.path().join("missing-parent").join("checkpoint");
    let staged = StagedDir::new(&destination, PREFIX).expect("stage");
    let name = staged.path().file_name().expect("name").to_string_lossy();
    assert!(name.starts_with(PREFIX), "{name}");
    fs::write(staged.path().join("part.txt"), "part").expect("file");
    drop(staged);
    assert!(!destination.exists());
    assert!(entries(&root.path().join("missing-parent")).is_empty());
}

#[test]
fn a_linear_layer_is_read_as_the_transpose_of_its_stored_weight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("linear.safetensors");
    let dev = device();
    // PyTorch's layout: [d_out = 2, d_in = 3].
    let stored = Tensor::<TestBackend, 2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev);
    let bias = Tensor::<TestBackend, 1>::from_floats([0.5, -0.5], &dev);
    let mut writer = SafetensorsWriter::new();
    writer.add("proj.weight", stored.clone());
    writer.add("proj.bias", bias.clone());
    writer.write(&path).expect("write");

    let store = WeightStore::open_file(&path).expect("open");
    let linear = store
        .linear::<TestBackend>("proj", [3, 2], true, &dev)
        .expect("linear");
    let weight = linear.weight.val();
    assert_eq!(weight.dims(), [3, 2], "Burn's [d_in, d_out]");
    assert_eq!(weight.into_data(), stored.transpose().into_data());
    let read_bias = linear.bias.expect("bias").val();
    assert_eq!(read_bias.into_data(), bias.into_data());
    let err = store
        .linear::<TestBackend>("proj", [2, 3], false, &dev)
        .expect_err("the file holds 3 -> 2");
    assert!(err.to_string().contains("proj.weight"), "{err}");
}

#[test]
fn keys_join_below_a_prefix_or_stand_alone() {
    assert_eq!(join_key("vision_tower", "encoder"), "vision_tower.encoder");
    assert_eq!(join_key("", "encoder"), "encoder");
}
