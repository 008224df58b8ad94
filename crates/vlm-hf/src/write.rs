//! Writing Hugging Face files and folders atomically: a temporary file (or a hidden staging
//! folder) beside the target, renamed into place once complete, so a crash never leaves a
//! truncated config, adapter or checkpoint. Every model crate saves through these, so they
//! live here, under all of them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::{Dtype, View};
use serde::Serialize;
use tempfile::TempDir;

use crate::HfError;

/// Tensors bound for one safetensors file, each converted to bytes only while it is written,
/// so saving a model never holds a second copy of it in memory.
#[derive(Default)]
pub struct SafetensorsWriter {
    pub(crate) tensors: Vec<(String, LazyTensor)>,
}

/// One tensor of a [`SafetensorsWriter`]: its header entry and how to produce its bytes.
pub(crate) struct LazyTensor {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) fetch: Box<dyn Fn() -> TensorData>,
}

impl SafetensorsWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tensor` under `name`, in its own float dtype (f32, f16, bf16 or f64; any other
    /// is written as f32).
    pub fn add<B: Backend, const D: usize>(
        &mut self,
        name: impl Into<String>,
        tensor: Tensor<B, D>,
    ) {
        let (dims, dtype) = (tensor.dims(), tensor.dtype());
        self.add_lazy(name, dims, dtype, move || tensor.clone());
    }

    /// Adds a tensor of `dims` and `dtype` that `make` computes only when it is written (a
    /// merged weight, say), so that no two such tensors exist at once.
    pub fn add_lazy<B: Backend, const D: usize>(
        &mut self,
        name: impl Into<String>,
        dims: [usize; D],
        dtype: DType,
        make: impl Fn() -> Tensor<B, D> + 'static,
    ) {
        let (dtype, target) = stored_dtype(dtype);
        let fetch = Box::new(move || make().into_data().convert_dtype(target));
        self.push(name.into(), dtype, dims.to_vec(), fetch);
    }

    /// Adds host data already read back from a device (f32, f16, bf16 or f64; any other
    /// dtype is written as f32).
    pub fn add_data(&mut self, name: impl Into<String>, data: TensorData) {
        let (dtype, target) = stored_dtype(data.dtype);
        let shape = data.shape.to_vec();
        let data = data.convert_dtype(target);
        self.push(name.into(), dtype, shape, Box::new(move || data.clone()));
    }

    fn push(
        &mut self,
        name: String,
        dtype: Dtype,
        shape: Vec<usize>,
        fetch: Box<dyn Fn() -> TensorData>,
    ) {
        let tensor = LazyTensor {
            dtype,
            shape,
            fetch,
        };
        self.tensors.push((name, tensor));
    }

    /// Writes the file atomically, with the `{"format": "pt"}` metadata transformers expects.
    pub fn write(self, path: &Path) -> Result<(), HfError> {
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        write_atomic(path, |temp| {
            safetensors::serialize_to_file(self.tensors, Some(metadata), temp)
                .map_err(io::Error::other)
        })
    }
}

/// The safetensors dtype a Burn float dtype is stored as, and the Burn dtype to convert to.
pub(crate) fn stored_dtype(dtype: DType) -> (Dtype, DType) {
    match dtype {
        DType::F64 => (Dtype::F64, DType::F64),
        DType::F16 => (Dtype::F16, DType::F16),
        DType::BF16 => (Dtype::BF16, DType::BF16),
        _ => (Dtype::F32, DType::F32),
    }
}

impl View for LazyTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned((self.fetch)().as_bytes().to_vec())
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// Writes `value` as pretty JSON with a trailing newline, atomically (the form of the
/// configs Hugging Face tools write).
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), HfError> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other);
    write_atomic(path, |temp| fs::write(temp, text? + "\n"))
}

/// Creates the folder `dir` and its missing parents, naming `dir` in the error.
pub fn create_dir_all(dir: &Path) -> Result<(), HfError> {
    fs::create_dir_all(dir).map_err(|source| HfError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Runs `write` on a temporary path next to `path`, syncs the result to disk and renames it
/// over `path`; on failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), HfError> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = path.with_file_name(format!(".{name}.{}-{unique}.tmp", std::process::id()));
    let result = write(&temp)
        .and_then(|()| File::open(&temp)?.sync_all())
        .and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the write already failed, and that is the error worth reporting.
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|source| HfError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A folder being written: a hidden staging folder beside its destination that becomes the
/// destination only on [`commit`](Self::commit), so a crash or an error never leaves a
/// half-written folder under the destination's name. Dropping it uncommitted removes it.
#[derive(Debug)]
pub struct StagedDir {
    staging: TempDir,
    destination: PathBuf,
    prefix: String,
}

impl StagedDir {
    /// Stages a folder for `destination`, creating its parent if missing. The staging folder
    /// is named `{prefix}XXXXXX` (random suffix) in that parent, so the final rename stays on
    /// one file system and a cleaner can recognise leftovers of a killed writer by `prefix`.
    pub fn new(destination: impl Into<PathBuf>, prefix: &str) -> Result<Self, HfError> {
        let destination = destination.into();
        let staging = hidden_dir_beside(&destination, prefix)?;
        Ok(Self {
            staging,
            destination,
            prefix: prefix.to_string(),
        })
    }

    /// The staging folder, to write the folder's files into.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// The folder it becomes on [`commit`](Self::commit).
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Flushes the staged folder and renames it to the destination, which an existing folder
    /// there is first moved aside for (and deleted once the new one is in place, or put back
    /// if the rename fails). Returns the destination.
    pub fn commit(self) -> Result<PathBuf, HfError> {
        let write_error = |source| HfError::Write {
            path: self.destination.clone(),
            source,
        };
        sync_dir(self.staging.path());
        let _previous = match self.destination.exists() {
            true => Some(self.move_destination_aside()?),
            false => None,
        };
        fs::rename(self.staging.path(), &self.destination).map_err(write_error)?;
        // Now at its destination: nothing is left to clean up.
        let _ = self.staging.keep();
        sync_dir(parent_dir(&self.destination));
        Ok(self.destination)
    }

    /// Moves the folder at the destination into a hidden folder beside it (`{prefix}old-XXXXXX`),
    /// removed when the returned guard drops; if the guard drops before the new folder is in
    /// place, the old one is put back.
    fn move_destination_aside(&self) -> Result<SetAside, HfError> {
        let trash = hidden_dir_beside(&self.destination, &format!("{}old-", self.prefix))?;
        let previous = trash.path().join("previous");
        fs::rename(&self.destination, &previous).map_err(|source| HfError::Write {
            path: self.destination.clone(),
            source,
        })?;
        Ok(SetAside {
            _trash: trash,
            previous,
            destination: self.destination.clone(),
        })
    }
}

/// A destination folder moved aside while its replacement is renamed into place.
struct SetAside {
    _trash: TempDir,
    previous: PathBuf,
    destination: PathBuf,
}

impl Drop for SetAside {
    fn drop(&mut self) {
        if !self.destination.exists() {
            // Best effort: the rename of the new folder failed, and that is the error reported.
            let _ = fs::rename(&self.previous, &self.destination);
        }
    }
}

/// A new hidden folder `{prefix}XXXXXX` in the parent of `destination` (created if missing).
fn hidden_dir_beside(destination: &Path, prefix: &str) -> Result<TempDir, HfError> {
    let parent = parent_dir(destination);
    create_dir_all(parent)?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(|source| HfError::Write {
            path: parent.to_path_buf(),
            source,
        })
}

/// The folder holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Flushes a folder's entries (renames into it) to disk; best effort, as folders cannot be
/// opened as files everywhere.
fn sync_dir(path: &Path) {
    if let Ok(dir) = File::open(path) {
        let _ = dir.sync_all();
    }
}
