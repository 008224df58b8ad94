//! Config parsing (flat and nested, `dtype`/`torch_dtype`), feature selection semantics and
//! activations.

use std::fs;

use burn::tensor::Tensor;
use vlm_hf::read_config;
use vlm_testkit::{assert_close, device, fixture, TestBackend};
use vlm_vision::{
    Activation, ClipVisionConfig, FeatureSelection, SelectStrategy, SiglipVisionConfig, VisionError,
};

fn tiny_clip(dtype: Option<&str>) -> ClipVisionConfig {
    ClipVisionConfig {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 3,
        num_attention_heads: 4,
        num_channels: 3,
        image_size: 32,
        patch_size: 8,
        hidden_act: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
        dtype: dtype.map(str::to_string),
    }
}

#[test]
fn flat_and_nested_clip_configs() {
    let flat = ClipVisionConfig::from_file(fixture("clip_vision").join("config.json"));
    assert_eq!(flat.expect("flat"), tiny_clip(Some("float32")));
    // The nested vision_config has no dtype: it comes from the top level.
    let nested = ClipVisionConfig::from_file(fixture("clip_full").join("config.json"));
    assert_eq!(nested.expect("nested"), tiny_clip(Some("float32")));
}

#[test]
fn nested_siglip_config_inside_llava() {
    let config = SiglipVisionConfig::from_file(fixture("llava").join("config.json"));
    let config = config.expect("llava vision_config");
    assert_eq!(config.hidden_act, Activation::GeluTanh);
    assert_eq!((config.num_hidden_layers, config.layer_norm_eps), (3, 1e-6));
}

#[test]
fn torch_dtype_is_accepted_and_absent_keys_take_transformers_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    let cases = [
        (
            r#"{"model_type": "siglip_vision_model", "torch_dtype": "bfloat16"}"#,
            Some("bfloat16"),
        ),
        (
            r#"{"dtype": "float16", "torch_dtype": "bfloat16"}"#,
            Some("float16"),
        ),
        (
            r#"{"vision_config": {}, "torch_dtype": "float32", "text_config": {}}"#,
            Some("float32"),
        ),
        (r#"{"torch_dtype": null, "unknown": [1, 2]}"#, None),
    ];
    for (json, dtype) in cases {
        fs::write(&path, json).expect("write config");
        let config = SiglipVisionConfig::from_file(&path).expect(json);
        let expected = SiglipVisionConfig {
            dtype: dtype.map(str::to_string),
            ..SiglipVisionConfig::default()
        };
        assert_eq!(config, expected, "{json}");
    }
    assert_eq!(SiglipVisionConfig::default().patch_size, 16);
    assert_eq!(ClipVisionConfig::default().patch_size, 32);
}

#[test]
fn selection_is_read_from_llava_configs_with_llava_defaults() {
    let clip: FeatureSelection =
        read_config(fixture("llava_clip").join("config.json")).expect("llava_clip");
    assert_eq!((clip.layer, clip.strategy), (-2, SelectStrategy::Default));
    let siglip: FeatureSelection =
        read_config(fixture("llava").join("config.json")).expect("llava");
    assert_eq!((siglip.layer, siglip.strategy), (-2, SelectStrategy::Full));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    fs::write(&path, "{}").expect("write config");
    let defaults: FeatureSelection = read_config(&path).expect("defaults");
    assert_eq!(defaults, FeatureSelection::default());
}

#[test]
fn selection_serialises_to_llava_keys_and_back() {
    for (layer, strategy, name) in [
        (-2, SelectStrategy::Default, "default"),
        (3, SelectStrategy::Full, "full"),
    ] {
        let selection = FeatureSelection { layer, strategy };
        let json = serde_json::to_value(selection).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({
                "vision_feature_layer": layer,
                "vision_feature_select_strategy": name,
            })
        );
        let back: FeatureSelection = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, selection);
    }
}

#[test]
fn hidden_state_index_follows_transformers_tuple_indexing() {
    let index = |layer| {
        FeatureSelection {
            layer,
            strategy: SelectStrategy::Full,
        }
        .hidden_state_index(24)
    };
    for (layer, expected) in [(-1, 24), (-2, 23), (-25, 0), (0, 0), (5, 5), (24, 24)] {
        assert_eq!(index(layer).expect("in range"), expected, "layer {layer}");
    }
    for layer in [25, -26, i64::MIN, i64::MAX] {
        assert!(
            matches!(
                index(layer),
                Err(VisionError::FeatureLayerOutOfRange { .. })
            ),
            "layer {layer}"
        );
    }
}

