//! Projectors alone: the MLP against transformers' `LlavaMultiModalProjector`, the pixel
//! shuffle's token order and grid checks, and the initialisation of new projectors.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{check, reference};
use vlm_hf::{read_config, WeightStore};
use vlm_model::{
    AnyProjector, MlpProjector, ModelError, PersistentProjector, PixelShuffleProjector, Projector,
    ProjectorConfig, ProjectorKind, HF_PROJECTOR_PREFIX,
};
use vlm_testkit::{device, fixture, TestBackend};

#[derive(serde::Deserialize)]
struct ProjectorJson {
    vision_hidden_size: usize,
    text_hidden_size: usize,
}

#[test]
fn mlp_projector_matches_transformers() {
    for name in ["projector", "v5/projector"] {
        let dir = fixture(name);
        let json: ProjectorJson = read_config(dir.join("config.json")).expect("config");
        let store = WeightStore::open_dir(&dir).expect("weights");
        let dev = device();
        let projector = MlpProjector::<TestBackend>::from_store(
            &store,
            json.vision_hidden_size,
            json.text_hidden_size,
            &dev,
        )
        .expect("projector");
        assert_eq!((projector.input_dim(), projector.output_dim()), (32, 64));

        let reference = reference(name);
        let features = reference.float_any::<TestBackend, 3>("image_features", &dev);
        let projected = projector
            .forward(features.expect("features"))
            .expect("forward");
        let expected = reference.float_any("projected", &dev).expect("projected");
        check(name, &projected, &expected, 1e-5);
    }
}

#[test]
fn mlp_projector_with_wrong_widths_names_the_tensor() {
    let store = WeightStore::open_dir(fixture("projector")).expect("weights");
    let err = MlpProjector::<TestBackend>::from_store(&store, 32, 48, &device())
        .expect_err("the file holds 32 -> 64");
    let message = err.to_string();
    assert!(
        message.contains("multi_modal_projector.linear_1.weight"),
        "{message}"
    );
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn new_projectors_start_small_with_zero_bias() {
    let projector = MlpProjector::<TestBackend>::new(64, 128, &device());
    let tensors = projector.hf_tensors();
    let names: Vec<&str> = tensors.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "multi_modal_projector.linear_1.weight",
            "multi_modal_projector.linear_1.bias",
            "multi_modal_projector.linear_2.weight",
            "multi_modal_projector.linear_2.bias",
        ]
    );
    assert_eq!(
        tensors[0].1.shape.to_vec(),
        [128, 64],
        "Hugging Face [out, in]"
    );
    let weights: Vec<f32> = tensors[0].1.iter::<f32>().collect();
    let std = (weights.iter().map(|w| w * w).sum::<f32>() / weights.len() as f32).sqrt();
    assert!((0.008..0.012).contains(&std), "weight std {std}");
    assert!(tensors[1].1.iter::<f32>().all(|b| b == 0.0), "zero bias");
}

/// Features `[1, 16, 1]` whose value is the patch index of a 4 x 4 grid.
fn patch_indices() -> Tensor<TestBackend, 3> {
    let values: Vec<f32> = (0..16).map(|i| i as f32).collect();
    Tensor::from_data(TensorData::new(values, [1, 16, 1]), &device())
}

/// An identity linear over the merged width, stored as a projector file.
fn identity_shuffle(scale: usize) -> PixelShuffleProjector<TestBackend> {
    let merged = scale * scale;
    let mut eye = vec![0f32; merged * merged];
    for i in 0..merged {
        eye[i * merged + i] = 1.0;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("projector.safetensors");
    let bytes: Vec<u8> = eye.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![merged, merged], &bytes)
            .expect("view");
    let name = format!("{HF_PROJECTOR_PREFIX}.linear.weight");
    safetensors::serialize_to_file([(name, view)], None, &path).expect("write");
    let store = WeightStore::open_file(&path).expect("open");
    PixelShuffleProjector::from_store(&store, 1, merged, scale, &device()).expect("load")
}

#[test]
fn pixel_shuffle_merges_each_square_of_neighbouring_patches() {
    let projector = identity_shuffle(2);
    assert_eq!(projector.output_tokens(16).expect("4 x 4 grid"), 4);
    let merged = projector.forward(patch_indices()).expect("forward");
    assert_eq!(merged.dims(), [1, 4, 4]);
    let values: Vec<f32> = merged.into_data().iter::<f32>().collect();
    // Grid rows 0..4 of 4 patches; each token holds its 2 x 2 square row by row (nanoVLM).
    let expected = [
        0., 1., 4., 5., /* */ 2., 3., 6., 7., /* */ 8., 9., 12., 13., /* */ 10.,
        11., 14., 15.,
    ];
    assert_eq!(values, expected);
}

#[test]
fn pixel_shuffle_needs_a_square_grid_its_scale_divides() {
    let projector = PixelShuffleProjector::<TestBackend>::new(8, 16, 2, &device()).expect("new");
    assert_eq!(projector.input_dim(), 8);
    for tokens in [15, 9, 0] {
        let err = projector
            .output_tokens(tokens)
            .expect_err("not a 2k x 2k grid");
        assert!(matches!(err, ModelError::PatchGrid { tokens: t, scale_factor: 2 } if t == tokens));
    }
    let features = Tensor::<TestBackend, 3>::zeros([1, 12, 8], &device());
    assert!(matches!(
        projector.forward(features),
        Err(ModelError::PatchGrid { tokens: 12, .. })
    ));
    let wrong_width = Tensor::<TestBackend, 3>::zeros([1, 16, 4], &device());
    assert!(matches!(
        projector.forward(wrong_width),
        Err(ModelError::DimensionMismatch {
            produced: 4,
            expected: 8,
            ..
        })
    ));
}

#[test]
fn any_projector_builds_the_configured_kind() {
    let config = ProjectorConfig {
        kind: ProjectorKind::PixelShuffle { scale_factor: 2 },
        input_dim: 8,
        output_dim: 16,
    };
    let projector = AnyProjector::<TestBackend>::new(&config, &device()).expect("new");
    assert_eq!(projector.config(), config);
    assert_eq!(projector.output_tokens(64).expect("8 x 8"), 16);
    let json = serde_json::to_string(&config).expect("json");
    assert_eq!(
        json,
        r#"{"kind":{"type":"pixel_shuffle","scale_factor":2},"input_dim":8,"output_dim":16}"#
    );
    let mlp = ProjectorConfig {
        kind: ProjectorKind::Mlp2xGelu,
        ..config
    };
    let json = serde_json::to_string(&mlp).expect("json");
    assert!(json.contains(r#"{"type":"mlp2x_gelu"}"#), "{json}");
}
