//! Splicing edge cases: placeholder runs at different positions, text-only samples,
//! several images in a sample, and counts that do not match.

mod common;

use burn::tensor::{Distribution, Tensor};
use common::{ids_tensor, Llava};
use vlm_model::{ModelError, VlmBatch};
use vlm_testkit::{device, max_abs_diff, TestBackend};

const IMAGE: i64 = 511;

fn pixels(images: usize) -> Tensor<TestBackend, 4> {
    Tensor::random(
        [images, 3, 32, 32],
        Distribution::Normal(0.0, 1.0),
        &device(),
    )
}

fn row(prefix: &[i64], images: usize, suffix: &[i64]) -> Vec<i64> {
    let mut ids = prefix.to_vec();
    for _ in 0..images {
        ids.extend([IMAGE; 16]);
    }
    ids.extend(suffix);
    ids
}

#[test]
fn images_land_at_their_runs_in_order() {
    let llava = Llava::load("llava");
    let model = &llava.model;
    // Sample 0: images at 1..17 and 19..35; sample 1: text only; sample 2: an image at 20..36.
    let mut first = row(&[5], 1, &[6, 6]);
    first.extend(row(&[], 1, &[7, 8, 9, 10, 11]));
    let third = row(&(20..40).collect::<Vec<_>>(), 1, &[1, 2, 3, 4]);
    let rows = vec![first, (10..50).collect(), third];
    assert!(rows.iter().all(|r| r.len() == 40));
    let images = pixels(3);
    let embeds = model
        .inputs_embeds(ids_tensor(&rows), Some(images.clone()))
        .expect("splice");
    let features = model.image_features(images).expect("features");
    let text = model
        .language_model()
        .embed(ids_tensor(&rows).clamp_max(IMAGE - 1)) // any row: placeholders are not compared
        .expect("embed");
    let at = |sample: usize, range: std::ops::Range<usize>| {
        embeds.clone().slice([sample..sample + 1, range, 0..48])
    };
    let feature = |image: usize| features.clone().slice([image..image + 1, 0..16, 0..48]);
    assert_eq!(max_abs_diff(&at(0, 1..17), &feature(0)), 0.0);
    assert_eq!(max_abs_diff(&at(0, 19..35), &feature(1)), 0.0);
    assert_eq!(max_abs_diff(&at(2, 20..36), &feature(2)), 0.0);
    let text_rows = |sample: usize, range: std::ops::Range<usize>| {
        text.clone().slice([sample..sample + 1, range, 0..48])
    };
    assert_eq!(max_abs_diff(&at(1, 0..40), &text_rows(1, 0..40)), 0.0);
    assert_eq!(max_abs_diff(&at(0, 17..19), &text_rows(0, 17..19)), 0.0);
    assert_eq!(max_abs_diff(&at(2, 0..20), &text_rows(2, 0..20)), 0.0);
}

#[test]
fn a_partial_placeholder_run_names_the_sample_and_counts() {
    let llava = Llava::load("llava");
    let mut short = row(&[1, 2], 1, &[3]);
    short.remove(5); // 15 placeholders
    short.push(4);
    let rows = vec![row(&[1, 2], 1, &[3]), short];
    let err = llava
        .model
        .forward(VlmBatch {
            input_ids: ids_tensor(&rows),
            attention_mask: None,
            pixel_values: Some(pixels(2)),
        })
        .expect_err("15 placeholders");
    assert!(
        matches!(
            err,
            ModelError::PlaceholderCount {
                sample: 1,
                found: 15,
                tokens_per_image: 16
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("sample 1") && message.contains("15") && message.contains("16"));
}

#[test]
fn the_number_of_images_must_match_the_runs() {
    let llava = Llava::load("llava");
    let ids = || ids_tensor(&[row(&[1, 2], 1, &[3])]);
    let err = llava
        .model
        .inputs_embeds(ids(), Some(pixels(2)))
        .expect_err("2 images, 1 run");
    assert!(
        matches!(
            err,
            ModelError::ImageCount {
                in_ids: 1,
                given: 2
            }
        ),
        "{err}"
    );
    let err = llava
        .model
        .inputs_embeds(ids(), None)
        .expect_err("no pixels");
    assert!(
        matches!(
            err,
            ModelError::ImageCount {
                in_ids: 1,
                given: 0
            }
        ),
        "{err}"
    );
    let text = ids_tensor(&[vec![1, 2, 3]]);
    let err = llava
        .model
        .inputs_embeds(text, Some(pixels(1)))
        .expect_err("no run");
    assert!(
        matches!(
            err,
            ModelError::ImageCount {
                in_ids: 0,
                given: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn a_mask_of_another_shape_is_an_error() {
    let llava = Llava::load("llava");
    let err = llava
        .model
        .forward(VlmBatch {
            input_ids: ids_tensor(&[vec![1, 2, 3]]),
            attention_mask: Some(ids_tensor(&[vec![1, 1]])),
            pixel_values: None,
        })
        .expect_err("mask [1, 2] for ids [1, 3]");
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
}
