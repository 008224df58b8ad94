//! What each parameter of a model is part of, which is what decides whether it trains.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// The part of a vision-language model a parameter belongs to. Training decides by it what
/// updates (`vlm_train::apply_mode`): the projector always, the vision tower when asked, the
/// language model's LoRA adapters or all of it by the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The vision encoder.
    Vision,
    /// The projector from image features to token embeddings.
    Projector,
    /// The language model's own weights.
    LanguageModel,
    /// A LoRA adapter attached to the language model.
    Adapter,
}

/// The role of each parameter of a model, by id; a parameter given no role has none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamRoles(HashMap<ParamId, Role>);

impl ParamRoles {
    /// Gives every float parameter of `module` the role `role` (over any given before).
    pub fn with<B: Backend, M: Module<B>>(self, role: Role, module: &M) -> Self {
        let mut ids = Ids(Vec::new());
        module.visit(&mut ids);
        self.with_ids(role, ids.0)
    }

    /// Gives the parameters `ids` the role `role` (over any given before).
    pub fn with_ids(mut self, role: Role, ids: impl IntoIterator<Item = ParamId>) -> Self {
        self.0.extend(ids.into_iter().map(|id| (id, role)));
        self
    }

    /// The role of parameter `id`, if it has one.
    pub fn of(&self, id: ParamId) -> Option<Role> {
        self.0.get(&id).copied()
    }
}

/// A model whose parameters have [`Role`]s: what the trainer trains. Implemented by
/// [`VisionLanguageModel`](crate::VisionLanguageModel); a model of its own (a classifier
/// over a tower, say) lists its parts with [`ParamRoles::with`].
pub trait RoleModel<B: Backend>: Module<B> {
    /// Every parameter's role.
    fn param_roles(&self) -> ParamRoles;
}

struct Ids(Vec<ParamId>);

impl<B: Backend> ModuleVisitor<B> for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.id);
    }
}
