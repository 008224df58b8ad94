//! With the `wgpu` feature: the adapter the tests run on (printed, and checked against
//! `VLM_TEST_WGPU_ADAPTER` when set), and a matmul, softmax and gradient on it against the CPU
//! backend, so that a broken device fails here first, before the model tests.
#![cfg(feature = "wgpu")]

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Tensor, TensorData};
use vlm_testkit::{assert_close, device, wgpu_adapter, TestBackend};

#[test]
fn adapter_runs_kernels_like_the_cpu() {
    let adapter = wgpu_adapter();
    println!("wgpu adapter: {adapter}");

    let cpu = Default::default();
    let a = Tensor::<Flex<f32>, 2>::random([33, 70], Distribution::Normal(0.0, 1.0), &cpu);
    let b = Tensor::<Flex<f32>, 2>::random([70, 17], Distribution::Normal(0.0, 1.0), &cpu);
    let expected = softmax(a.clone().matmul(b.clone()), 1);
    let expected_grad = {
        let a = Tensor::<Autodiff<Flex<f32>>, 2>::from_data(a.to_data(), &cpu).require_grad();
        let b = Tensor::<Autodiff<Flex<f32>>, 2>::from_data(b.to_data(), &cpu);
        let grads = (a.clone().matmul(b).tanh().sum()).backward();
        a.grad(&grads).expect("gradient of a").into_data()
    };

    let gpu = |data: TensorData| Tensor::<TestBackend, 2>::from_data(data, &device());
    let actual = softmax(gpu(a.to_data()).matmul(gpu(b.to_data())), 1);
    assert_close("softmax(a @ b)", &actual, &gpu(expected.into_data()), 1e-5);

    let a = Tensor::<Autodiff<TestBackend>, 2>::from_data(a.into_data(), &device()).require_grad();
    let b = Tensor::<Autodiff<TestBackend>, 2>::from_data(b.into_data(), &device());
    let grads = (a.clone().matmul(b).tanh().sum()).backward();
    let grad = gpu(a.grad(&grads).expect("gradient of a").into_data());
    assert_close("d sum(tanh(a @ b)) / da", &grad, &gpu(expected_grad), 1e-5);
}
