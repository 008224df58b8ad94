//! The training config: TOML, command-line flags as the seed's train.sh spells them, and
//! validation errors that name the setting.

use clap::Parser;
use vlm_lora::TargetModules;
use vlm_train::{
    ConfigError, LrSchedule, NonFinitePolicy, TrainArgs, TrainConfig, TrainError, TrainMode,
};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
}

#[test]
fn flags_spelt_as_train_sh_override_the_file() {
    let file = r#"
        output_dir = "runs/x"
        mode = "lora"
        lora_rank = 64
        target_modules = ["q_proj", "v_proj"]
        learning_rate = 2e-4
        feature_proj_lr = 1e-3
        lr_scheduler_type = "linear"
    "#;
    let config = TrainConfig::from_toml_str(file).expect("valid");
    assert_eq!(config.lora_rank, 64);
    assert_eq!(
        config.target_modules,
        Some(TargetModules::names(["q_proj", "v_proj"]))
    );
    let cli = Cli::parse_from([
        "train",
        "--lora_rank",
        "128",
        "--lora_alpha",
        "32",
        "--lora_dropout",
        "0.1",
        "--target_modules",
        "c_attn|w1|w2",
        "--per_device_train_batch_size",
        "4",
        "--gradient_accumulation_steps",
        "8",
        "--num_train_epochs",
        "3",
        "--max_steps",
        "-1",
        "--learning_rate",
        "1e-4",
        "--feature_proj_lr",
        "2e-3",
        "--weight_decay",
        "0.01",
        "--warmup_ratio",
        "0.05",
        "--lr_scheduler_type",
        "cosine",
        "--max_grad_norm",
        "1.0",
        "--save_steps",
        "100",
        "--save_total_limit",
        "2",
        "--logging_steps",
        "5",
        "--seed",
        "7",
        "--on_non_finite",
        "stop",
        "--output_dir",
        "out",
    ]);
    let config = config.with_args(&cli.train).expect("valid");
    assert_eq!(config.lora_rank, 128);
    assert_eq!(
        config.target_modules,
        Some(TargetModules::names(["c_attn", "w1", "w2"]))
    );
    assert_eq!(config.per_device_train_batch_size, 4);
    assert_eq!(config.max_steps, None, "-1 means: use the epochs");
    assert_eq!(config.num_train_epochs, 3.0);
    assert_eq!(config.projector_lr(), 2e-3);
    assert_eq!(config.lr_scheduler_type, LrSchedule::Cosine);
    assert_eq!(config.save_total_limit, Some(2));
    assert_eq!(config.on_non_finite, NonFinitePolicy::Stop);
    assert_eq!(config.output_dir, std::path::PathBuf::from("out"));
    assert_eq!(config.mode, TrainMode::Lora);

    // The file form round-trips.
    let again = TrainConfig::from_toml_str(&config.to_toml_string()).expect("round trip");
    assert_eq!(again, config);
}

