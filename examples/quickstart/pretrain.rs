//! Stage 1 of the quickstart: the vision tower pretrained to name what is at each of the five
//! places of a scene, before the LLaVA stage joins it, frozen, to the LLM.

use std::error::Error;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use vlm::backend::Train;
use vlm::model::{CausalLmLoss, ModelError, ParamRoles, Role, RoleModel, VlmBatch};
use vlm::sample::sample::{Color, Position, Scene, ShapeKind};
use vlm::train::{Resume, ShuffledData, TrainBatch, Trainer};
use vlm::vision::{SiglipVisionTower, VisionEncoder};

use super::data::{GeneratedScene, Pixels};
use super::{train_config, Args, SIDE};

/// Stage 1's model: the vision tower and a linear head that reads, from the mean of the
/// tower's tokens, what is at each of the five places. The head has the projector's role,
/// where the trainer gives it its own parameter group.
#[derive(Module, Debug)]
struct PlaceClassifier<B: Backend> {
    vision: SiglipVisionTower<B>,
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

/// Stage 1: pretrains the vision tower on the generated training scenes, as CLIP and SigLIP
/// are pretrained before a LLaVA uses them. Trained end to end through the LLM alone, the
/// tower stalls (a 2-layer LLM gives it too faint a signal about which shape is where); a
/// classification of each place (nothing, or one of the 12 colour-outline pairs) teaches it
/// in a few hundred steps. The held-out scenes are never seen.
pub(super) fn pretrain_vision(
    vision: SiglipVisionTower<Train>,
    scenes: &[GeneratedScene],
    args: &Args,
    dev: &burn::tensor::Device<Train>,
) -> Result<SiglipVisionTower<Train>, Box<dyn Error>> {
    let model = PlaceClassifier {
        vision,
        projector: LinearConfig::new(args.arch.vit_dim, PLACES * PLACE_CLASSES).init(dev),
    };
    let samples: Vec<PlaceSample> = scenes
        .iter()
        .map(|s| (s.example.1.clone(), s.places))
        .collect();
    let mut data = ShuffledData::new(
        samples,
        args.batch_size,
        0,
        |batch: &[&PlaceSample], dev: &burn::tensor::Device<Train>| Ok(place_batch(batch, dev)),
    );
    let config = train_config(args, "pretrain", args.pretrain_steps, args.lr, true);
    let start = Instant::now();
    let outcome =
        Trainer::new(config, dev.clone(), place_loss)?.fit(model, &mut data, Resume::No)?;
    println!(
        "stage 1: pretrained the vision tower {} steps in {:.0} s; final loss {:.4}",
        outcome.state.step,
        start.elapsed().as_secs_f64(),
        outcome.state.last_loss.unwrap_or(f64::NAN)
    );
    Ok(outcome.model.vision)
}

/// A stage-1 batch: the pixels, and the place classes as labels (there is no text: they
/// also stand in as the ids).
fn place_batch(batch: &[&PlaceSample], dev: &burn::tensor::Device<Train>) -> TrainBatch<Train> {
    let n = batch.len();
    let pixels: Vec<f32> = batch.iter().flat_map(|(p, _)| p.iter().copied()).collect();
    let classes: Vec<i64> = batch.iter().flat_map(|(_, c)| c.iter().copied()).collect();
    let labels = Tensor::<Train, 2, Int>::from_data(TensorData::new(classes, [n, PLACES]), dev);
    TrainBatch {
        inputs: VlmBatch {
            input_ids: labels.clone(),
            attention_mask: None,
            pixel_values: Some(Tensor::from_data(
                TensorData::new(pixels, [n, 3, SIDE, SIDE]),
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
fn place_loss(
    model: &PlaceClassifier<Train>,
    batch: TrainBatch<Train>,
) -> Result<CausalLmLoss<Train>, ModelError> {
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

/// Places of a scene, in [`Position::ALL`] order.
pub(super) const PLACES: usize = Position::ALL.len();
/// Classes of a place: empty, or one of the colour-outline pairs.
const PLACE_CLASSES: usize = 1 + Color::ALL.len() * ShapeKind::ALL.len();

/// What is at each place of `scene`: 0 when nothing, else `1 + colour * 3 + outline`.
pub(super) fn place_classes(scene: &Scene) -> [i64; PLACES] {
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
