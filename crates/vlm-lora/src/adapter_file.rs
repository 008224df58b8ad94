//! PEFT adapter folders: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! PEFT keys each tensor by the module path under its `PeftModel` wrapper, without the
//! adapter name: `base_model.model.<path>.lora_A.weight` (`[r, in]`) and
//! `base_model.model.<path>.lora_B.weight` (`[out, r]`).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::{create_dir_all, write_json, SafetensorsWriter, WeightStore};

use crate::peft_config::CONFIG_FILE;
use crate::target::resolve_targets;
use crate::{AdaptableModel, LoraAdapter, LoraConfig, LoraError, LoraLinear};

/// File name of the adapter weights inside an adapter folder.
const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// PEFT's `lora_A.weight` and `lora_B.weight` keys of the module at `path`.
fn keys(path: &str) -> [String; 2] {
    ["lora_A", "lora_B"].map(|part| format!("base_model.model.{path}.{part}.weight"))
}

/// Writes the model's adapters as a PEFT adapter folder that `PeftModel.from_pretrained`
/// loads: `adapter_config.json` from `config` and `adapter_model.safetensors` with every
/// adapter's `A` and `B` in PEFT's layout. Each file is written atomically; `dir` is created
/// if needed.
///
/// The adapters must be exactly those `config` describes (the modules its targets select,
/// rank `r`, its scaling), so that PEFT rebuilds the same model; otherwise the error names
/// the first module that disagrees.
pub fn save_adapter<B: Backend, M: AdaptableModel<B>>(
    model: &M,
    config: &LoraConfig,
    dir: impl AsRef<Path>,
) -> Result<(), LoraError> {
    config.validate()?;
    let dir = dir.as_ref();
    let writer = adapter_tensors(model, config)?;
    create_dir_all(dir)?;
    writer.write(&dir.join(WEIGHTS_FILE))?;
    Ok(write_json(&dir.join(CONFIG_FILE), &config.to_peft_json())?)
}

/// Every adapter's `A` and `B` under PEFT's keys, after checking them against `config`.
fn adapter_tensors<B: Backend, M: AdaptableModel<B>>(
    model: &M,
    config: &LoraConfig,
) -> Result<SafetensorsWriter, LoraError> {
    let targets = resolve_targets(model, &config.target_modules)?;
    let mut writer = SafetensorsWriter::new();
    let mut disagreement = None;
    model.visit_linears(&mut |path, linear| {
        if disagreement.is_some() {
            return;
        }
        match check_saved(path, linear, targets.contains(path), config) {
            Ok(Some(adapter)) => {
                let [a, b] = keys(path);
                writer.add(a, adapter.peft_a());
                writer.add(b, adapter.peft_b());
            }
            Ok(None) => {}
            Err(err) => disagreement = Some(err),
        }
    });
    disagreement.map_or(Ok(writer), Err)
}

/// The adapter of a linear to save, after checking it against the config.
fn check_saved<'a, B: Backend>(
    path: &str,
    linear: &'a LoraLinear<B>,
    targeted: bool,
    config: &LoraConfig,
) -> Result<Option<&'a LoraAdapter<B>>, LoraError> {
    let disagrees = |detail: String| LoraError::ConfigDisagrees {
        module: path.to_string(),
        detail,
    };
    let adapter = match (&linear.adapter, targeted) {
        (None, false) => return Ok(None),
        (Some(adapter), true) => adapter,
        (None, true) => return Err(disagrees("targeted but carries no adapter".into())),
        (Some(_), false) => return Err(disagrees("carries an adapter but is not targeted".into())),
    };
    if adapter.rank() != config.r {
        return Err(disagrees(format!(
            "adapter rank {} but r = {}",
            adapter.rank(),
            config.r
        )));
    }
    if (adapter.scaling - config.scaling()).abs() > 1e-12 * config.scaling().abs().max(1.0) {
        return Err(disagrees(format!(
            "adapter scaling {} but the config implies {}",
            adapter.scaling,
            config.scaling()
        )));
    }
    Ok(Some(adapter))
}