#[test]
fn invalid_settings_are_typed_errors_naming_the_setting() {
    let base = TrainConfig::default;
    let cases: Vec<(&str, TrainConfig)> = vec![
        (
            "lora_rank",
            TrainConfig {
                lora_rank: 0,
                ..base()
            },
        ),
        (
            "lora_alpha",
            TrainConfig {
                lora_alpha: -1.0,
                ..base()
            },
        ),
        (
            "lora_dropout",
            TrainConfig {
                lora_dropout: 1.0,
                ..base()
            },
        ),
        (
            "target_modules",
            TrainConfig {
                target_modules: Some(TargetModules::Names(vec![])),
                ..base()
            },
        ),
        (
            "per_device_train_batch_size",
            TrainConfig {
                per_device_train_batch_size: 0,
                ..base()
            },
        ),
        (
            "gradient_accumulation_steps",
            TrainConfig {
                gradient_accumulation_steps: 0,
                ..base()
            },
        ),
        (
            "num_train_epochs",
            TrainConfig {
                num_train_epochs: 0.0,
                ..base()
            },
        ),
        (
            "max_steps",
            TrainConfig {
                max_steps: Some(0),
                ..base()
            },
        ),
        (
            "learning_rate",
            TrainConfig {
                learning_rate: f64::NAN,
                ..base()
            },
        ),
        (
            "feature_proj_lr",
            TrainConfig {
                feature_proj_lr: Some(0.0),
                ..base()
            },
        ),
        (
            "weight_decay",
            TrainConfig {
                weight_decay: -0.1,
                ..base()
            },
        ),
        (
            "adam_beta2",
            TrainConfig {
                adam_beta2: 1.0,
                ..base()
            },
        ),
        (
            "adam_epsilon",
            TrainConfig {
                adam_epsilon: 0.0,
                ..base()
            },
        ),
        (
            "warmup_ratio",
            TrainConfig {
                warmup_ratio: 1.5,
                ..base()
            },
        ),
        (
            "warmup_steps",
            TrainConfig {
                warmup_steps: 10,
                max_steps: Some(10),
                ..base()
            },
        ),
        (
            "max_grad_norm",
            TrainConfig {
                max_grad_norm: -1.0,
                ..base()
            },
        ),
        (
            "save_total_limit",
            TrainConfig {
                save_total_limit: Some(0),
                ..base()
            },
        ),
        (
            "logging_steps",
            TrainConfig {
                logging_steps: 0,
                ..base()
            },
        ),
        (
            "output_dir",
            TrainConfig {
                output_dir: "".into(),
                ..base()
            },
        ),
    ];
    for (field, config) in cases {
        let err: ConfigError = config.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    // LoRA settings only matter in LoRA mode.
    let projector = TrainConfig {
        mode: TrainMode::Projector,
        lora_rank: 0,
        ..base()
    };
    projector
        .validate()
        .expect("LoRA rank is unused in projector mode");
    base().validate().expect("the defaults are valid");

    // Files: unknown keys and bad values name what is wrong.
    let err = TrainConfig::from_toml_str("learnig_rate = 1e-4").expect_err("typo");
    assert!(matches!(err, TrainError::ConfigFile { .. }), "{err}");
    assert!(err.to_string().contains("learnig_rate"), "{err}");
    let err = TrainConfig::from_toml_str("lr_scheduler_type = \"cosine_with_restarts\"")
        .expect_err("unknown");
    assert!(err.to_string().contains("cosine_with_restarts"), "{err}");
    let err = TrainConfig::from_toml_str("per_device_train_batch_size = 0").expect_err("zero");
    assert!(
        matches!(
            err,
            TrainError::Config(ConfigError {
                field: "per_device_train_batch_size",
                ..
            })
        ),
        "{err}"
    );
    let err = TrainConfig::from_toml_file("/nonexistent/train.toml").expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/train.toml"), "{err}");

    // Flags are validated too.
    let cli = Cli::parse_from(["train", "--gradient_accumulation_steps", "0"]);
    let err = base().with_args(&cli.train).expect_err("zero accumulation");
    assert_eq!(err.field, "gradient_accumulation_steps");
}

#[test]
fn dtype_comes_from_the_file_or_the_flag_and_decides_what_stays_half() {
    use vlm_hf::Precision;
    use vlm_model::Role;

    let config = TrainConfig::from_toml_str("dtype = \"bf16\"").expect("valid");
    assert_eq!(config.dtype, Precision::Bf16);
    assert_eq!(TrainConfig::default().dtype, Precision::F32);
    let flag = Cli::parse_from(["train", "--dtype", "f16"]);
    let config = config.with_args(&flag.train).expect("valid");
    assert_eq!(config.dtype, Precision::F16);
    let saved = TrainConfig::from_toml_str(&config.to_toml_string()).expect("round trip");
    assert_eq!(saved.dtype, Precision::F16);

    // What trains is f32; only the frozen parts take the dtype.
    let half = |mode, train_vision| TrainConfig {
        mode,
        train_vision,
        dtype: Precision::Bf16,
        ..TrainConfig::default()
    };
    let lora = half(TrainMode::Lora, false);
    assert_eq!(
        lora.precision_of(Some(Role::LanguageModel)),
        Precision::Bf16
    );
    assert_eq!(lora.precision_of(Some(Role::Vision)), Precision::Bf16);
    assert_eq!(lora.precision_of(Some(Role::Adapter)), Precision::F32);
    assert_eq!(lora.precision_of(Some(Role::Projector)), Precision::F32);
    let full = half(TrainMode::Full, true);
    assert_eq!(full.precision_of(Some(Role::LanguageModel)), Precision::F32);
    assert_eq!(full.precision_of(Some(Role::Vision)), Precision::F32);
    assert_eq!(full.precision_of(None), Precision::Bf16);

    let error = TrainConfig::from_toml_str("dtype = \"fp8\"").expect_err("no fp8");
    let message = error.to_string();
    assert!(message.contains("dtype = \"fp8\""), "{message}");
    assert!(
        message.contains("unknown dtype \"fp8\": expected f32, bf16 or f16"),
        "{message}"
    );
    assert!(Cli::try_parse_from(["train", "--dtype", "fp8"]).is_err());
}

#[test]
fn gradient_checkpointing_is_a_toml_key_a_flag_and_may_change_on_resume() {
    assert!(!TrainConfig::default().gradient_checkpointing);
    let file = TrainConfig::from_toml_str("gradient_checkpointing = true").expect("valid");
    assert!(file.gradient_checkpointing);
    for flag in ["--gradient-checkpointing", "--gradient_checkpointing"] {
        let cli = Cli::parse_from(["train", flag]);
        let config = TrainConfig::default().with_args(&cli.train).expect("valid");
        assert!(config.gradient_checkpointing, "{flag}");
    }
    let off = Cli::parse_from(["train", "--gradient-checkpointing", "false"]);
    let resumed = file.resumed_with(&off.train).expect("resumable");
    assert!(!resumed.gradient_checkpointing);
}
