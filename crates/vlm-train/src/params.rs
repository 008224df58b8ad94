//! The model's parameters: which train (decided by [`Role`] and the mode), which optimizer
//! group each belongs to (by role and by the module holding it), and the trainable values
//! saved to and restored from a checkpoint, by path.
//!
//! Paths are Burn module paths (`projector.Mlp.linear_1.bias`,
//! `language_model.model.layers.0.self_attn.q_proj.adapter.lora_a.weight`), stable across
//! runs, unlike Burn's random `ParamId`s; checkpoints key everything by them.

use std::any::type_name;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::conv::{
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, DeformConv2d,
};
use burn::nn::{BatchNorm, GroupNorm, InstanceNorm, LayerNorm, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorCreationOptions};
use serde::{Deserialize, Serialize};
use vlm_hf::{SafetensorsWriter, WeightStore};
use vlm_model::{ParamRoles, Role, RoleModel};

use crate::{TrainConfig, TrainError, TrainMode};

/// The four AdamW parameter groups of the seed's trainer: projector or not, times weight
/// decay or not (biases and norm parameters get no decay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamGroup {
    /// Projector weights: `feature_proj_lr`, weight decay.
    Projector,
    /// Projector biases: `feature_proj_lr`, no decay.
    ProjectorNoDecay,
    /// Everything else that trains (LoRA adapters, the LLM, the vision tower when trained):
    /// `learning_rate`, weight decay.
    Model,
    /// Their biases and norm parameters: `learning_rate`, no decay.
    ModelNoDecay,
}

impl ParamGroup {
    /// The four groups, in a fixed order.
    pub const ALL: [Self; 4] = [
        Self::Projector,
        Self::ProjectorNoDecay,
        Self::Model,
        Self::ModelNoDecay,
    ];

    /// Its name in logs, metrics and checkpoint files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Projector => "projector",
            Self::ProjectorNoDecay => "projector_no_decay",
            Self::Model => "model",
            Self::ModelNoDecay => "model_no_decay",
        }
    }

    /// Whether it is a projector group (at `feature_proj_lr`).
    pub fn is_projector(self) -> bool {
        matches!(self, Self::Projector | Self::ProjectorNoDecay)
    }

    /// Whether weight decay applies.
    pub fn decays(self) -> bool {
        matches!(self, Self::Projector | Self::Model)
    }

    /// The group of a parameter with `role` that `decays` or not.
    fn of(role: Option<Role>, decays: bool) -> Self {
        match (role == Some(Role::Projector), decays) {
            (true, true) => Self::Projector,
            (true, false) => Self::ProjectorNoDecay,
            (false, true) => Self::Model,
            (false, false) => Self::ModelNoDecay,
        }
    }
}

/// The kind of Burn layer holding a parameter, which decides its weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A normalisation layer: none of its parameters decays.
    Norm,
    /// A linear or convolution layer: its weight decays, its bias does not.
    Affine,
    /// Anything else: its parameters decay.
    Other,
}

impl Holder {
    /// The kind of the module of Burn container type `container_type` (`Struct:LayerNorm`,
    /// what a module visitor is told on entering one of its fields).
    fn of<B: Backend>(container_type: &str) -> Self {
        let name = container_type
            .strip_prefix("Struct:")
            .unwrap_or(container_type);
        let norms = [
            type_name_of::<LayerNorm<B>>(),
            type_name_of::<RmsNorm<B>>(),
            type_name_of::<BatchNorm<B>>(),
            type_name_of::<GroupNorm<B>>(),
            type_name_of::<InstanceNorm<B>>(),
        ];
        let affine = [
            type_name_of::<Linear<B>>(),
            type_name_of::<Conv1d<B>>(),
            type_name_of::<Conv2d<B>>(),
            type_name_of::<Conv3d<B>>(),
            type_name_of::<ConvTranspose1d<B>>(),
            type_name_of::<ConvTranspose2d<B>>(),
            type_name_of::<ConvTranspose3d<B>>(),
            type_name_of::<DeformConv2d<B>>(),
        ];
        if norms.contains(&name) {
            Self::Norm
        } else if affine.contains(&name) {
            Self::Affine
        } else {
            Self::Other
        }
    }

    /// Whether AdamW decays its parameter `field`: biases and normalisation parameters don't.
    fn decays(self, field: &str) -> bool {
        match self {
            Self::Norm => false,
            Self::Affine => field != "bias",
            Self::Other => true,
        }
    }
}

