//! Greedy generation against transformers' `generate()` (fixtures/generation).

mod common;

use common::{columns, load_model, rows};
use vlm_hf::WeightStore;
use vlm_qwen::{left_pad, GenerationConfig};
use vlm_testkit::{device, fixture, TestBackend};

struct GenerationReference {
    store: WeightStore,
    prompt_len: usize,
}

impl GenerationReference {
    fn open() -> Self {
        let store = WeightStore::open_file(fixture("generation").join("reference.safetensors"))
            .expect("generation reference");
        let ids = store
            .int::<TestBackend, 2>("input_ids", &device())
            .expect("ids");
        Self {
            prompt_len: ids.dims()[1],
            store,
        }
    }

    fn ints(&self, key: &str) -> Vec<Vec<u32>> {
        rows(&self.store.int::<TestBackend, 2>(key, &device()).expect(key))
    }

    fn scalar(&self, key: &str) -> u32 {
        let t = self.store.int::<TestBackend, 1>(key, &device()).expect(key);
        t.to_data().iter::<i64>().next().expect(key) as u32
    }

    /// The new tokens of `key` (`output_ids` or `output_ids_no_eos`).
    fn new_tokens(&self, key: &str) -> Vec<Vec<u32>> {
        let output = self.store.int::<TestBackend, 2>(key, &device()).expect(key);
        let [_, len] = output.dims();
        rows(&columns(&output, self.prompt_len..len))
    }

    fn config(&self, stop: bool, use_cache: bool) -> GenerationConfig {
        GenerationConfig {
            stop_token_ids: if stop {
                vec![self.scalar("eos_token_id")]
            } else {
                Vec::new()
            },
            pad_token_id: self.scalar("pad_token_id"),
            use_cache,
            ..GenerationConfig::greedy(self.scalar("max_new_tokens") as usize)
        }
    }
}

#[test]
fn greedy_generation_is_token_identical_to_transformers() {
    let model = load_model("qwen2_tied");
    let reference = GenerationReference::open();
    let dev = device();
    let ids = reference
        .store
        .int::<TestBackend, 2>("input_ids", &dev)
        .expect("ids");
    let mask = reference
        .store
        .int::<TestBackend, 2>("attention_mask", &dev)
        .expect("mask");
    for (stop, key) in [(true, "output_ids"), (false, "output_ids_no_eos")] {
        let expected = reference.new_tokens(key);
        for use_cache in [true, false] {
            let config = reference.config(stop, use_cache);
            let mut streamed: Vec<Vec<u32>> = vec![Vec::new(); expected.len()];
            let generated = model
                .generate(ids.clone(), Some(mask.clone()), &config, |step| {
                    for (row, &token) in step.iter().enumerate() {
                        streamed[row].push(token);
                    }
                })
                .expect("generate");
            assert_eq!(generated, expected, "{key}, use_cache {use_cache}");
            assert_eq!(
                streamed, expected,
                "callback tokens, {key}, use_cache {use_cache}"
            );
        }
    }
}

#[test]
fn left_pad_rebuilds_the_reference_batch() {
    let reference = GenerationReference::open();
    let pad = reference.scalar("pad_token_id");
    let ids = reference.ints("input_ids");
    let mask = reference.ints("attention_mask");
    let prompts: Vec<Vec<u32>> = ids
        .iter()
        .zip(&mask)
        .map(|(row, keep)| {
            row.iter()
                .zip(keep)
                .filter(|(_, &k)| k == 1)
                .map(|(&id, _)| id)
                .collect()
        })
        .collect();
    let batch = left_pad::<TestBackend>(&prompts, pad, &device()).expect("pad");
    assert_eq!(rows(&batch.input_ids), ids);
    assert_eq!(rows(&batch.attention_mask), mask);
}

#[test]
fn generation_from_unpadded_prompts_matches_the_batch() {
    // Each sample generated alone (no padding) gives the batched result, up to where the
    // batch pads a stopped sample.
    let model = load_model("qwen2_tied");
    let reference = GenerationReference::open();
    let expected = reference.new_tokens("output_ids_no_eos");
    let ids = reference.ints("input_ids");
    let mask = reference.ints("attention_mask");
    let config = reference.config(false, true);
    for (row, expected_row) in expected.iter().enumerate() {
        let prompt: Vec<u32> = ids[row]
            .iter()
            .zip(&mask[row])
            .filter(|(_, &k)| k == 1)
            .map(|(&id, _)| id)
            .collect();
        let batch = left_pad::<TestBackend>(&[prompt], 0, &device()).expect("pad");
        let generated = model
            .generate(batch.input_ids, None, &config, |_| {})
            .expect("generate");
        assert_eq!(&generated[0], expected_row, "sample {row} alone");
    }
}
