//! LoRA training on Qwen: an AdamW step changes only the adapters (v1's fused `c_attn`
//! included), and trained adapters round-trip through PEFT's file format.
//!
//! The trained adapters, our logits and the merged models are left in
//! `target/tmp/vlm-lora-peft-check/<fixture>/` for `tools/reference/check_adapter.py`, which
//! loads them into peft and transformers (see crates/vlm-lora's docs for the command and its
//! output).

mod common;

use std::collections::HashSet;
use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use common::{masked_max_diff, Reference};
use vlm_hf::SafetensorsWriter;
use vlm_lora::{AdaptableModel, LoraConfig, TargetModules};
use vlm_qwen::QwenModel;
use vlm_testkit::{device, fixture, TestBackend};

type Train = Autodiff<TestBackend>;

/// Every float parameter: id, whether it requires a gradient, value.
#[derive(Default)]
struct Snapshot(Vec<(ParamId, bool, TensorData)>);

impl<B: AutodiffBackend> ModuleVisitor<B> for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        self.0
            .push((param.id, value.is_require_grad(), value.into_data()));
    }
}

fn snapshot<M: Module<Train>>(module: &M) -> Snapshot {
    let mut snapshot = Snapshot::default();
    module.visit(&mut snapshot);
    snapshot
}

/// The parameters with an entry in a gradient container.
struct WithGradient<'a> {
    grads: &'a GradientsParams,
    ids: HashSet<ParamId>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for WithGradient<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.grads.get::<B::InnerBackend, D>(param.id).is_some() {
            self.ids.insert(param.id);
        }
    }
}

/// The ids of every adapter parameter.
fn adapter_ids(model: &QwenModel<Train>) -> HashSet<ParamId> {
    let mut ids = HashSet::new();
    model.visit_linears(&mut |_, linear| {
        if let Some(adapter) = &linear.adapter {
            ids.extend(snapshot(adapter).0.into_iter().map(|(id, ..)| id));
        }
    });
    ids
}

/// Next-token cross-entropy on sample 0 (the unpadded one) of the reference batch.
fn loss(model: &QwenModel<Train>, reference: &Reference) -> Tensor<Train, 1> {
    let ids = |t: &Tensor<TestBackend, 2, Int>| {
        Tensor::<Train, 2, Int>::from_data(t.to_data(), &device())
    };
    let input_ids = ids(&reference.input_ids);
    let [_, seq] = input_ids.dims();
    let logits = model
        .forward(
            input_ids.clone(),
            Some(ids(&reference.attention_mask)),
            Some(ids(&reference.position_ids)),
            None,
        )
        .expect("forward");
    let vocab = model.config().vocab_size;
    let predictions = logits.slice([0..1, 0..seq - 1]).reshape([seq - 1, vocab]);
    let targets = input_ids.slice([0..1, 1..seq]).reshape([seq - 1]);
    CrossEntropyLossConfig::new()
        .init(&device())
        .forward(predictions, targets)
}

/// Trains `config`'s adapters on `base` for `steps` AdamW steps, checking at every step that
/// only adapter parameters have gradients and optimizer state, and at the end that every base
/// parameter is bit-identical and every adapter parameter moved.
fn train(base: &str, config: &LoraConfig, steps: usize) -> QwenModel<Train> {
    let model = QwenModel::<Train>::load(fixture(base), &device()).expect("load");
    let mut model = vlm_lora::apply(model, config).expect("apply");
    let reference = Reference::open(base);
    let trainable = adapter_ids(&model);
    let before = snapshot(&model);
    for (id, requires_grad, _) in &before.0 {
        assert_eq!(*requires_grad, trainable.contains(id), "{base}: {id}");
    }
    let mut optimizer = AdamWConfig::new().init::<Train, QwenModel<Train>>();
    for step in 0..steps {
        let grads = GradientsParams::from_grads(loss(&model, &reference).backward(), &model);
        let mut with_gradient = WithGradient {
            grads: &grads,
            ids: HashSet::new(),
        };
        model.visit(&mut with_gradient);
        assert!(
            with_gradient.ids.is_subset(&trainable),
            "{base} step {step}"
        );
        assert_eq!(
            grads.len(),
            with_gradient.ids.len(),
            "{base}: no other entries"
        );
        model = optimizer.step(1e-2, model, grads);
    }
    let state: HashSet<ParamId> = optimizer.to_record().keys().copied().collect();
    assert_eq!(
        state, trainable,
        "{base}: optimizer state only for adapters"
    );
    for ((id, _, old), (_, _, new)) in before.0.iter().zip(&snapshot(&model).0) {
        match trainable.contains(id) {
            true => assert_ne!(old, new, "{base}: adapter {id} trained"),
            false => assert_eq!(old, new, "{base}: base {id} bit-identical"),
        }
    }
    model
}