#[test]
fn only_the_default_strategy_on_a_tower_with_cls_drops_a_token() {
    let default = FeatureSelection::default();
    let full = FeatureSelection {
        strategy: SelectStrategy::Full,
        ..default
    };
    assert!(default.drops_cls(true));
    assert!(!default.drops_cls(false));
    assert!(!full.drops_cls(true));
}

#[test]
fn activations_match_transformers() {
    let x = Tensor::<TestBackend, 1>::from_floats([-3.0, -1.0, -0.5, 0.0, 0.7, 2.0], &device());
    // transformers.activations.ACT2FN[name](x) in float64.
    let cases = [
        (
            Activation::QuickGelu,
            [
                -0.018071310,
                -0.154204234,
                -0.149611563,
                0.0,
                0.536893952,
                1.935658623,
            ],
        ),
        (
            Activation::Gelu,
            [
                -0.004049694,
                -0.158655254,
                -0.154268769,
                0.0,
                0.530625443,
                1.954499736,
            ],
        ),
        (
            Activation::GeluTanh,
            [
                -0.003637392,
                -0.158808009,
                -0.154285990,
                0.0,
                0.530570135,
                1.954597694,
            ],
        ),
    ];
    for (activation, expected) in cases {
        let expected = Tensor::<TestBackend, 1>::from_floats(expected, &device());
        let actual = activation.forward(x.clone());
        assert_close(&format!("{activation:?}"), &actual, &expected, 1e-6);
    }
    let new: Activation = serde_json::from_str(r#""gelu_new""#).expect("alias");
    assert_eq!(new, Activation::GeluTanh);
}

/// (layers, width, MLP width, heads, image side, patch, activation, layer norm epsilon)
type Tower = (usize, usize, usize, usize, usize, usize, Activation, f64);

#[test]
fn published_tower_configs_parse_to_their_architecture() {
    let clip = |name: &str| -> Tower {
        let path = vlm_testkit::published_configs(name).join("config.json");
        let c = ClipVisionConfig::from_file(path).expect(name);
        let sizes = (c.num_hidden_layers, c.hidden_size, c.intermediate_size);
        let (layers, width, mlp) = sizes;
        (
            layers,
            width,
            mlp,
            c.num_attention_heads,
            c.image_size,
            c.patch_size,
            c.hidden_act,
            c.layer_norm_eps,
        )
    };
    let clip_l = (24, 1024, 4096, 16, 336, 14, Activation::QuickGelu, 1e-5);
    assert_eq!(clip("openai--clip-vit-large-patch14-336"), clip_l);
    // llava-1.5's vision_config leaves hidden_act to CLIPVisionConfig's default.
    assert_eq!(clip("llava-hf--llava-1.5-7b-hf"), clip_l);

    let path =
        vlm_testkit::published_configs("google--siglip-so400m-patch14-384").join("config.json");
    let c = SiglipVisionConfig::from_file(path).expect("siglip");
    let so400m = (27, 1152, 4304, 16, 384, 14, Activation::GeluTanh, 1e-6);
    let parsed = (
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.image_size,
        c.patch_size,
        c.hidden_act,
        c.layer_norm_eps,
    );
    assert_eq!(parsed, so400m);
    assert_eq!(c.dtype.as_deref(), Some("float32"), "torch_dtype inherited");

    let llava = vlm_testkit::published_configs("llava-hf--llava-1.5-7b-hf").join("config.json");
    let selection: FeatureSelection = read_config(llava).expect("selection");
    assert_eq!(
        selection,
        FeatureSelection {
            layer: -2,
            strategy: SelectStrategy::Default
        }
    );
}

#[test]
fn published_preprocessor_configs_give_the_tower_image_size() {
    for (name, side) in [
        ("openai--clip-vit-large-patch14-336", 336),
        ("google--siglip-so400m-patch14-384", 384),
        ("llava-hf--llava-1.5-7b-hf", 336),
    ] {
        let dir = vlm_testkit::published_configs(name);
        let preprocessing = vlm_vision::read_preprocessing(&dir).expect(name);
        assert_eq!(
            preprocessing.fixed_output_size(),
            Some((side, side)),
            "{name}"
        );
    }
}
