//! Sharded safetensors as transformers' `save_pretrained(max_shard_size=...)` writes them:
//! `model-00001-of-0000N.safetensors` files of at most a given size and
//! `model.safetensors.index.json` mapping every tensor to its file (what
//! [`WeightStore::open_dir`](crate::WeightStore::open_dir) reads); a model that fits one shard
//! is one plain `model.safetensors`, without index.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::DType;
use safetensors::View;
use serde::Serialize;

use crate::weights::{SHARD_INDEX, SINGLE_FILE};
use crate::write::{stored_dtype, LazyTensor};
use crate::{write_json, HfError, SafetensorsWriter};

/// `model.safetensors.index.json`.
#[derive(Serialize)]
struct ShardIndex {
    metadata: IndexMetadata,
    weight_map: BTreeMap<String, String>,
}

/// The index's `metadata`: the bytes of all tensors together.
#[derive(Serialize)]
struct IndexMetadata {
    total_size: u64,
}

impl SafetensorsWriter {
    /// The same tensors, each converted to the float `dtype` when it is written (f32, f16,
    /// bf16 or f64; any other is f32).
    pub fn cast(self, dtype: DType) -> Self {
        let (stored, target) = stored_dtype(dtype);
        let tensors = self
            .tensors
            .into_iter()
            .map(|(name, tensor)| {
                let fetch = tensor.fetch;
                let cast = LazyTensor {
                    dtype: stored,
                    shape: tensor.shape,
                    fetch: Box::new(move || fetch().convert_dtype(target)),
                };
                (name, cast)
            })
            .collect();
        Self { tensors }
    }

    /// Writes the tensors into the folder `dir` (which must exist) as shards of at most
    /// `max_shard_bytes` each, in the order they were added (a tensor larger than that gets
    /// a shard of its own), with `model.safetensors.index.json`; when everything fits one
    /// shard, as one `model.safetensors`. Each file is written atomically. Returns the
    /// number of shards.
    pub fn write_sharded(self, dir: &Path, max_shard_bytes: u64) -> Result<usize, HfError> {
        let shards = split(self.tensors, max_shard_bytes);
        let count = shards.len();
        if count <= 1 {
            let tensors = shards.into_iter().flatten().collect();
            Self { tensors }.write(&dir.join(SINGLE_FILE))?;
            return Ok(1);
        }
        let mut weight_map = BTreeMap::new();
        let mut total_size = 0;
        for (index, tensors) in shards.into_iter().enumerate() {
            let file = format!("model-{:05}-of-{count:05}.safetensors", index + 1);
            for (name, tensor) in &tensors {
                total_size += tensor.data_len() as u64;
                weight_map.insert(name.clone(), file.clone());
            }
            Self { tensors }.write(&dir.join(&file))?;
        }
        let index = ShardIndex {
            metadata: IndexMetadata { total_size },
            weight_map,
        };
        write_json(&dir.join(SHARD_INDEX), &index)?;
        Ok(count)
    }
}

/// `tensors` cut, in order, into runs of at most `max_bytes` (at least one tensor each).
fn split(tensors: Vec<(String, LazyTensor)>, max_bytes: u64) -> Vec<Vec<(String, LazyTensor)>> {
    let mut shards: Vec<Vec<(String, LazyTensor)>> = Vec::new();
    let mut current_bytes = 0;
    for (name, tensor) in tensors {
        let bytes = tensor.data_len() as u64;
        match shards.last_mut() {
            Some(shard) if current_bytes + bytes <= max_bytes => {
                current_bytes += bytes;
                shard.push((name, tensor));
            }
            _ => {
                current_bytes = bytes;
                shards.push(vec![(name, tensor)]);
            }
        }
    }
    shards
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::WeightStore;

    /// Three f32 tensors of 4, 4 and 8 values (16, 16 and 32 bytes).
    fn writer() -> SafetensorsWriter {
        let mut writer = SafetensorsWriter::new();
        for (name, len) in [("a", 4), ("b", 4), ("c", 8)] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            writer.add_data(name, TensorData::new(values, [len]));
        }
        writer
    }

    #[test]
    fn tensors_fill_shards_in_order_and_the_index_maps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(writer().write_sharded(dir.path(), 32).expect("write"), 2);
        assert!(!dir.path().join(SINGLE_FILE).exists());
        let index: serde_json::Value =
            crate::read_config(dir.path().join(SHARD_INDEX)).expect("index");
        assert_eq!(index["metadata"]["total_size"], 64);
        assert_eq!(index["weight_map"]["a"], "model-00001-of-00002.safetensors");
        assert_eq!(index["weight_map"]["b"], "model-00001-of-00002.safetensors");
        assert_eq!(index["weight_map"]["c"], "model-00002-of-00002.safetensors");
        let store = WeightStore::open_dir(dir.path()).expect("read back");
        assert_eq!(store.info("c").expect("c").shape, vec![8]);
    }

    #[test]
    fn one_shard_is_a_plain_file_and_cast_converts_every_tensor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = writer()
            .cast(DType::BF16)
            .write_sharded(dir.path(), 1 << 20);
        assert_eq!(written.expect("write"), 1);
        assert!(!dir.path().join(SHARD_INDEX).exists());
        let store = WeightStore::open_dir(dir.path()).expect("read back");
        for key in ["a", "b", "c"] {
            assert_eq!(store.info(key).expect(key).dtype, "BF16");
        }
    }
}
