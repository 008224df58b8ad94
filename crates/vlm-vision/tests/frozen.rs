//! Towers are frozen: on an autodiff backend their forward pass records no graph, their
//! parameters get no gradient, and a trainable tensor on top of the features still does.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use vlm_hf::WeightStore;
use vlm_testkit::{assert_close, device, fixture, TestBackend};
use vlm_vision::{ClipVisionTower, FeatureSelection, SiglipVisionTower, VisionEncoder};

type Train = Autodiff<TestBackend>;

/// Counts the parameters of a module and the ones that require or received a gradient.
struct GradientAudit<'a> {
    grads: &'a <Train as AutodiffBackend>::Gradients,
    params: usize,
    requiring_grad: usize,
    with_grad: usize,
}

impl ModuleVisitor<Train> for GradientAudit<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
        let value = param.val();
        self.params += 1;
        self.requiring_grad += usize::from(value.is_require_grad());
        self.with_grad += usize::from(value.grad(self.grads).is_some());
    }
}

/// Runs `tower` under autodiff with a trainable scale on its features, back-propagates, and
/// checks that only the scale gets a gradient.
fn check_frozen<M>(tower: M, expected_params: usize)
where
    M: VisionEncoder<Train> + AutodiffModule<Train>,
    M::InnerModule: VisionEncoder<TestBackend>,
{
    let reference = WeightStore::open_file(fixture("llava").join("reference.safetensors"));
    let pixels = reference
        .and_then(|r| r.float_any::<TestBackend, 4>("pixel_values", &device()))
        .expect("reference pixels");
    let features = tower
        .forward(Tensor::from_inner(pixels.clone()))
        .expect("forward");

    let scale = Tensor::<Train, 1>::ones([tower.output_dim()], &device()).require_grad();
    let loss = (features.clone() * scale.clone().unsqueeze::<3>()).sum();
    let grads = loss.backward();
    assert!(scale.grad(&grads).is_some(), "the trainable tensor learns");

    let mut audit = GradientAudit {
        grads: &grads,
        params: 0,
        requiring_grad: 0,
        with_grad: 0,
    };
    tower.visit(&mut audit);
    assert_eq!(audit.params, expected_params);
    assert_eq!((audit.requiring_grad, audit.with_grad), (0, 0));

    let inner = tower.valid().forward(pixels).expect("inner forward");
    assert_close(
        "autodiff vs inner features",
        &features.inner(),
        &inner,
        1e-5,
    );
}

#[test]
fn clip_tower_gets_no_gradient() {
    let tower = ClipVisionTower::<Train>::load(
        fixture("clip_vision"),
        FeatureSelection::default(),
        &device(),
    )
    .expect("load");
    // class, patch, position, pre/post norms (2 + 2), 3 layers x (2 norms + 6 linears) x 2.
    check_frozen(tower, 3 + 4 + 3 * 16);
}

#[test]
fn siglip_tower_gets_no_gradient() {
    let tower = SiglipVisionTower::<Train>::load(
        fixture("siglip_vision"),
        FeatureSelection::default(),
        &device(),
    )
    .expect("load");
    // patch weight and bias, position, post norm (2), 3 layers x 16 tensors; no head.
    check_frozen(tower, 3 + 2 + 3 * 16);
}
