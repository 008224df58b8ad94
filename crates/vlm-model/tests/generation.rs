//! Generation with an image on the llava fixture: the cached decode matches a step-by-step
//! argmax over full forward passes, stop tokens end a sequence, and a chat session that
//! keeps its cache across turns continues exactly as a fresh run over the whole history.

mod common;

use burn::tensor::{Int, Tensor};
use common::{ids_tensor, rows, Llava};
use vlm_model::{ModelError, VlmBatch};
use vlm_qwen::{GenerationConfig, QwenError};
use vlm_testkit::TestBackend;

/// The llava reference prompts without their answers: sample 0 keeps 22 tokens (2 prompt,
/// 16 image, 4 prompt), sample 1 keeps 26 (5 pads, 4 prompt, 16 image, 1 prompt); both are
/// left-padded to 26.
fn prompts(llava: &Llava) -> VlmBatch<TestBackend> {
    let ids = rows(&llava.ids("input_ids"));
    let mask = rows(&llava.ids("attention_mask"));
    let pad = |row: &[i64], keep: usize| {
        let mut padded = vec![0; 26 - keep];
        padded.extend(&row[..keep]);
        padded
    };
    VlmBatch {
        input_ids: ids_tensor(&[pad(&ids[0], 22), pad(&ids[1], 26)]),
        attention_mask: Some(ids_tensor(&[pad(&mask[0], 22), pad(&mask[1], 26)])),
        pixel_values: Some(llava.float("pixel_values")),
    }
}

/// Greedy decoding by full forward passes over the growing sequence.
fn argmax_by_full_forward(llava: &Llava, steps: usize) -> Vec<Vec<u32>> {
    let prompt = prompts(llava);
    let mut ids = rows(&prompt.input_ids);
    let mut mask = rows(prompt.attention_mask.as_ref().expect("mask"));
    for _ in 0..steps {
        let batch = VlmBatch {
            input_ids: ids_tensor(&ids),
            attention_mask: Some(ids_tensor(&mask)),
            pixel_values: prompt.pixel_values.clone(),
        };
        let logits = llava.model.forward(batch).expect("forward");
        let [batch, len, vocab] = logits.dims();
        let next: Tensor<TestBackend, 2, Int> = logits
            .slice([0..batch, len - 1..len, 0..vocab])
            .argmax(2)
            .reshape([batch, 1]);
        for (row, token) in rows(&next).into_iter().enumerate() {
            ids[row].push(token[0]);
            mask[row].push(1);
        }
    }
    ids.iter()
        .map(|row| row[26..].iter().map(|&id| id as u32).collect())
        .collect()
}

#[test]
fn cached_generation_matches_full_forward_argmax() {
    let llava = Llava::load("llava");
    let expected = argmax_by_full_forward(&llava, 6);
    let mut streamed = vec![Vec::new(); 2];
    let generated = llava
        .model
        .generate(prompts(&llava), &GenerationConfig::greedy(6), |tokens| {
            for (row, &token) in tokens.iter().enumerate() {
                streamed[row].push(token);
            }
        })
        .expect("generate");
    assert_eq!(generated, expected);
    assert_eq!(streamed, expected, "the callback saw every token");
}

#[test]
fn a_stop_token_ends_its_sequence() {
    let llava = Llava::load("llava");
    let free = llava
        .model
        .generate(prompts(&llava), &GenerationConfig::greedy(5), |_| {})
        .expect("generate");
    let stop = free[1][0];
    let config = GenerationConfig {
        stop_token_ids: vec![stop],
        pad_token_id: 3,
        ..GenerationConfig::greedy(5)
    };
    let stopped = llava
        .model
        .generate(prompts(&llava), &config, |_| {})
        .expect("generate");
    assert_eq!(stopped[1], [stop, 3, 3, 3, 3]);
    if !free[0].contains(&stop) {
        assert_eq!(stopped[0], free[0]);
    }
}

#[test]
fn a_chat_keeps_the_image_at_its_turn() {
    let llava = Llava::load("llava");
    let reference_ids = rows(&llava.ids("input_ids"));
    let first_turn: Vec<u32> = reference_ids[0][..22].iter().map(|&id| id as u32).collect();
    let image = llava
        .float::<4>("pixel_values")
        .slice([0..1, 0..3, 0..32, 0..32]);
    // The penalty makes the reply depend on every earlier token, as the history must.
    let config = GenerationConfig {
        repetition_penalty: 1.3,
        ..GenerationConfig::greedy(4)
    };

    let mut chat = llava.model.chat();
    let mut streamed = Vec::new();
    let first = chat
        .turn(&first_turn, Some(image.clone()), &config, |token| {
            streamed.push(token)
        })
        .expect("turn 1");
    assert_eq!(streamed, first);

    let bad = chat
        .turn(&[511, 511], None, &config, |_| {})
        .expect_err("2 placeholders");
    assert!(
        matches!(bad, ModelError::PlaceholderCount { found: 2, .. }),
        "{bad}"
    );
    let out_of_vocab = GenerationConfig {
        pad_token_id: 10_000,
        ..config.clone()
    };
    let bad = chat
        .turn(&[40], None, &out_of_vocab, |_| {})
        .expect_err("pad id");
    assert!(
        matches!(bad, ModelError::Language(QwenError::InvalidGeneration(_))),
        "{bad}"
    );

    let second_turn = [40, 41, 42];
    let history: Vec<u32> = chat.history().to_vec();
    assert_eq!(history.len(), 22 + 4, "failed turns left nothing behind");
    let second = chat
        .turn(&second_turn, None, &config, |_| {})
        .expect("turn 2");

    let mut whole: Vec<i64> = history.iter().map(|&id| i64::from(id)).collect();
    whole.extend(second_turn.map(i64::from));
    let fresh = llava
        .model
        .generate(
            VlmBatch {
                input_ids: ids_tensor(&[whole]),
                attention_mask: None,
                pixel_values: Some(image),
            },
            &config,
            |_| {},
        )
        .expect("generate over the history");
    assert_eq!(second, fresh[0]);
    assert_eq!(chat.history().len(), 22 + 4 + 3 + 4);
}
