//! Cached decoding against full recomputation.

mod common;

use burn::tensor::Tensor;
use common::{assert_close_masked, columns, load_model, Reference, F32_FIXTURES};

#[test]
fn cached_decode_equals_full_recomputation() {
    for name in F32_FIXTURES {
        let model = load_model(name);
        let reference = Reference::open(name);
        let (ids, mask) = (&reference.input_ids, &reference.attention_mask);
        let [_, len] = ids.dims();
        let full = model
            .forward(ids.clone(), Some(mask.clone()), None, None)
            .expect("full forward");
        // Prefill 3 tokens (all padding in the left-padded sample) or 6, then decode one by one.
        for prefill in [3, 6] {
            let mut cache = model.new_cache();
            let mut pieces = vec![model
                .forward(
                    columns(ids, 0..prefill),
                    Some(columns(mask, 0..prefill)),
                    None,
                    Some(&mut cache),
                )
                .expect("prefill")];
            for step in prefill..len {
                assert_eq!(cache.len(), step, "{name}: cache length before step {step}");
                let logits = model
                    .forward(
                        columns(ids, step..step + 1),
                        Some(columns(mask, 0..step + 1)),
                        None,
                        Some(&mut cache),
                    )
                    .expect("decode step");
                assert_eq!(
                    logits.dims()[1],
                    1,
                    "a decode step computes only the new token"
                );
                pieces.push(logits);
            }
            let cached = Tensor::cat(pieces, 1);
            let what = format!("{name} cached (prefill {prefill}) vs full");
            assert_close_masked(&what, &cached, &full, mask, 1e-4);
        }
    }
}

#[test]
fn cached_decode_matches_transformers() {
    let name = "qwen2_tied";
    let model = load_model(name);
    let reference = Reference::open(name);
    let (ids, mask) = (&reference.input_ids, &reference.attention_mask);
    let [_, len] = ids.dims();
    let mut cache = model.new_cache();
    let mut pieces = Vec::new();
    for step in 0..len {
        let logits = model
            .forward(
                columns(ids, step..step + 1),
                Some(columns(mask, 0..step + 1)),
                None,
                Some(&mut cache),
            )
            .expect("decode step");
        pieces.push(logits);
    }
    let expected = reference.float3("logits");
    let what = "token-by-token decode vs transformers";
    assert_close_masked(what, &Tensor::cat(pieces, 1), &expected, mask, 1e-4);
}
