//! The composed VLM against transformers' `LlavaForConditionalGeneration` on the two llava
//! fixtures: SigLIP tower ("full" strategy) with a tied Qwen2, and CLIP tower ("default"
//! strategy, CLS dropped) with an untied Qwen2. Batch of two, image runs at different
//! positions, the second sample left-padded. Each as transformers 4.57 and (`v5/`) 5.25 save
//! it, and as a raw `state_dict` of either (`llava_state_dict`: module-path keys).

mod common;

use common::{check, masked_max_diff, Llava};
use vlm_model::causal_lm_loss;
use vlm_vision::VisionEncoder;

/// transformers' float32 outputs; the llava fixtures suggest ~1e-4 on logits.
const TOL: f32 = 1e-4;
/// The mean loss over the batch's answer tokens.
const LOSS_TOL: f32 = 1e-5;

fn check_against_transformers(name: &'static str) {
    let llava = Llava::load(name);
    let model = &llava.model;
    let pixels = llava.float::<4>("pixel_values");
    assert_eq!(model.tokens_per_image(), 16);

    let vision = model.vision().forward(pixels.clone()).expect("vision");
    check(
        &format!("{name} vision_features"),
        &vision,
        &llava.float("vision_features"),
        TOL,
    );
    let features = model.image_features(pixels).expect("image features");
    check(
        &format!("{name} image_features"),
        &features,
        &llava.float("image_features"),
        TOL,
    );

    let inputs = model.prepare(llava.batch()).expect("prepare");
    let embeds_diff = masked_max_diff(
        &inputs.inputs_embeds,
        &llava.float("inputs_embeds"),
        &inputs.attention_mask,
    );
    eprintln!("{name} inputs_embeds: max |diff| = {embeds_diff:e}");
    assert!(embeds_diff <= TOL);
    let expected_positions = llava.ids("position_ids");
    assert_eq!(
        common::rows(&inputs.position_ids),
        common::rows(&expected_positions)
    );

    let logits = model.forward(llava.batch()).expect("forward");
    let loss = model
        .forward_loss(llava.batch(), llava.ids("labels"))
        .expect("loss");
    let mask = llava.ids("attention_mask");
    let logits_diff = masked_max_diff(&logits, &llava.float("logits"), &mask);
    eprintln!("{name} logits: max |diff| on unmasked positions = {logits_diff:e}");
    assert!(
        logits_diff <= TOL,
        "{name} logits differ by {logits_diff:e}"
    );

    let expected_loss = llava.float::<1>("loss").into_scalar();
    let actual_loss = loss.loss.into_scalar();
    eprintln!(
        "{name} loss: {actual_loss} vs {expected_loss} (|diff| = {:e}) over {} tokens",
        (actual_loss - expected_loss).abs(),
        loss.supervised_tokens
    );
    assert!((actual_loss - expected_loss).abs() <= LOSS_TOL);
    // 6 answer tokens in sample 0 and 2 in sample 1; the shift drops none of them.
    assert_eq!(loss.supervised_tokens, 8);

    let reference_loss = causal_lm_loss(llava.float("logits"), llava.ids("labels")).expect("loss");
    let on_reference = reference_loss.loss.into_scalar();
    assert!(
        (on_reference - expected_loss).abs() <= LOSS_TOL,
        "loss of HF's own logits"
    );
}

#[test]
fn siglip_llava_matches_transformers() {
    check_against_transformers("llava");
}

#[test]
fn clip_llava_matches_transformers() {
    check_against_transformers("llava_clip");
}

#[test]
fn llava_as_transformers_5_saves_it_matches_transformers() {
    check_against_transformers("v5/llava");
    check_against_transformers("v5/llava_clip");
}

#[test]
fn llava_as_a_raw_state_dict_matches_transformers() {
    check_against_transformers("llava_state_dict");
    check_against_transformers("v5/llava_state_dict");
}