/// Reads a PEFT adapter folder and attaches its adapters to `model`, freezing every other
/// parameter as [`apply`](crate::apply) does. Returns the model; read the config itself with
/// [`LoraConfig::load`].
///
/// Every module the config targets must have both tensors, of rank `r` and of the module's
/// widths, and the file may hold nothing else: a missing tensor, a wrong rank or shape, a
/// tensor for a module this model lacks and targets that select nothing are typed errors,
/// reported before the model is changed.
pub fn load_adapter<B: Backend, M: AdaptableModel<B>>(
    model: M,
    dir: impl AsRef<Path>,
) -> Result<M, LoraError> {
    let dir = dir.as_ref();
    let config = LoraConfig::load(dir)?;
    let file = dir.join(WEIGHTS_FILE);
    let store = WeightStore::open_file(&file)?;
    let targets = resolve_targets(&model, &config.target_modules)?;
    let mut adapters = read_adapters(&model, &store, &file, &targets, &config)?;
    check_no_stray_keys(&store, &file, &targets)?;
    Ok(model
        .no_grad()
        .map_linears(&mut |path, linear| match adapters.remove(path) {
            Some(adapter) => linear.with_adapter(adapter),
            None => linear,
        }))
}

/// The adapter of every targeted module, read onto the module's device.
fn read_adapters<B: Backend, M: AdaptableModel<B>>(
    model: &M,
    store: &WeightStore,
    file: &Path,
    targets: &HashSet<String>,
    config: &LoraConfig,
) -> Result<HashMap<String, LoraAdapter<B>>, LoraError> {
    let mut adapters = HashMap::new();
    let mut failure = None;
    model.visit_linears(&mut |path, linear| {
        if failure.is_some() || !targets.contains(path) {
            return;
        }
        match read_pair(store, file, path, linear, config.r) {
            Ok((a, b)) => {
                let adapter = LoraAdapter::from_peft(a, b, config.scaling(), config.lora_dropout);
                adapters.insert(path.to_string(), adapter);
            }
            Err(err) => failure = Some(err),
        }
    });
    failure.map_or(Ok(adapters), Err)
}

/// Reads `lora_A` `[r, in]` and `lora_B` `[out, r]` of one module onto its device, in its
/// float type.
fn read_pair<B: Backend>(
    store: &WeightStore,
    file: &Path,
    path: &str,
    linear: &LoraLinear<B>,
    r: usize,
) -> Result<(Tensor<B, 2>, Tensor<B, 2>), LoraError> {
    let [a_key, b_key] = keys(path);
    // The base layer's device and float type: the adapter computes with its input.
    let options = (&linear.device(), linear.base.weight.val().dtype());
    let a_shape = checked_shape(store, file, &a_key, r, 0, [r, linear.d_input()])?;
    let b_shape = checked_shape(store, file, &b_key, r, 1, [linear.d_output(), r])?;
    Ok((
        store.float(&a_key, a_shape, options)?,
        store.float(&b_key, b_shape, options)?,
    ))
}

/// Checks that `key` exists with shape `expected`, reporting a wrong size along `rank_dim`
/// as a rank mismatch.
fn checked_shape(
    store: &WeightStore,
    file: &Path,
    key: &str,
    r: usize,
    rank_dim: usize,
    expected: [usize; 2],
) -> Result<[usize; 2], LoraError> {
    let (key_owned, path) = (key.to_string(), file.to_path_buf());
    if !store.contains(key) {
        return Err(LoraError::MissingKey {
            key: key_owned,
            path,
        });
    }
    let actual = store.info(key)?.shape;
    if actual.len() == 2 && actual[rank_dim] != r {
        return Err(LoraError::RankMismatch {
            key: key_owned,
            path,
            expected: r,
            actual: actual[rank_dim],
        });
    }
    if actual != expected {
        return Err(LoraError::ShapeMismatch {
            key: key_owned,
            path,
            expected: expected.to_vec(),
            actual,
        });
    }
    Ok(expected)
}

/// Fails on the first tensor of the file that no targeted module reads.
fn check_no_stray_keys(
    store: &WeightStore,
    file: &Path,
    targets: &HashSet<String>,
) -> Result<(), LoraError> {
    let expected: HashSet<String> = targets.iter().flat_map(|path| keys(path)).collect();
    match store
        .keys()
        .into_iter()
        .find(|key| !expected.contains(*key))
    {
        Some(key) => Err(LoraError::UnexpectedKey {
            key: key.to_string(),
            path: file.to_path_buf(),
        }),
        None => Ok(()),
    }
}
