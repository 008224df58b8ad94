use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, DType, Int, Tensor, TensorCreationOptions, TensorData};
use memmap2::Mmap;
#[cfg(unix)]
use memmap2::UncheckedAdvice;
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::{HfError, Precision};

pub(crate) const SINGLE_FILE: &str = "model.safetensors";
pub(crate) const SHARD_INDEX: &str = "model.safetensors.index.json";
const FLOAT_DTYPES: &str = "F32, F16, BF16, F64";
const INT_DTYPES: &str = "I64, I32, I16, I8, U8";

/// The key of `name` below the key prefix `prefix` (`prefix.name`, or `name` under the
/// empty prefix): how a composed model's prefix (a LLaVA's `vision_tower`,
/// `multi_modal_projector`, `language_model.model`) goes on top of a module's own names.
pub fn join_key(prefix: &str, name: &str) -> String {
    match prefix {
        "" => name.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

/// Where a tensor lives and what it looks like, read from the safetensors header only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightInfo {
    /// The safetensors file holding the tensor.
    pub path: PathBuf,
    /// The stored shape.
    pub shape: Vec<usize>,
    /// The stored dtype as safetensors names it (`F32`, `BF16`, ...).
    pub dtype: String,
}

/// The weights of a Hugging Face folder (or any set of safetensors files), read lazily.
///
/// Files are memory-mapped and only their headers are parsed on open; each tensor is
/// converted to the dtype asked for (f32 by default, see [`float`](Self::float)) when asked
/// for, so peak memory stays at one tensor beyond what the model itself holds.
pub struct WeightStore {
    origin: PathBuf,
    files: Vec<MappedFile>,
    by_key: HashMap<String, usize>,
}

struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl WeightStore {
    /// Opens the weights of a model folder: `model.safetensors.index.json` with its shards
    /// when present, else `model.safetensors`.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self, HfError> {
        let dir = dir.as_ref();
        let index_path = dir.join(SHARD_INDEX);
        if index_path.is_file() {
            let index: ShardIndex = crate::read_config(&index_path)?;
            let shards: BTreeSet<String> = index.weight_map.into_values().collect();
            let paths: Vec<PathBuf> = shards.iter().map(|name| dir.join(name)).collect();
            return Self::open_files(dir, &paths);
        }
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Self::open_files(dir, &[single]);
        }
        Err(HfError::NoWeights {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens one safetensors file (an adapter, a projector, reference outputs).
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self, HfError> {
        let path = path.as_ref();
        Self::open_files(path, &[path.to_path_buf()])
    }

    fn open_files(origin: &Path, paths: &[PathBuf]) -> Result<Self, HfError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut by_key = HashMap::new();
        for path in paths {
            let file = MappedFile::open(path)?;
            for key in file.metadata.tensors().keys() {
                by_key.insert(key.clone(), files.len());
            }
            files.push(file);
        }
        Ok(Self {
            origin: origin.to_path_buf(),
            files,
            by_key,
        })
    }

    /// All tensor keys, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.by_key.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// The key prefix under which a module is stored, found from the keys themselves: the `P`
    /// of every key `P.{anchor}` (or `""` when `anchor` itself is a key). `what` names the
    /// module in errors.
    ///
    /// This is how one loader reads every layout a module is saved in (a tower under
    /// `vision_model.`, without it as transformers 5 saves it, inside a LLaVA's
    /// `vision_tower.` or `model.vision_tower.`): a layout without the anchor is
    /// [`HfError::LayoutNotFound`] listing the key prefixes the files do have, one with the
    /// anchor under several prefixes is [`HfError::AmbiguousLayout`] listing them.
    pub fn find_prefix(&self, anchor: &str, what: &str) -> Result<String, HfError> {
        let dotted = format!(".{anchor}");
        let mut prefixes: Vec<String> = self
            .by_key
            .keys()
            .filter_map(|key| match key.strip_suffix(&dotted) {
                Some(prefix) => Some(prefix.to_string()),
                None => (key == anchor).then(String::new),
            })
            .collect();
        prefixes.sort_unstable();
        match prefixes.len() {
            1 => Ok(prefixes.remove(0)),
            0 => Err(HfError::LayoutNotFound {
                origin: self.origin.clone(),
                what: what.to_string(),
                anchor: anchor.to_string(),
                seen: self.key_roots(),
            }),
            _ => Err(HfError::AmbiguousLayout {
                origin: self.origin.clone(),
                what: what.to_string(),
                anchor: anchor.to_string(),
                prefixes,
            }),
        }
    }

    /// The distinct first two components of the keys (`model.layers`, `vision_model.encoder`),
    /// sorted: what a layout error shows of a file.
    fn key_roots(&self) -> Vec<String> {
        let roots: BTreeSet<String> = self
            .by_key
            .keys()
            .map(|key| key.splitn(3, '.').take(2).collect::<Vec<_>>().join("."))
            .collect();
        roots.into_iter().collect()
    }

    /// Whether a tensor with this key exists.
    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The one float type every float tensor is stored in, or `None` when they differ, one
    /// is in f64, or there is none: how the folder was saved, which decides the type programs
    /// load it in by default ([`Precision::default_for`]). Integer tensors are ignored.
    pub fn stored_precision(&self) -> Option<Precision> {
        let mut found = None;
        for key in self.by_key.keys() {
            let (_, info) = self.locate(key).ok()?;
            let precision = match info.dtype {
                Dtype::F32 => Precision::F32,
                Dtype::BF16 => Precision::Bf16,
                Dtype::F16 => Precision::F16,
                Dtype::F64 => return None,
                _ => continue,
            };
            if found.is_some_and(|seen| seen != precision) {
                return None;
            }
            found = Some(precision);
        }
        found
    }

    /// Shape, dtype and file of a tensor, without reading its data.
    pub fn info(&self, key: &str) -> Result<WeightInfo, HfError> {
        let (file, info) = self.locate(key)?;
        Ok(WeightInfo {
            path: file.path.clone(),
            shape: info.shape.clone(),
            dtype: info.dtype.to_string(),
        })
    }

    /// Reads a floating-point tensor of exactly `shape` onto a device: `options` is a device
    /// (the tensor gets the device's default float type, f32) or a device with a dtype
    /// (`(&device, DType::BF16)`, [`Precision::on`](crate::Precision::on)); a tensor stored
    /// in that dtype is copied as it is, never through f32.
    /// A NaN or infinite value is refused ([`HfError::NonFinite`], naming the file, key and
    /// first such element): a corrupt or diverged checkpoint fails at load instead of giving
    /// garbage.
    pub fn float<B: Backend, const D: usize>(
        &self,
        key: &str,
        shape: [usize; D],
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Tensor<B, D>, HfError> {
        let data = self.read(key, &shape, FLOAT_DTYPES, float_dtype)?;
        Ok(Tensor::from_data(data, options))
    }

    /// Reads the linear layer stored under `prefix` into a trainable Burn [`Linear`]: its
    /// `{prefix}.weight` in PyTorch's `[d_out, d_in]` layout, turned into Burn's `[d_in, d_out]`,
    /// and `{prefix}.bias` (`[d_out]`) when `bias`.
    ///
    /// The transpose is materialised once here, so the weight is contiguous as a freshly
    /// initialised one is: a transposed view would be copied by every forward pass on CPU
    /// backends, and a saved and reloaded layer computes bit-identical outputs.
    pub fn linear<B: Backend>(
        &self,
        prefix: &str,
        [d_in, d_out]: [usize; 2],
        bias: bool,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Linear<B>, HfError> {
        let options = options.into();
        let weight =
            self.float::<B, 2>(&join_key(prefix, "weight"), [d_out, d_in], options.clone())?;
        let weight = Tensor::from_data(weight.transpose().into_data(), options.clone());
        let bias = match bias {
            true => Some(self.float::<B, 1>(&join_key(prefix, "bias"), [d_out], options)?),
            false => None,
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
        })
    }

    /// Reads a floating-point tensor of rank `D` whatever its sizes (reference outputs);
    /// `options` as in [`float`](Self::float).
    pub fn float_any<B: Backend, const D: usize>(
        &self,
        key: &str,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Tensor<B, D>, HfError> {
        let shape = self.shape_of_rank::<D>(key)?;
        self.float(key, shape, options)
    }

    /// Reads an integer tensor of rank `D` (token ids, masks), converted to the backend's int type.
    pub fn int<B: Backend, const D: usize>(
        &self,
        key: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, D, Int>, HfError> {
        let shape = self.shape_of_rank::<D>(key)?;
        let data = self.read(key, &shape, INT_DTYPES, int_dtype)?;
        Ok(Tensor::from_data(data, device))
    }

    fn shape_of_rank<const D: usize>(&self, key: &str) -> Result<[usize; D], HfError> {
        let (file, info) = self.locate(key)?;
        info.shape
            .clone()
            .try_into()
            .map_err(|actual: Vec<usize>| HfError::ShapeMismatch {
                key: key.to_string(),
                path: file.path.clone(),
                expected: vec![0; D],
                actual,
            })
    }

    fn read(
        &self,
        key: &str,
        shape: &[usize],
        expected: &'static str,
        to_burn: fn(Dtype) -> Option<DType>,
    ) -> Result<TensorData, HfError> {
        let (file, info) = self.locate(key)?;
        if info.shape != shape {
            return Err(HfError::ShapeMismatch {
                key: key.to_string(),
                path: file.path.clone(),
                expected: shape.to_vec(),
                actual: info.shape.clone(),
            });
        }
        let dtype = to_burn(info.dtype).ok_or_else(|| HfError::UnsupportedDtype {
            key: key.to_string(),
            path: file.path.clone(),
            actual: info.dtype.to_string(),
            expected,
        })?;
        let (start, end) = info.data_offsets;
        let range = file.data_start + start..file.data_start + end;
        let bytes = &file.mmap[range.clone()];
        if let Some((index, value)) = first_non_finite(bytes, info.dtype) {
            return Err(HfError::NonFinite {
                key: key.to_string(),
                path: file.path.clone(),
                index,
                value,
            });
        }
        let data = TensorData::from_bytes_vec(bytes.to_vec(), shape, dtype);
        file.release(range);
        Ok(data)
    }

    fn locate(
        &self,
        key: &str,
    ) -> Result<(&MappedFile, &safetensors::tensor::TensorInfo), HfError> {
        let missing = || HfError::MissingTensor {
            key: key.to_string(),
            source_name: self.origin.display().to_string(),
        };
        let file = &self.files[*self.by_key.get(key).ok_or_else(missing)?];
        let info = file.metadata.info(key).ok_or_else(missing)?;
        Ok((file, info))
    }
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self, HfError> {
        let io_error = |source| HfError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        // SAFETY: the map is read-only and private to this process; like every safetensors
        // reader we assume the file is not truncated by another process while it is loaded.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| HfError::Safetensors {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            metadata,
        })
    }

    /// Lets the OS drop the pages of `range` from this process once a tensor is copied out:
    /// without it every page read stays resident until the store is dropped, so loading a
    /// model peaks at its weights plus the whole file (in bf16, as much again). Each tensor is
    /// read once; a later read maps the pages in again from the page cache.
    #[cfg(unix)]
    fn release(&self, range: std::ops::Range<usize>) {
        // SAFETY: the map is private and read-only, and no slice of it outlives `read`, so
        // discarding its pages loses nothing: the next access reads the file again. The
        // advice is a hint; failing to apply it only keeps the pages resident.
        let _ = unsafe {
            self.mmap
                .unchecked_advise_range(UncheckedAdvice::DontNeed, range.start, range.len())
        };
    }

    #[cfg(not(unix))]
    fn release(&self, _range: std::ops::Range<usize>) {}
}

/// The first NaN or infinite element of little-endian `bytes` of a float `dtype`, with its
/// index; `None` for a finite tensor or a non-float dtype. One pass over the bytes.
fn first_non_finite(bytes: &[u8], dtype: Dtype) -> Option<(usize, f64)> {
    match dtype {
        Dtype::F32 => first_in(bytes, |b: [u8; 4]| f64::from(f32::from_le_bytes(b))),
        Dtype::F64 => first_in(bytes, f64::from_le_bytes),
        Dtype::F16 => first_in(bytes, |b| f64::from(half::f16::from_le_bytes(b))),
        Dtype::BF16 => first_in(bytes, |b| f64::from(half::bf16::from_le_bytes(b))),
        _ => None,
    }
}

fn first_in<const N: usize>(bytes: &[u8], value: impl Fn([u8; N]) -> f64) -> Option<(usize, f64)> {
    bytes
        .chunks_exact(N)
        .map(|chunk| value(chunk.try_into().unwrap_or([0; N])))
        .enumerate()
        .find(|(_, v)| !v.is_finite())
}

fn float_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F32 => Some(DType::F32),
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F64 => Some(DType::F64),
        _ => None,
    }
}

fn int_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::I64 => Some(DType::I64),
        Dtype::I32 => Some(DType::I32),
        Dtype::I16 => Some(DType::I16),
        Dtype::I8 => Some(DType::I8),
        Dtype::U8 => Some(DType::U8),
        _ => None,
    }
}
