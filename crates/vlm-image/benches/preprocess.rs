//! Preprocessing throughput: images per second through [`ImageProcessor::process_batch`] (JPEG
//! decode, CLIP preprocessing to 224 x 224) on all cores.
//!
//! `cargo bench -p vlm-image --bench preprocess`. The setup writes JPEGs of two sizes into a
//! temporary folder: 224 x 224 sources, and 640 x 480 ones (the usual COCO size, so decoding and
//! downscaling cost more). `vlm-data`'s `loader` bench runs a whole epoch of the data loader on
//! the same files: the difference is the loader's own cost (reading the manifest, tokenising,
//! ordering, collating).

use criterion::{criterion_group, criterion_main, Criterion};
use vlm_hf::PreprocessorConfig;
use vlm_image::ImageProcessor;

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

criterion_group!(benches, preprocess);
criterion_main!(benches);
