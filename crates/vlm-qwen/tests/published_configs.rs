//! The `config.json` files of real hub checkpoints, as published (data/configs/), parse to
//! the architecture the checkpoint has.

use vlm_qwen::{QwenConfig, QwenError, QwenVariant, RopeScaling};
use vlm_testkit::{fixture, published_configs};

fn parse(name: &str) -> Result<QwenConfig, QwenError> {
    QwenConfig::from_file(published_configs(name).join("config.json"))
}

/// (variant, layers, hidden, heads, kv heads, head_dim, intermediate, vocab, theta, tied)
type Expected = (
    QwenVariant,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    f64,
    bool,
);

fn summary(config: &QwenConfig) -> Expected {
    (
        config.variant,
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.intermediate_size,
        config.vocab_size,
        config.rope_theta,
        config.tie_word_embeddings,
    )
}

#[test]
fn published_qwen_configs_parse_to_their_architecture() {
    use QwenVariant::{Qwen2, Qwen3, V1};
    let cases: [(&str, Expected); 4] = [
        (
            "Qwen--Qwen2.5-0.5B-Instruct",
            (Qwen2, 24, 896, 14, 2, 64, 4864, 151_936, 1e6, true),
        ),
        (
            "Qwen--Qwen2.5-7B-Instruct",
            (Qwen2, 28, 3584, 28, 4, 128, 18_944, 152_064, 1e6, false),
        ),
        // v1 configs store twice the MLP width.
        (
            "Qwen--Qwen-7B",
            (V1, 32, 4096, 32, 32, 128, 11_008, 151_936, 1e4, false),
        ),
        (
            "Qwen--Qwen3-0.6B",
            (Qwen3, 28, 1024, 16, 8, 128, 3072, 151_936, 1e6, true),
        ),
    ];
    for (name, expected) in cases {
        let config = parse(name).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(summary(&config), expected, "{name}");
        assert_eq!(config.rope_scaling, RopeScaling::None, "{name}");
        assert!(config.rms_norm_eps > 0.0, "{name}");
    }
    let qwen3 = parse("Qwen--Qwen3-0.6B").expect("qwen3");
    assert!(qwen3.qk_norm && !qwen3.qkv_bias && !qwen3.o_proj_bias);
    let qwen25 = parse("Qwen--Qwen2.5-0.5B-Instruct").expect("qwen2.5");
    assert!(qwen25.qkv_bias && !qwen25.o_proj_bias && qwen25.max_context.is_none());
    // Qwen-7B switches on dynamic NTK and log-n scaling past its seq_length.
    assert_eq!(parse("Qwen--Qwen-7B").expect("v1").max_context, Some(8192));
}

#[test]
fn llava_1_5_language_model_is_refused_by_name() {
    // llava-1.5-7b-hf's text_config is a Llama: not a Qwen, and said so.
    let err = parse("llava-hf--llava-1.5-7b-hf").expect_err("llama");
    assert!(
        matches!(&err, QwenError::UnknownModelType { model_type, .. } if model_type == "llama"),
        "{err:?}"
    );
}

#[test]
fn scaled_rope_configs_of_both_transformers_versions_agree() {
    for version in ["", "v5/"] {
        let linear =
            QwenConfig::from_file(fixture(&format!("{version}qwen2_rope_linear/config.json")))
                .expect("linear");
        assert_eq!(linear.rope_scaling, RopeScaling::Linear { factor: 4.0 });
        assert_eq!(linear.rope_theta, 1e6);
        let yarn = QwenConfig::from_file(fixture(&format!("{version}qwen2_rope_yarn/config.json")))
            .expect("yarn");
        let RopeScaling::Yarn(yarn) = yarn.rope_scaling else {
            panic!("{version}: {:?}", yarn.rope_scaling)
        };
        assert_eq!(yarn.factor, 4.0);
        assert_eq!(yarn.original_max_position_embeddings, 32);
        // transformers: 0.1 ln(4) + 1.
        assert!(
            (yarn.attention_factor - 1.138_629_436).abs() < 1e-9,
            "{yarn:?}"
        );
        assert_eq!(
            (yarn.beta_fast, yarn.beta_slow, yarn.truncate),
            (32.0, 1.0, true)
        );
    }
}
