//! The KV cache's preallocated buffers: decoding past their first capacity (and past a
//! doubling) and decoding on from a clone give the logits of a full forward pass.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::load_model;
use vlm_testkit::{assert_close, device, TestBackend};

/// Prompt tokens, then decode steps: 8 + 200 positions cross the first capacity (8 + 64) and
/// its doubling (144).
const PROMPT: usize = 8;
const STEPS: usize = 200;

fn ids(len: usize, vocab: usize) -> Tensor<TestBackend, 2, Int> {
    let ids: Vec<i64> = (0..len).map(|i| ((i * 37 + 11) % vocab) as i64).collect();
    Tensor::from_data(TensorData::new(ids, [1, len]), &device())
}

fn columns(
    ids: &Tensor<TestBackend, 2, Int>,
    range: std::ops::Range<usize>,
) -> Tensor<TestBackend, 2, Int> {
    ids.clone().slice([0..1, range])
}

#[test]
fn decoding_across_buffer_growth_equals_full_forward() {
    let model = load_model("qwen2_tied");
    let all = ids(PROMPT + STEPS, model.config().vocab_size);
    let full = model
        .forward(all.clone(), None, None, None)
        .expect("full forward");
    let mut cache = model.new_cache();
    let mut pieces = vec![model
        .forward(columns(&all, 0..PROMPT), None, None, Some(&mut cache))
        .expect("prefill")];
    let mut forked = None;
    for step in PROMPT..PROMPT + STEPS {
        if step == PROMPT + 100 {
            forked = Some((cache.clone(), pieces.len()));
        }
        let logits = model
            .forward(columns(&all, step..step + 1), None, None, Some(&mut cache))
            .expect("decode step");
        pieces.push(logits);
    }
    assert_eq!(cache.len(), PROMPT + STEPS);
    assert_close(
        "cached decode vs full",
        &Tensor::cat(pieces.clone(), 1),
        &full,
        1e-4,
    );

    // A clone taken mid-way decodes on independently of the original.
    let (mut fork, kept) = forked.expect("forked mid-way");
    let step = PROMPT + 100;
    let again = model
        .forward(columns(&all, step..step + 1), None, None, Some(&mut fork))
        .expect("decode from the clone");
    assert_close("decode from a clone", &again, &pieces[kept], 1e-4);
}
