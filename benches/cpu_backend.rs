//! Which CPU backend is the default: NdArray vs Flex on a matmul-heavy transformer-sized
//! forward, and on a forward + backward step.
//!
//! `cargo bench --bench cpu_backend --features ndarray` (the README records the figures).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::{activation::gelu, backend::Backend, Distribution, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};

/// Rows = batch 4 x 260 tokens; widths of the bench config's Qwen2-like LLM MLP.
const ROWS: usize = 4 * 260;
const HIDDEN: usize = 512;
const INTERMEDIATE: usize = 1408;
const LAYERS: usize = 4;

struct Weights<B: Backend> {
    up: Vec<Tensor<B, 2>>,
    down: Vec<Tensor<B, 2>>,
}

fn weights<B: Backend>(device: &B::Device) -> Weights<B> {
    let init = |rows, cols| Tensor::random([rows, cols], Distribution::Normal(0.0, 0.02), device);
    Weights {
        up: (0..LAYERS).map(|_| init(HIDDEN, INTERMEDIATE)).collect(),
        down: (0..LAYERS).map(|_| init(INTERMEDIATE, HIDDEN)).collect(),
    }
}

fn forward<B: Backend>(x: Tensor<B, 2>, w: &Weights<B>) -> Tensor<B, 2> {
    w.up.iter().zip(&w.down).fold(x, |x, (up, down)| {
        x.clone() + gelu(x.matmul(up.clone())).matmul(down.clone())
    })
}

fn bench_backend<B: Backend>(c: &mut Criterion, name: &str) {
    let device = B::Device::default();
    let w = weights::<B>(&device);
    let x = Tensor::<B, 2>::random([ROWS, HIDDEN], Distribution::Default, &device);
    c.bench_function(&format!("mlp_forward/{name}"), |b| {
        b.iter(|| forward(x.clone(), &w).into_data())
    });
}

fn bench_train_step<B: burn::tensor::backend::AutodiffBackend>(c: &mut Criterion, name: &str) {
    let device = B::Device::default();
    let w = weights::<B>(&device);
    let w = Weights {
        up: w.up.into_iter().map(Tensor::require_grad).collect(),
        down: w.down.into_iter().map(Tensor::require_grad).collect(),
    };
    let x = Tensor::<B, 2>::random([ROWS, HIDDEN], Distribution::Default, &device);
    c.bench_function(&format!("mlp_forward_backward/{name}"), |b| {
        b.iter(|| {
            let grads = forward(x.clone(), &w).powi_scalar(2).mean().backward();
            w.up[0].grad(&grads).map(|g| g.into_data())
        })
    });
}

fn cpu_backends(c: &mut Criterion) {
    bench_backend::<NdArray>(c, "ndarray");
    bench_backend::<Flex>(c, "flex");
    bench_train_step::<Autodiff<NdArray>>(c, "ndarray");
    bench_train_step::<Autodiff<Flex>>(c, "flex");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = cpu_backends
}
criterion_main!(benches);