fn logits(model: &QwenModel<TestBackend>, reference: &Reference) -> Tensor<TestBackend, 3> {
    model
        .forward(
            reference.input_ids.clone(),
            Some(reference.attention_mask.clone()),
            Some(reference.position_ids.clone()),
            None,
        )
        .expect("forward")
}

/// Where check_adapter.py finds a fixture's exported adapter and logits.
fn export_dir(base: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("vlm-lora-peft-check")
        .join(base)
}

/// Trains, saves the adapter and our logits for peft, loads the adapter back into a fresh base
/// and checks tensors and logits are identical.
fn train_save_reload(base: &str, config: LoraConfig) {
    let base_path = fixture(base).canonicalize().expect("fixture path");
    let config = config.with_base_model(base_path.to_string_lossy());
    let trained = train(base, &config, 3).valid();
    let reference = Reference::open(base);
    let ours = logits(&trained, &reference);
    let out = export_dir(base);
    let adapter_dir = out.join("adapter");
    vlm_lora::save_adapter(&trained, &config, &adapter_dir).expect("save adapter");
    let mut writer = SafetensorsWriter::new();
    writer.add("logits", ours.clone());
    writer
        .write(&out.join("logits.safetensors"))
        .expect("save logits");
    let base_config = base_path.join("config.json");
    trained
        .save_merged(out.join("merged"), base_config)
        .expect("save merged");

    let base_model = QwenModel::<TestBackend>::load(&base_path, &device()).expect("base");
    let reloaded = vlm_lora::load_adapter(base_model, &adapter_dir).expect("reload");
    assert_eq!(
        vlm_lora::LoraConfig::load(&adapter_dir).expect("config"),
        config
    );
    let tensors = |model: &QwenModel<TestBackend>| {
        let mut all = Vec::new();
        model.visit_linears(&mut |path, linear| {
            if let Some(adapter) = &linear.adapter {
                all.push((
                    path.to_string(),
                    adapter.peft_a().into_data(),
                    adapter.peft_b().into_data(),
                ));
            }
        });
        all
    };
    assert_eq!(
        tensors(&reloaded),
        tensors(&trained),
        "{base}: identical adapters"
    );
    let diff = masked_max_diff(
        &logits(&reloaded, &reference),
        &ours,
        &reference.attention_mask,
    );
    assert_eq!(diff, 0.0, "{base}: identical logits");
}

#[test]
fn trained_qwen2_adapters_round_trip_through_peft_files() {
    let targets = TargetModules::names(["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]);
    let config = LoraConfig::new(4, 8.0, targets)
        .with_dropout(0.1)
        .with_rslora(true);
    train_save_reload("qwen2_tied", config);
}

#[test]
fn trained_v1_adapters_on_fused_c_attn_round_trip_through_peft_files() {
    let config = LoraConfig::new(4, 32.0, TargetModules::parse("c_attn|w1|w2")).with_dropout(0.1);
    train_save_reload("qwen_v1", config);
}
