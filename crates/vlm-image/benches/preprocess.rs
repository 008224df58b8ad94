//! Preprocessing throughput: images per second through [`ImageProcessor::process_batch`] (JPEG
//! decode, CLIP preprocessing to 224 x 224) on all cores.
//!
//! `cargo bench -p vlm-image --bench preprocess`. The setup writes JPEGs of two sizes into a
//! temporary folder: 224 x 224 sources, and 640 x 480 ones (the usual COCO size, so decoding and
//! downscaling cost more). `vlm-data`'s `loader` bench runs a whole epoch of the data loader on
//! the same files: the difference is the loader's own cost (reading the manifest, tokenising,
//! ordering, collating).
//!
//! `single_core/*` decodes (and resizes to CLIP's 298 x 224 before the crop) the 640 x 480
//! photo-like Pillow JPEG of `tests/image_data/photo640.jpg` (baseline 4:2:0, quality 85) on
//! one thread: the per-core figure of BENCHMARKS.md's "Image decoding".

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vlm_hf::{PreprocessorConfig, Resample};
use vlm_image::{decode_image_bytes, resize, DecodeLimits, ImageProcessor};

#[path = "common/setup.rs"]
mod setup;

use setup::{loader_group, write_jpegs, IMAGES, SIZES};

fn preprocess(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = loader_group(c);
    let processor = ImageProcessor::new(PreprocessorConfig::clip_default());
    for (width, height) in SIZES {
        let paths: Vec<_> = write_jpegs(dir.path(), width, height)
            .into_iter()
            .map(|name| dir.path().join(name))
            .collect();
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

fn single_core(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/image_data/photo640.jpg");
    let bytes = std::fs::read(path).expect("photo640.jpg");
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("single_core");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode/jpeg_640x480", |b| {
        b.iter(|| decode_image_bytes(&bytes, path, &limits).expect("decode"))
    });
    group.bench_function("decode_resize/jpeg_640x480_to_298x224", |b| {
        b.iter(|| {
            let img = decode_image_bytes(&bytes, path, &limits).expect("decode");
            resize(&img, 298, 224, Resample::Bicubic)
        })
    });
    group.finish();
}

criterion_group!(benches, preprocess, single_core);
criterion_main!(benches);
