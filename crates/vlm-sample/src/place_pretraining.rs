//! Stage 1 of the quickstart: the vision tower pretrained to name what is at each of the five
//! places of a generated scene, as CLIP and SigLIP are pretrained before a LLaVA uses them.
//!
//! Trained end to end through the LLM alone, the tiny tower stalls (a 2-layer LLM gives it too
//! faint a signal about which shape is where); a classification of each place (nothing, or
//! one of the 12 colour-outline pairs) from the mean of its tokens teaches it in a few hundred
//! steps.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use vlm_model::{CausalLmLoss, ModelError, ParamRoles, Role, RoleModel, VlmBatch};
use vlm_train::{Resume, ShuffledData, TrainBatch, TrainConfig, TrainError, TrainOutcome, Trainer};
use vlm_vision::{SiglipVisionTower, VisionEncoder};

use crate::sample::{Color, GeneratedScene, Pixels, Position, Scene, ShapeKind};
use crate::tiny_vlm::IMAGE_SIDE;

/// Places of a scene, in [`Position::ALL`] order.
pub const PLACES: usize = Position::ALL.len();
/// Classes of a place: empty, or one of the colour-outline pairs.
pub const PLACE_CLASSES: usize = 1 + Color::ALL.len() * ShapeKind::ALL.len();

/// Stage 1's model: the vision tower and a linear head that reads, from the mean of the
/// tower's tokens, what is at each of the five places. The head has the projector's role,
/// where the trainer gives it its own parameter group.
#[derive(Module, Debug)]
pub struct PlaceClassifier<B: Backend> {
    /// The tower being pretrained.
    pub vision: SiglipVisionTower<B>,
    /// The place head.
    projector: Linear<B>,
}

impl<B: Backend> RoleModel<B> for PlaceClassifier<B> {
    fn param_roles(&self) -> ParamRoles {
        ParamRoles::default()
            .with(Role::Vision, &self.vision)
            .with(Role::Projector, &self.projector)
    }
}

/// A scene's pixels and place classes: one sample of stage 1.
type PlaceSample = (Pixels, [i64; PLACES]);

/// Pretrains `vision` on the generated training `scenes` (held-out scenes are never seen) as
/// `config` says, in batches of its per-device batch size shuffled with seed 0. The place
/// head is initialised here, from the backend's generator. The trained tower is the
/// outcome's `model.vision`.
pub fn pretrain_vision<B: AutodiffBackend>(
    vision: SiglipVisionTower<B>,
    scenes: &[GeneratedScene],
    config: TrainConfig,
    device: &B::Device,
) -> Result<TrainOutcome<PlaceClassifier<B>>, TrainError> {
    let head = LinearConfig::new(vision.output_dim(), PLACES * PLACE_CLASSES).init(device);
    let model = PlaceClassifier {
        vision,
        projector: head,
    };
    let samples: Vec<PlaceSample> = scenes
        .iter()
        .map(|s| (s.example.1.clone(), place_classes(&s.scene)))
        .collect();
    let batch_size = config.per_device_train_batch_size;
    let collate = |batch: &[&PlaceSample], dev: &B::Device| Ok(place_batch(batch, dev));
    let mut data = ShuffledData::new(samples, batch_size, 0, collate);
    Trainer::new(config, device.clone(), place_loss)?.fit(model, &mut data, Resume::No)
}

/// A stage-1 batch: the pixels, and the place classes as labels (there is no text: they
/// also stand in as the ids).
fn place_batch<B: Backend>(batch: &[&PlaceSample], dev: &B::Device) -> TrainBatch<B> {
    let n = batch.len();
    let pixels: Vec<f32> = batch.iter().flat_map(|(p, _)| p.iter().copied()).collect();
    let classes: Vec<i64> = batch.iter().flat_map(|(_, c)| c.iter().copied()).collect();
    let labels = Tensor::<B, 2, Int>::from_data(TensorData::new(classes, [n, PLACES]), dev);
    TrainBatch {
        inputs: VlmBatch {
            input_ids: labels.clone(),
            attention_mask: None,
            pixel_values: Some(Tensor::from_data(
                TensorData::new(pixels, [n, 3, IMAGE_SIDE, IMAGE_SIDE]),
                dev,
            )),
        },
        labels,
        samples: n,
        images: n,
        tokens: 0,
        supervised_tokens: n * PLACES,
    }
}

/// Cross-entropy of the place classes predicted from the mean of the tower's tokens.
fn place_loss<B: Backend>(
    model: &PlaceClassifier<B>,
    batch: TrainBatch<B>,
) -> Result<CausalLmLoss<B>, ModelError> {
    let pixels = batch
        .inputs
        .pixel_values
        .ok_or_else(|| ModelError::InvalidInput("a stage-1 batch without images".into()))?;
    let images = pixels.dims()[0];
    let features = model.vision.forward(pixels)?;
    let dim = features.dims()[2];
    let pooled = features.mean_dim(1).reshape([images, dim]);
    let logits = model
        .projector
        .forward(pooled)
        .reshape([images * PLACES, PLACE_CLASSES]);
    let targets = batch.labels.reshape([images * PLACES]);
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets);
    Ok(CausalLmLoss {
        loss,
        supervised_tokens: images * PLACES,
    })
}

/// What is at each place of `scene`: 0 when nothing, else `1 + colour * 3 + outline`.
pub fn place_classes(scene: &Scene) -> [i64; PLACES] {
    let mut classes = [0; PLACES];
    for shape in &scene.shapes {
        let place = index_of(&Position::ALL, shape.position);
        let color = index_of(&Color::ALL, shape.color);
        let kind = index_of(&ShapeKind::ALL, shape.kind);
        classes[place] = (1 + color * ShapeKind::ALL.len() + kind) as i64;
    }
    classes
}

/// Where `item` is in `all` (every enum value is in its `ALL`).
fn index_of<T: PartialEq>(all: &[T], item: T) -> usize {
    all.iter().position(|x| *x == item).unwrap_or(0)
}
