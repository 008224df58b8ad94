//! Only adapters (and what is explicitly unfrozen) train: base weights get no gradient, no
//! optimizer state and no update.

mod common;

use std::collections::HashSet;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use common::{input, Toy};
use vlm_lora::{LoraConfig, TargetModules};
use vlm_testkit::{device, TestBackend};

type Train = Autodiff<TestBackend>;

/// Every float parameter: its id, whether it requires a gradient, and its value.
#[derive(Default)]
struct Snapshot {
    params: Vec<(ParamId, bool, TensorData)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        self.params
            .push((param.id, value.is_require_grad(), value.into_data()));
    }
}

fn snapshot<M: Module<Train>>(module: &M) -> Snapshot {
    let mut snapshot = Snapshot::default();
    module.visit(&mut snapshot);
    snapshot
}

fn ids<M: Module<Train>>(module: &M) -> HashSet<ParamId> {
    snapshot(module).params.iter().map(|(id, ..)| *id).collect()
}

/// The ids of the parameters of a module that have an entry in a gradient container.
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

/// One AdamW step on `sum(toy(x)^2)`; also returns the parameters that had a gradient entry
/// and the number of entries.
fn step(
    toy: Toy<Train>,
    optimizer: &mut impl Optimizer<Toy<Train>, Train>,
) -> (Toy<Train>, HashSet<ParamId>, usize) {
    let loss = toy.forward(input(8, &device())).powi_scalar(2).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &toy);
    let mut with_gradient = WithGradient {
        grads: &grads,
        ids: HashSet::new(),
    };
    toy.visit(&mut with_gradient);
    let (ids, entries) = (with_gradient.ids, grads.len());
    (optimizer.step(1e-2, toy, grads), ids, entries)
}

#[test]
fn an_adamw_step_updates_only_adapters_and_chosen_params() {
    let toy = Toy::<Train>::new(&device());
    let config = LoraConfig::new(2, 4.0, TargetModules::parse("q_proj|fc1")).with_dropout(0.1);
    let mut toy = vlm_lora::apply(toy, &config).expect("apply");
    toy.scale = vlm_lora::unfreeze(toy.scale); // explicitly chosen to train
    let adapter_ids: HashSet<ParamId> = [&toy.q_proj, &toy.fc1]
        .iter()
        .flat_map(|linear| ids(linear.adapter.as_ref().expect("adapter")))
        .collect();
    let trainable: HashSet<ParamId> = adapter_ids.iter().copied().chain([toy.scale.id]).collect();
    let before = snapshot(&toy);
    for (id, requires_grad, _) in &before.params {
        assert_eq!(*requires_grad, trainable.contains(id), "{id}");
    }

    let mut optimizer = AdamWConfig::new().init::<Train, Toy<Train>>();
    // Two steps: B starts at zero, so A's gradient is zero until B has moved.
    let (toy, _, _) = step(toy, &mut optimizer);
    let (toy, with_gradient, entries) = step(toy, &mut optimizer);
    assert_eq!(with_gradient, trainable, "gradient entries");
    assert_eq!(entries, trainable.len(), "no entry for any other parameter");
    let after = snapshot(&toy);
    for ((id, _, old), (new_id, _, new)) in before.params.iter().zip(&after.params) {
        assert_eq!(id, new_id, "parameter ids are stable");
        if trainable.contains(id) {
            assert_ne!(old, new, "{id} trained");
        } else {
            assert_eq!(old, new, "{id} is bit-identical");
        }
    }
    let state: HashSet<ParamId> = optimizer.to_record().keys().copied().collect();
    assert_eq!(
        state, trainable,
        "optimizer state only for trainable params"
    );
}

#[test]
fn adapters_attached_on_a_plain_backend_train_after_moving_to_autodiff() {
    let toy = Toy::<TestBackend>::new(&device());
    let config = LoraConfig::new(2, 4.0, TargetModules::names(["fc1"]));
    let toy = vlm_lora::apply(toy, &config)
        .expect("apply")
        .train::<Train>();
    let adapter_ids = ids(toy.fc1.adapter.as_ref().expect("adapter"));
    for (id, requires_grad, _) in snapshot(&toy).params {
        assert_eq!(requires_grad, adapter_ids.contains(&id), "{id}");
    }
}
