//! Continuous batching against decoding each prompt alone: sequences of different lengths
//! join a running batch at different steps and leave when they end, and every sequence gets
//! the tokens it gets alone.

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData};
use common::load_model;
use vlm_qwen::{
    decode, ContinuousBatch, Decoder, FinishReason, Finished, GenerationConfig, Prompt, QwenModel,
};
use vlm_testkit::{device, TestBackend};

type B = TestBackend;

/// Prompts of different lengths, each with its own `max_new_tokens`.
const PROMPTS: [(&[u32], usize); 5] = [
    (&[5, 9, 2], 6),
    (&[7, 1, 4, 4, 8, 3, 6, 2], 9),
    (&[11], 4),
    (&[3, 3, 10, 2, 9, 1, 5, 7, 7, 12, 4, 6], 12),
    (&[6, 2, 8, 1, 9], 8),
];

fn prompt(model: &QwenModel<B>, ids: &[u32]) -> Prompt<B> {
    let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let len = ids.len();
    let ids = Tensor::from_data(TensorData::new(ids, [1, len]), &device());
    let embeds = model.embed(ids.clone()).expect("embed");
    Prompt::new(embeds, &ids, Tensor::ones([1, len], &device()))
}

fn config(max_new_tokens: usize, stop_token_ids: &[u32]) -> GenerationConfig {
    GenerationConfig {
        stop_token_ids: stop_token_ids.to_vec(),
        ..GenerationConfig::greedy(max_new_tokens)
    }
}

/// The tokens of `ids` decoded alone, as `QwenModel::generate` does.
fn alone(model: &QwenModel<B>, ids: &[u32], config: &GenerationConfig) -> Vec<u32> {
    let mut decoder = Decoder::new(model, true);
    let tokens = decode(&mut decoder, prompt(model, ids), config, |_| {
        ControlFlow::Continue(())
    });
    tokens.expect("decode alone").remove(0)
}

/// Every prompt through one batch: prompts 0 and 1 first, 2 after one step, 3 and 4 after
/// three; `interrupt_after` ends sequence 1 from its callback after that many tokens.
fn batched(
    model: &QwenModel<B>,
    stop_token_ids: &[u32],
    interrupt_after: Option<usize>,
) -> (Vec<Vec<u32>>, Vec<Finished<usize>>) {
    let mut tokens = vec![Vec::new(); PROMPTS.len()];
    let mut finished = Vec::new();
    let mut on_token = |tag: &mut usize, token: u32| {
        tokens[*tag].push(token);
        match (*tag, interrupt_after) {
            (1, Some(after)) if tokens[1].len() == after => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    };
    let mut batch = ContinuousBatch::new(model);
    let joins_before_step = [vec![0, 1], vec![2], vec![], vec![3, 4]];
    for step in 0.. {
        for &index in joins_before_step.get(step).into_iter().flatten() {
            let (ids, max_new_tokens) = PROMPTS[index];
            let config = config(max_new_tokens, stop_token_ids);
            let ended = batch.join(prompt(model, ids), &config, index, &mut on_token);
            finished.extend(ended.expect("join"));
        }
        if batch.is_empty() && step >= joins_before_step.len() {
            break;
        }
        finished.extend(batch.step(&mut on_token).expect("step"));
    }
    (tokens, finished)
}

#[test]
fn greedy_batched_tokens_equal_each_prompt_decoded_alone() {
    for name in ["qwen2_tied", "qwen3", "qwen_v1"] {
        let model = load_model(name);
        let expected: Vec<Vec<u32>> = PROMPTS
            .iter()
            .map(|&(ids, max)| alone(&model, ids, &config(max, &[])))
            .collect();
        let (tokens, finished) = batched(&model, &[], None);
        assert_eq!(tokens, expected, "{name}");
        assert!(finished.iter().all(|f| f.reason == FinishReason::Length));
        assert_eq!(finished.len(), PROMPTS.len(), "{name}: every sequence left");
    }
}

#[test]
fn sequences_leave_on_their_stop_token_while_the_others_go_on() {
    let model = load_model("qwen2_tied");
    // A token the longest answer emits midway stops whichever sequence emits it.
    let longest = alone(&model, PROMPTS[3].0, &config(PROMPTS[3].1, &[]));
    let stop = [longest[4]];
    let expected: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|&(ids, max)| alone(&model, ids, &config(max, &stop)))
        .collect();
    let (tokens, finished) = batched(&model, &stop, None);
    assert_eq!(tokens, expected);
    let stopped = finished
        .iter()
        .find(|f| f.tag == 3)
        .expect("sequence 3 ended");
    assert_eq!(stopped.reason, FinishReason::StopToken);
}

#[test]
fn an_interrupted_sequence_leaves_and_the_others_are_unchanged() {
    let model = load_model("qwen3");
    let expected: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|&(ids, max)| alone(&model, ids, &config(max, &[])))
        .collect();
    let (tokens, finished) = batched(&model, &[], Some(2));
    assert_eq!(tokens[1], expected[1][..2]);
    for index in [0, 2, 3, 4] {
        assert_eq!(tokens[index], expected[index], "sequence {index}");
    }
    let interrupted = finished.iter().find(|f| f.tag == 1).expect("ended");
    assert_eq!(interrupted.reason, FinishReason::Interrupted);
}

#[test]
fn settings_are_checked_before_a_sequence_joins() {
    let model = load_model("qwen2_tied");
    let mut batch = ContinuousBatch::new(&model);
    let uncached = GenerationConfig {
        use_cache: false,
        ..GenerationConfig::greedy(3)
    };
    let continue_ = |_: &mut u8, _| ControlFlow::Continue(());
    assert!(batch
        .join(prompt(&model, &[1, 2]), &uncached, 0, continue_)
        .is_err());
    let none = batch.join(prompt(&model, &[1, 2]), &config(0, &[]), 7, continue_);
    let ended = none.expect("no token asked for").expect("ended at once");
    assert_eq!((ended.tag, ended.reason), (7, FinishReason::Length));
    assert!(batch.is_empty());
}
