//! Data loader throughput: images per second through [`Dataset`] (JPEG decode, CLIP
//! preprocessing to 224 x 224, ChatML encoding, collation) on all cores.
//!
//! `cargo bench -p vlm-data --bench loader`. The setup writes JPEGs of two sizes into a
//! temporary folder with `vlm-image`'s bench helper: 224 x 224 sources, and 640 x 480 ones (the
//! usual COCO size, so decoding and downscaling cost more). `vlm-image`'s `preprocess` bench
//! runs [`ImageProcessor::process_batch`] alone on the same files: the difference to `epoch` is
//! the loader's own cost (reading the manifest, tokenising, ordering, collating).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use vlm_data::{
    ChatTemplate, Conversation, Dataset, EncoderConfig, LoaderOptions, SampleEncoder, Tokenizer,
    Turn,
};
use vlm_hf::PreprocessorConfig;
use vlm_image::ImageProcessor;

#[path = "../../vlm-image/benches/common/setup.rs"]
mod setup;

use setup::{loader_group, write_jpegs, IMAGES, SIZES};

const BATCH: usize = 16;

/// Writes `IMAGES` JPEGs of `width` x `height` and a manifest over them; returns the manifest.
fn write_dataset(dir: &Path, width: u32, height: u32) -> PathBuf {
    let lines: Vec<String> = write_jpegs(dir, width, height)
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let conv = Conversation {
                id: format!("{i}"),
                image: Some(name),
                turns: vec![
                    Turn::user("<image>\n请描述这张图片。"),
                    Turn::assistant("图片中有彩色的渐变和细小的噪点。"),
                ],
            };
            serde_json::to_string(&conv).expect("json")
        })
        .collect();
    let manifest = dir.join(format!("{width}x{height}.jsonl"));
    std::fs::write(&manifest, lines.join("\n")).expect("write manifest");
    manifest
}

fn dataset(dir: &Path, manifest: &Path) -> Dataset {
    let tokenizer_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tokenizer/qwen2");
    let tokenizer = Tokenizer::from_model_dir(tokenizer_dir).expect("tokenizer");
    let config = EncoderConfig::new(256, 1024);
    let encoder = SampleEncoder::new(tokenizer, ChatTemplate::default(), config).expect("encoder");
    let images = ImageProcessor::new(PreprocessorConfig::clip_default());
    Dataset::open(manifest, dir, encoder, images, LoaderOptions::new(BATCH)).expect("dataset")
}

fn loader(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = loader_group(c);
    for (width, height) in SIZES {
        let manifest = write_dataset(dir.path(), width, height);
        let data = dataset(dir.path(), &manifest);
        let mut epoch = 0;
        group.bench_function(format!("epoch/jpeg_{width}x{height}_to_224"), |b| {
            b.iter(|| {
                epoch += 1;
                let images: usize = data
                    .epoch(epoch)
                    .map(|batch| batch.expect("batch").batch.n_images())
                    .sum();
                assert_eq!(images, IMAGES);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, loader);
criterion_main!(benches);