/// The bare name of type `T` (`LayerNorm` for `burn_nn::...::LayerNorm<Backend>`), as Burn's
/// module derive names it in container types.
fn type_name_of<T>() -> &'static str {
    let path = type_name::<T>().split('<').next().unwrap_or_default();
    path.rsplit("::").next().unwrap_or(path)
}

/// One float parameter of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Its module path, e.g. `projector.Mlp.linear_1.weight`.
    pub path: String,
    /// Burn's id of it in this process.
    pub id: ParamId,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Whether it requires a gradient (is trained).
    pub trainable: bool,
    /// The part of the model it belongs to, if any.
    pub role: Option<Role>,
    /// The optimizer group it belongs to if trained.
    pub group: ParamGroup,
}

/// Every float parameter of `model`, in visiting order.
pub fn param_table<B: Backend, M: RoleModel<B>>(model: &M) -> Vec<ParamInfo> {
    let mut table = Table {
        path: PathStack::default(),
        roles: model.param_roles(),
        params: Vec::new(),
    };
    model.visit(&mut table);
    table.params
}

/// The trainable parameters' ids of each group (only non-empty groups appear).
pub fn group_ids(table: &[ParamInfo]) -> BTreeMap<ParamGroup, Vec<ParamId>> {
    let mut groups: BTreeMap<ParamGroup, Vec<ParamId>> = BTreeMap::new();
    for info in table.iter().filter(|p| p.trainable) {
        groups.entry(info.group).or_default().push(info.id);
    }
    groups
}

#[derive(Default)]
struct PathStack {
    names: Vec<String>,
    types: Vec<String>,
}

impl PathStack {
    fn enter(&mut self, name: &str, container_type: &str) {
        self.names.push(name.to_string());
        self.types.push(container_type.to_string());
    }

    fn exit(&mut self) {
        self.names.pop();
        self.types.pop();
    }

    fn joined(&self) -> String {
        self.names.join(".")
    }

    /// The container type of the innermost entry: the struct that holds the parameter.
    fn parent_type(&self) -> &str {
        self.types.last().map(String::as_str).unwrap_or_default()
    }
}

struct Table {
    path: PathStack,
    roles: ParamRoles,
    params: Vec<ParamInfo>,
}

impl<B: Backend> ModuleVisitor<B> for Table {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let field = self
            .path
            .names
            .last()
            .map(String::as_str)
            .unwrap_or_default();
        let decays = Holder::of::<B>(self.path.parent_type()).decays(field);
        let role = self.roles.of(param.id);
        self.params.push(ParamInfo {
            path: self.path.joined(),
            id: param.id,
            shape: value.dims().to_vec(),
            trainable: value.is_require_grad(),
            role,
            group: ParamGroup::of(role, decays),
        });
    }
}

/// What trains in a vision-language model, by [`Role`], and in which float type: the
/// projector always; the language model's LoRA adapters, all of it, or none of it by
/// `config.mode`; the vision tower when `config.train_vision`. A parameter without a role is
/// frozen. What trains is cast to f32 and the rest to `config.dtype`
/// ([`TrainConfig::precision_of`]): parameters already in their type are kept as they are
/// (a program loads each part in its type, so no f32 copy of a half part is ever made).
///
/// The one place a run decides what trains: every parameter's flag is set here, whatever
/// loading or attaching adapters set before. Frozen parameters never require a gradient, so
/// Burn's autodiff records no operation on them alone (a frozen tower's forward pass builds
/// no graph) and the optimizer keeps no state for them. Call it on a model on an autodiff
/// backend.
pub fn apply_mode<B: Backend, M: RoleModel<B>>(model: M, config: &TrainConfig) -> M {
    let roles = model.param_roles();
    model.map(&mut Freeze { roles, config })
}

/// Whether a parameter with `role` trains under `mode`.
pub fn trains(role: Option<Role>, mode: TrainMode, train_vision: bool) -> bool {
    match role {
        Some(Role::Vision) => train_vision,
        Some(Role::Projector) => true,
        Some(Role::LanguageModel) => mode == TrainMode::Full,
        Some(Role::Adapter) => mode != TrainMode::Projector,
        None => false,
    }
}

struct Freeze<'a> {
    roles: ParamRoles,
    config: &'a TrainConfig,
}

