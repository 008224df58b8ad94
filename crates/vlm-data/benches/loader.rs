//! Data loader throughput: images per second through [`Dataset`] (JPEG decode, CLIP
//! preprocessing to 224 x 224, ChatML encoding, collation) on all cores.
//!
//! `cargo bench -p vlm-data --bench loader`. The setup writes JPEGs of two sizes into a
//! temporary folder with the `image` crate's encoder: 224 x 224 sources, and 640 x 480 ones (the
//! usual COCO size, so decoding and downscaling cost more). `preprocess_only` runs
//! [`ImageProcessor::process_batch`] on the same files: the difference to `epoch` is the
//! loader's own cost (reading the manifest, tokenising, ordering, collating).

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use vlm_data::image::ImageProcessor;
use vlm_data::{
    ChatTemplate, Conversation, Dataset, EncoderConfig, LoaderOptions, SampleEncoder, Tokenizer,
    Turn,
};
use vlm_hf::PreprocessorConfig;

const IMAGES: usize = 64;
const BATCH: usize = 16;

/// A photo-like test pattern: smooth gradients plus deterministic noise.
fn pattern(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 24) as i32 - 12
    };
    let mut out = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let fx = x as f32 / width as f32;
            let fy = y as f32 / height as f32;
            let base = [
                128.0 + 100.0 * (6.0 * fx + seed as f32).sin(),
                128.0 + 100.0 * (5.0 * fy).cos(),
                128.0 + 90.0 * (4.0 * (fx + fy)).sin(),
            ];
            out.extend(base.map(|v| (v as i32 + noise()).clamp(0, 255) as u8));
        }
    }
    out
}

/// Writes `IMAGES` JPEGs of `width` x `height` and a manifest over them; returns the manifest.
fn write_dataset(dir: &Path, width: u32, height: u32) -> PathBuf {
    let mut lines = Vec::new();
    for i in 0..IMAGES {
        let name = format!("{width}x{height}_{i}.jpg");
        let file = std::fs::File::create(dir.join(&name)).expect("create jpeg");
        JpegEncoder::new_with_quality(file, 90)
            .write_image(
                &pattern(width, height, i as u32),
                width,
                height,
                ExtendedColorType::Rgb8,
            )
            .expect("encode jpeg");
        let conv = Conversation {
            id: format!("{i}"),
            image: Some(name.into()),
            turns: vec![
                Turn::user("<image>\n请描述这张图片。"),
                Turn::assistant("图片中有彩色的渐变和细小的噪点。"),
            ],
        };
        lines.push(serde_json::to_string(&conv).expect("json"));
    }
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
    let mut group = c.benchmark_group("loader");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(IMAGES as u64));
    for (width, height) in [(224, 224), (640, 480)] {
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
        let paths: Vec<PathBuf> = (0..IMAGES)
            .map(|i| dir.path().join(format!("{width}x{height}_{i}.jpg")))
            .collect();
        let processor = ImageProcessor::new(PreprocessorConfig::clip_default());
        group.bench_function(
            format!("preprocess_only/jpeg_{width}x{height}_to_224"),
            |b| {
                b.iter(|| {
                    let ok = processor
                        .process_batch(&paths)
                        .iter()
                        .filter(|r| r.is_ok())
                        .count();
                    assert_eq!(ok, IMAGES);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, loader);
criterion_main!(benches);
