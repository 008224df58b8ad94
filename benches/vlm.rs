//! criterion benches of the figures of `benches/bench_config.json`: a LoRA training step
//! through `vlm-train`, the vision forward, the LLM prefill, per-token decoding with the KV
//! cache and image preprocessing, on models written as Hugging Face folders into a temporary
//! folder and loaded by the normal loaders.
//!
//! `cargo bench --bench vlm` (`-- decode` for one group). The PyTorch comparison is
//! `tools/bench/compare.py` (see `BENCHMARKS.md`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::config::{BenchConfig, CONFIG_FILE};
use common::figures::{
    decode_prompt, pixels, prefill_ids, InferenceModels, Preprocess, TrainBench,
};
use common::models::{write_models, ModelDirs};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vlm::backend::{Inference, Train};

/// The config, and the model folders written into a temporary folder kept for the run.
struct Setup {
    config: BenchConfig,
    dirs: ModelDirs,
    root: &'static Path,
    _scratch: tempfile::TempDir,
}

fn setup() -> Setup {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = BenchConfig::read(&root.join(CONFIG_FILE)).expect("the bench config");
    let scratch = tempfile::tempdir().expect("a temporary folder");
    let dirs = write_models(&config, scratch.path()).expect("the model folders");
    Setup {
        config,
        dirs,
        root,
        _scratch: scratch,
    }
}

fn train_step(c: &mut Criterion, s: &Setup) {
    let out = tempfile::tempdir().expect("a temporary folder");
    let mut bench =
        TrainBench::<Train>::new(&s.config, &s.dirs, out.path(), false).expect("the VLM");
    c.bench_function("train_step", |b| {
        b.iter_custom(|iters| {
            let steps = bench.steps(iters as usize).expect("training steps");
            Duration::from_secs_f64(steps.iter().sum())
        })
    });
}

fn inference(c: &mut Criterion, s: &Setup) {
    let models = InferenceModels::load(&s.dirs).expect("the models");
    let images = pixels::<Inference>(&s.config, s.config.figures.vision_batch);
    c.bench_function("vision_forward", |b| {
        b.iter(|| models.vision_forward(images.clone()).expect("features"))
    });
    let ids = prefill_ids(&s.config);
    c.bench_function("prefill", |b| {
        b.iter(|| models.prefill(ids.clone()).expect("prefill"))
    });
    let mut group = c.benchmark_group("decode");
    for &batch in &s.config.figures.decode_batches {
        let prompt = decode_prompt(&s.config, batch);
        let warm_up = s.config.figures.decode_new_tokens;
        models.decode(&prompt, warm_up).expect("decoding");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("b{batch}"), |b| {
            b.iter_custom(|iters| {
                let seconds = models.decode(&prompt, iters as usize).expect("decoding");
                Duration::from_secs_f64(seconds)
            })
        });
    }
    group.finish();
}

fn preprocess(c: &mut Criterion, s: &Setup) {
    let preprocess = Preprocess::new(&s.config, &s.dirs, s.root).expect("the images");
    let mut group = c.benchmark_group("preprocess");
    let repeats = s.config.figures.preprocess_repeats;
    let images = repeats * s.config.figures.preprocess_images.len();
    group.throughput(Throughput::Elements(images as u64));
    group.bench_function("images", |b| {
        b.iter(|| preprocess.run(repeats).expect("preprocessing"))
    });
    group.finish();
}

fn figures(c: &mut Criterion) {
    let s = setup();
    train_step(c, &s);
    inference(c, &s);
    preprocess(c, &s);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = figures
}
criterion_main!(benches);