impl<B: Backend> ModuleMapper<B> for Freeze<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let role = self.roles.of(param.id);
        let train = trains(role, self.config.mode, self.config.train_vision);
        let dtype = self.config.precision_of(role).dtype();
        let in_type = match param.is_initialized() {
            true => param.val().dtype() == dtype,
            // A fresh parameter not drawn yet is made in the default f32 when first read;
            // reading it here would move its random draw.
            false => dtype == DType::F32,
        };
        match in_type {
            true => param.set_require_grad(train),
            false => param.map(|tensor| tensor.detach().cast(dtype).set_require_grad(train)),
        }
    }
}

/// The values of the trainable parameters, by path, as a safetensors file in the backend's
/// float type (bit-exact: what resuming restores).
pub fn save_trainable<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<(), TrainError> {
    let mut collect = Collect {
        path: PathStack::default(),
        writer: SafetensorsWriter::new(),
    };
    model.visit(&mut collect);
    collect
        .writer
        .write(path)
        .map_err(crate::checkpoint::write_error)
}

/// Replaces the trainable parameters' values with those saved by [`save_trainable`] (ids and
/// gradient requirements kept). Every trainable parameter must be in the file with its shape,
/// and the file must hold nothing else: an error names the first path that differs.
pub fn load_trainable<B: Backend, M: Module<B>>(model: M, path: &Path) -> Result<M, TrainError> {
    let store = WeightStore::open_file(path).map_err(|e| TrainError::checkpoint(path, e))?;
    let mut restore = Restore {
        path: PathStack::default(),
        store: &store,
        restored: HashSet::new(),
        error: None,
    };
    let model = model.map(&mut restore);
    if let Some(reason) = restore.error {
        return Err(TrainError::checkpoint(path, reason));
    }
    let restored = restore.restored;
    if let Some(extra) = store
        .keys()
        .into_iter()
        .find(|key| !restored.contains(*key))
    {
        return Err(TrainError::checkpoint(
            path,
            format!("holds `{extra}`, which is not a trainable parameter of this model"),
        ));
    }
    Ok(model)
}

struct Collect {
    path: PathStack,
    writer: SafetensorsWriter,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.writer.add_data(self.path.joined(), value.into_data());
        }
    }
}

struct Restore<'a> {
    path: PathStack,
    store: &'a WeightStore,
    /// The paths restored so far.
    restored: HashSet<String>,
    error: Option<String>,
}

impl<B: Backend> ModuleMapper<B> for Restore<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() || self.error.is_some() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let name = self.path.joined();
        match self.read(&name, tensor.dims(), &tensor.device(), tensor.dtype()) {
            Ok(loaded) => {
                self.restored.insert(name);
                Param::from_mapped_value(id, loaded.require_grad(), mapper)
            }
            Err(reason) => {
                self.error = Some(reason);
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

impl Restore<'_> {
    /// The saved value of the trainable parameter `name`, which must have `dims`, in the
    /// parameter's float type `dtype`.
    fn read<B: Backend, const D: usize>(
        &self,
        name: &str,
        dims: [usize; D],
        device: &B::Device,
        dtype: DType,
    ) -> Result<Tensor<B, D>, String> {
        let info = self
            .store
            .info(name)
            .map_err(|_| format!("has no value for the trainable parameter `{name}`"))?;
        if info.shape != dims {
            return Err(format!(
                "`{name}` has shape {:?}, the model's is {dims:?}",
                info.shape
            ));
        }
        let options = TensorCreationOptions::new(device.clone()).with_dtype(dtype);
        self.store
            .float(name, dims, options)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use vlm_testkit::TestBackend;

    use super::*;

    #[test]
    fn the_holding_layer_decides_the_decay() {
        let holder = |name: &str| Holder::of::<TestBackend>(&format!("Struct:{name}"));
        for norm in [
            "LayerNorm",
            "RmsNorm",
            "BatchNorm",
            "GroupNorm",
            "InstanceNorm",
        ] {
            assert_eq!(holder(norm), Holder::Norm, "{norm}");
            assert!(!holder(norm).decays("gamma") && !holder(norm).decays("beta"));
        }
        for affine in ["Linear", "Conv2d", "ConvTranspose1d"] {
            assert_eq!(holder(affine), Holder::Affine, "{affine}");
            assert!(holder(affine).decays("weight") && !holder(affine).decays("bias"));
        }
        for other in ["ClipEmbeddings", "LoraAdapter", "Embedding"] {
            assert_eq!(holder(other), Holder::Other, "{other}");
            assert!(holder(other).decays("class_embedding"));
        }
    }
}
