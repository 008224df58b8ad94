//! What trains and how fast: frozen weights stay bit-identical through a step, each optimizer
//! group moves with its own learning rate, biases and norms are in the no-decay groups.

mod common;

use std::collections::BTreeMap;

use common::{config, data, loss, model, rng_lock, samples, weights, Train};
use vlm_train::{apply_mode, param_table, ParamGroup, Resume, TrainConfig, TrainMode, Trainer};

/// Every parameter's path and values.
type Weights = Vec<(String, Vec<f32>)>;

fn one_step(
    mode: TrainMode,
    train_vision: bool,
    lora: bool,
) -> (Weights, Weights, Vec<(ParamGroup, f64)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.mode = mode;
    cfg.train_vision = train_vision;
    cfg.max_steps = Some(1);
    cfg.warmup_steps = 0;
    cfg.save_steps = 0;
    let _lock = rng_lock();
    let before_model = apply_mode::<Train, _>(model(lora, 1), &cfg);
    let before = weights(&before_model);
    let mut trainer = Trainer::new(cfg, Default::default(), loss).expect("config");
    let outcome = trainer
        .fit(before_model, &mut data(samples(4, 5, None)), Resume::No)
        .expect("fit");
    let lrs = outcome.steps[0].learning_rates.clone();
    (before, weights(&outcome.model), lrs)
}

fn changed(before: &[(String, Vec<f32>)], after: &[(String, Vec<f32>)]) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .filter(|((_, a), (_, b))| {
            a.iter()
                .map(|x| x.to_bits())
                .ne(b.iter().map(|x| x.to_bits()))
        })
        .map(|((path, _), _)| path.clone())
        .collect()
}

#[test]
fn a_step_leaves_frozen_weights_bit_identical() {
    // LoRA: only the projector and the adapters move; the vision tower and every base weight
    // of the language model are bit-identical.
    let (before, after, _) = one_step(TrainMode::Lora, false, true);
    assert_eq!(before.len(), after.len());
    let moved = changed(&before, &after);
    assert!(
        moved.iter().any(|p| p.starts_with("projector")),
        "{moved:?}"
    );
    assert!(moved.iter().any(|p| p.contains(".adapter.")), "{moved:?}");
    let wrong: Vec<&String> = moved
        .iter()
        .filter(|p| !(p.starts_with("projector") || p.contains(".adapter.")))
        .collect();
    assert!(wrong.is_empty(), "frozen weights moved: {wrong:?}");
    // (lora_B starts at zero, so after one step only lora_B has moved: lora_A's gradient is
    // B^T times something, zero.)

    // Projector only: nothing outside the projector moves.
    let (before, after, _) = one_step(TrainMode::Projector, false, false);
    let moved = changed(&before, &after);
    assert!(!moved.is_empty());
    assert!(
        moved.iter().all(|p| p.starts_with("projector")),
        "{moved:?}"
    );

    // Full, vision unfrozen: the language model and the vision tower move too.
    let (before, after, _) = one_step(TrainMode::Full, true, false);
    let moved = changed(&before, &after);
    assert!(moved.iter().any(|p| p.starts_with("vision")), "{moved:?}");
    assert!(
        moved.iter().any(|p| p.starts_with("language_model")),
        "{moved:?}"
    );
}

#[test]
fn biases_and_norms_are_in_the_no_decay_groups() {
    let _lock = rng_lock();
    let vlm = apply_mode::<Train, _>(model(false, 1), &mode(TrainMode::Full, false));
    let table = param_table(&vlm);
    // Matched by suffix: the language model's inner layout is vlm-qwen's business.
    let group = |path: &str| {
        table
            .iter()
            .find(|p| p.path.ends_with(path))
            .unwrap_or_else(|| {
                panic!(
                    "no {path} in {:?}",
                    table.iter().map(|p| &p.path).collect::<Vec<_>>()
                )
            })
            .group
    };
    assert_eq!(group("projector.linear_1.weight"), ParamGroup::Projector);
    assert_eq!(
        group("projector.linear_1.bias"),
        ParamGroup::ProjectorNoDecay
    );
    assert_eq!(group("q_proj.base.weight"), ParamGroup::Model);
    assert_eq!(group("q_proj.base.bias"), ParamGroup::ModelNoDecay);
    assert_eq!(
        group("language_model.model.layers.0.input_layernorm.gamma"),
        ParamGroup::ModelNoDecay
    );
    assert_eq!(
        group("language_model.model.norm.gamma"),
        ParamGroup::ModelNoDecay
    );
    assert_eq!(
        group("language_model.model.embed_tokens.weight"),
        ParamGroup::Model
    );
    assert!(table
        .iter()
        .filter(|p| p.path.starts_with("vision"))
        .all(|p| !p.trainable));
}

