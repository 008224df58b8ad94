//! The LoRA linear: PEFT's forward, initialisation, dropout and merge semantics.

mod common;

use burn::backend::Autodiff;
use burn::module::Module;
use burn::nn::DropoutConfig;
use burn::tensor::{Distribution, Tensor};
use common::{input, linear, Toy, D_MODEL, FC1, Q_PROJ};
use vlm_lora::{LoraAdapter, LoraConfig, LoraLinear, TargetModules};
use vlm_testkit::{assert_close, device, TestBackend};

type B = TestBackend;

/// A `6 -> 10` linear with an adapter of rank 3 whose `A` and `B` are both random.
fn adapted(scaling: f64, dropout: f64) -> LoraLinear<B> {
    let dev = device();
    let base = linear::<B>(D_MODEL, 10, &dev);
    let a = Tensor::random([3, D_MODEL], Distribution::Normal(0.0, 0.5), &dev);
    let b = Tensor::random([10, 3], Distribution::Normal(0.0, 0.5), &dev);
    LoraLinear::new(base).with_adapter(LoraAdapter::from_peft(a, b, scaling, dropout))
}

#[test]
fn without_adapter_it_is_the_base_linear() {
    let base = linear::<B>(D_MODEL, 10, &device());
    let x = input::<B>(4, &device());
    let expected = base.forward(x.clone());
    let actual = LoraLinear::new(base).forward(x);
    assert_close("plain LoraLinear", &actual, &expected, 0.0);
}

#[test]
fn forward_adds_the_scaled_low_rank_update() {
    let layer = adapted(2.5, 0.0);
    let adapter = layer.adapter.as_ref().expect("adapter");
    let x = input::<B>(4, &device());
    // PEFT: base(x) + lora_B(lora_A(x)) * scaling, with A [r, in] and B [out, r].
    let update = x
        .clone()
        .matmul(adapter.peft_a().transpose())
        .matmul(adapter.peft_b().transpose())
        .mul_scalar(2.5);
    let expected = layer.base.forward(x.clone()) + update;
    assert_close("LoRA forward", &layer.forward(x), &expected, 1e-5);
    assert_eq!(adapter.rank(), 3);
}

#[test]
fn fresh_adapters_start_at_the_base_with_peft_initialisation() {
    let dev = device();
    let toy = Toy::<B>::new(&dev);
    let x = input::<B>(5, &dev);
    let before = toy.forward(x.clone());
    let config = LoraConfig::new(4, 8.0, TargetModules::names(["q_proj", "fc1"]));
    let toy = vlm_lora::apply(toy, &config).expect("apply");
    assert_eq!(vlm_lora::adapted_modules(&toy), [Q_PROJ, FC1]);
    assert_close("B = 0: unchanged output", &toy.forward(x), &before, 0.0);
    // kaiming_uniform_(a=sqrt(5)) on A [r, in]: uniform in +-1/sqrt(in).
    let bound = 1.0 / (D_MODEL as f32).sqrt();
    let (a, b) = common::peft_tensors(&toy.q_proj);
    assert!(a.iter().all(|v| v.abs() <= bound), "{a:?}");
    assert!(
        a.iter().any(|v| v.abs() > bound / 4.0),
        "A is not degenerate: {a:?}"
    );
    assert!(b.iter().all(|v| *v == 0.0), "B starts at zero");
    let adapter = toy.fc1.adapter.as_ref().expect("fc1 adapter");
    assert_eq!((adapter.rank(), adapter.scaling), (4, 2.0));
}

#[test]
fn merge_folds_the_update_in_and_unmerge_takes_it_out() {
    let layer = adapted(2.0, 0.0);
    let x = input::<B>(4, &device());
    let base_weight = layer.base.weight.val();
    let adapted_out = layer.forward(x.clone());

    let merged = layer.merge();
    assert!(merged.is_merged());
    assert_close(
        "merged forward",
        &merged.forward(x.clone()),
        &adapted_out,
        1e-5,
    );
    let again = merged.merge();
    assert_close(
        "merging twice is a no-op",
        &again.forward(x.clone()),
        &adapted_out,
        1e-5,
    );

    let unmerged = again.unmerge();
    assert!(!unmerged.is_merged());
    assert_close(
        "unmerged weight",
        &unmerged.base.weight.val(),
        &base_weight,
        1e-6,
    );
    assert_close(
        "unmerged forward",
        &unmerged.forward(x.clone()),
        &adapted_out,
        1e-5,
    );

    let plain = unmerged.merge_and_unload();
    assert!(plain.adapter.is_none() && !plain.is_merged());
    assert_close("merge_and_unload", &plain.forward(x), &adapted_out, 1e-5);
}

#[test]
fn effective_weight_is_the_merged_weight_either_way() {
    let layer = adapted(2.0, 0.0);
    let unmerged = layer.effective_weight();
    let merged = layer.merge();
    assert_close(
        "effective weight",
        &merged.effective_weight(),
        &unmerged,
        1e-6,
    );
    assert_close(
        "merged base weight",
        &merged.base.weight.val(),
        &unmerged,
        1e-6,
    );
}

#[test]
fn dropout_acts_on_the_adapter_input_only_while_training() {
    let layer = adapted(2.0, 0.5);
    let mut no_dropout = layer.clone();
    no_dropout.adapter.as_mut().expect("adapter").dropout = DropoutConfig::new(0.0).init();
    let x = input::<B>(64, &device());
    let inference = layer.forward(x.clone());
    let full = no_dropout.forward(x.clone());
    assert_close("no dropout at inference", &inference, &full, 0.0);

    // On an autodiff backend (training) the adapter's input is dropped, the base's is not.
    let train = layer.clone().train::<Autodiff<B>>();
    let update = |x: Tensor<B, 2>| {
        let base = layer.base.forward(x.clone());
        train.forward(Tensor::from_inner(x)).inner() - base
    };
    let (first, second) = (update(x.clone()), update(x.clone()));
    let full_update = full - layer.base.forward(x);
    let differs = |a: &Tensor<B, 2>, b: &Tensor<B, 2>| {
        (a.clone() - b.clone()).abs().max().into_scalar() > 1e-3
    };
    assert!(differs(&first, &second), "masks are redrawn");
    assert!(differs(&first, &full_update), "the update is dropped out");
}
