//! How a LoRA linear should compute its output: PEFT's factored `base(x) + B(A(x)) * s`
//! (what `LoraLinear` does) against the dense `x (W + s A B)` that forms the adapted weight
//! on every forward. A `512 -> 1408` linear with `r = 8` on `1040 x 512` activations (the
//! bench config's MLP shape), forward (Flex) and forward + backward (`Autodiff<Flex>`).
//!
//! `cargo bench -p vlm-lora --bench lora_forward` (the crate docs record the figures). The
//! four variants run interleaved, round after round, so that load from other processes on a
//! shared machine hits them alike; the medians and their ratio are printed.

use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn::module::Param;
use burn::nn::LinearConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Tensor};
use vlm_lora::{LoraAdapter, LoraLinear};
use vlm_testkit::TestBackend;

const ROWS: usize = 4 * 260;
const D_IN: usize = 512;
const D_OUT: usize = 1408;
const RANK: usize = 8;
const SCALING: f64 = 2.0;

/// A frozen base with a non-zero adapter (B random, so both A and B get gradients).
fn layer<B: Backend>(device: &B::Device) -> LoraLinear<B> {
    let mut base = LinearConfig::new(D_IN, D_OUT).init(device);
    base.weight = base.weight.set_require_grad(false);
    base.bias = base.bias.map(|b| b.set_require_grad(false));
    let a = Tensor::random([RANK, D_IN], Distribution::Default, device);
    let b = Tensor::random([D_OUT, RANK], Distribution::Default, device);
    LoraLinear::new(base).with_adapter(LoraAdapter::from_peft(a, b, SCALING, 0.0))
}

/// The dense alternative: `x (W + s A B) + bias`.
fn dense<B: Backend>(layer: &LoraLinear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let adapter = layer.adapter.as_ref().expect("adapter");
    let delta = adapter.lora_a.val().matmul(adapter.lora_b.val());
    let weight = layer.base.weight.val() + delta.mul_scalar(SCALING);
    linear(x, weight, layer.base.bias.as_ref().map(Param::val))
}

/// Loss `mean(y^2)`, backward, and the adapter gradients read back.
fn step<B: AutodiffBackend>(layer: &LoraLinear<B>, y: Tensor<B, 2>) -> usize {
    let grads = y.powi_scalar(2).mean().backward();
    let adapter = layer.adapter.as_ref().expect("adapter");
    let a = adapter.lora_a.grad(&grads).expect("grad A").into_data();
    let b = adapter.lora_b.grad(&grads).expect("grad B").into_data();
    a.num_elements() + b.num_elements()
}

/// A named measurement; returns something derived from its result so nothing is elided.
type Variant<'a> = (&'static str, Box<dyn FnMut() -> usize + 'a>);

const WARMUP_ROUNDS: usize = 5;
const ROUNDS: usize = 40;

fn timed(run: &mut dyn FnMut() -> usize) -> Duration {
    let start = Instant::now();
    std::hint::black_box(run());
    start.elapsed()
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    type Train = Autodiff<TestBackend>;
    let device = Default::default();
    let plain = layer::<TestBackend>(&device);
    let x = Tensor::<TestBackend, 2>::random([ROWS, D_IN], Distribution::Default, &device);
    let train_layer = layer::<Train>(&device);
    let train_x = Tensor::<Train, 2>::random([ROWS, D_IN], Distribution::Default, &device);
    let mut variants: Vec<Variant> = vec![
        (
            "forward/factored",
            Box::new(|| plain.forward(x.clone()).into_data().num_elements()),
        ),
        (
            "forward/dense",
            Box::new(|| dense(&plain, x.clone()).into_data().num_elements()),
        ),
        (
            "forward_backward/factored",
            Box::new(|| step(&train_layer, train_layer.forward(train_x.clone()))),
        ),
        (
            "forward_backward/dense",
            Box::new(|| step(&train_layer, dense(&train_layer, train_x.clone()))),
        ),
    ];
    let mut times = vec![Vec::new(); variants.len()];
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        for k in 0..variants.len() {
            let index = (round + k) % variants.len();
            let elapsed = timed(&mut variants[index].1);
            if round >= WARMUP_ROUNDS {
                times[index].push(elapsed);
            }
        }
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| median_ms(t)).collect();
    for ((name, _), median) in variants.iter().zip(&medians) {
        println!("lora_{name}: median {median:.2} ms over {ROUNDS} rounds");
    }
    println!(
        "dense / factored: forward {:.2}, forward + backward {:.2}",
        medians[1] / medians[0],
        medians[3] / medians[2]
    );
}