#[test]
fn groups_follow_the_part_and_the_layer_holding_each_parameter() {
    // Every part trains (LoRA adapters included): the projector's parameters are in the
    // projector groups, everyone else's in the model groups; biases and normalisation
    // parameters (gamma, beta) of every part never decay; weights, embeddings and adapters do.
    let _lock = rng_lock();
    let vlm = apply_mode::<Train, _>(model(true, 1), &mode(TrainMode::Full, true));
    let table = param_table(&vlm);
    assert!(table.iter().all(|p| p.trainable));
    for p in &table {
        let leaf = p.path.rsplit('.').next().unwrap_or_default();
        let decays = !matches!(leaf, "bias" | "beta" | "gamma");
        let expected = match (p.path.starts_with("projector"), decays) {
            (true, true) => ParamGroup::Projector,
            (true, false) => ParamGroup::ProjectorNoDecay,
            (false, true) => ParamGroup::Model,
            (false, false) => ParamGroup::ModelNoDecay,
        };
        assert_eq!(p.group, expected, "{}", p.path);
    }
    let paths: Vec<&str> = table.iter().map(|p| p.path.as_str()).collect();
    for part in [
        "vision.proj.bias",
        ".adapter.",
        "layernorm.gamma",
        "base.bias",
    ] {
        assert!(
            paths.iter().any(|p| p.contains(part)),
            "no {part} in {paths:?}"
        );
    }
}

#[test]
fn each_group_moves_with_its_own_learning_rate() {
    // No decay, no clipping, constant schedule: AdamW's first update of a parameter with a
    // gradient g is lr * g / (|g| + eps), i.e. (almost exactly) lr in magnitude.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.mode = TrainMode::Full;
    cfg.max_steps = Some(1);
    cfg.warmup_steps = 0;
    cfg.weight_decay = 0.0;
    cfg.max_grad_norm = 0.0;
    cfg.adam_epsilon = 1e-12;
    cfg.learning_rate = 1e-4;
    cfg.feature_proj_lr = Some(3e-3);
    cfg.save_steps = 0;
    let _lock = rng_lock();
    let start = apply_mode::<Train, _>(model(false, 1), &cfg);
    let table = param_table(&start);
    let before = weights(&start);
    let mut trainer = Trainer::new(cfg, Default::default(), loss).expect("config");
    let outcome = trainer
        .fit(start, &mut data(samples(4, 5, None)), Resume::No)
        .expect("fit");
    let after = weights(&outcome.model);

    let applied: BTreeMap<ParamGroup, f64> =
        outcome.steps[0].learning_rates.iter().copied().collect();
    let expected = BTreeMap::from([
        (ParamGroup::Projector, 3e-3),
        (ParamGroup::ProjectorNoDecay, 3e-3),
        (ParamGroup::Model, 1e-4),
        (ParamGroup::ModelNoDecay, 1e-4),
    ]);
    assert_eq!(
        applied, expected,
        "the optimizer applied each group's learning rate"
    );

    // And the parameters really moved by their group's rate.
    let mut largest: BTreeMap<ParamGroup, f64> = BTreeMap::new();
    for (info, ((_, a), (_, b))) in table.iter().zip(before.iter().zip(&after)) {
        if !info.trainable {
            continue;
        }
        let step = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from((y - x).abs()))
            .fold(0.0, f64::max);
        let entry = largest.entry(info.group).or_default();
        *entry = entry.max(step);
    }
    for (group, lr) in &expected {
        let moved = largest[group];
        // f32 rounding of the weights: the step is lr to within a few ulps of the weight.
        assert!(
            (moved - lr).abs() <= lr * 0.02 + 1e-6,
            "group {group:?}: largest update {moved:e}, learning rate {lr:e}"
        );
    }
}

/// The default settings with `mode` and `train_vision`.
fn mode(mode: TrainMode, train_vision: bool) -> TrainConfig {
    TrainConfig {
        mode,
        train_vision,
        ..TrainConfig::default()
    }
}
