//! The token sampler on hand-made logits: each property is checked against values computed
//! from the logits themselves.

use vlm_qwen::{Decoding, Sampler, SamplingParams};

fn logits() -> Vec<f32> {
    (0..50)
        .map(|i| ((i * 37 % 50) as f32 - 25.0) / 5.0)
        .collect()
}

fn argmax(values: &[f32]) -> u32 {
    let best = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    values.iter().position(|&v| v == best).expect("non-empty") as u32
}

fn sampled(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, seed: u64) -> Sampler {
    let params = SamplingParams {
        temperature,
        top_k,
        top_p,
        seed,
    };
    Sampler::new(Decoding::Sample(params), 1.0).expect("valid settings")
}

fn draws(sampler: &mut Sampler, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| sampler.next_token(&mut logits(), &[]))
        .collect()
}

#[test]
fn greedy_takes_the_largest_logit() {
    let mut sampler = Sampler::new(Decoding::Greedy, 1.0).expect("greedy");
    assert_eq!(sampler.next_token(&mut logits(), &[]), argmax(&logits()));
}

#[test]
fn repetition_penalty_demotes_seen_tokens_as_transformers_does() {
    let base = logits();
    let best = argmax(&base);
    let mut penalised = base.clone();
    let penalty = 100.0;
    let mut sampler = Sampler::new(Decoding::Greedy, penalty).expect("greedy");
    let choice = sampler.next_token(&mut penalised, &[best, best]);
    assert_ne!(choice, best);
    // Applied once per distinct token: positive logits divided, negative multiplied.
    for (id, (&before, &after)) in base.iter().zip(&penalised).enumerate() {
        let expected = if id as u32 != best {
            before
        } else if before > 0.0 {
            before / penalty
        } else {
            before * penalty
        };
        assert_eq!(after, expected, "token {id}");
    }
}

#[test]
fn same_seed_same_draws_other_seed_other_draws() {
    let first = draws(&mut sampled(1.5, None, None, 7), 64);
    assert_eq!(first, draws(&mut sampled(1.5, None, None, 7), 64));
    assert_ne!(first, draws(&mut sampled(1.5, None, None, 8), 64));
}

#[test]
fn top_k_and_top_p_keep_only_the_head_of_the_distribution() {
    let base = logits();
    let mut order: Vec<usize> = (0..base.len()).collect();
    order.sort_by(|&a, &b| base[b].total_cmp(&base[a]));
    let top3: Vec<u32> = order[..3].iter().map(|&i| i as u32).collect();
    let picked = draws(&mut sampled(5.0, Some(3), None, 1), 300);
    assert!(picked.iter().all(|t| top3.contains(t)), "{picked:?}");
    for token in &top3 {
        assert!(
            picked.contains(token),
            "token {token} never drawn at high temperature"
        );
    }
    assert!(draws(&mut sampled(5.0, Some(1), None, 2), 50)
        .iter()
        .all(|&t| t == argmax(&base)));
    assert!(draws(&mut sampled(1.0, None, Some(1e-6), 3), 50)
        .iter()
        .all(|&t| t == argmax(&base)));
}

#[test]
fn draws_follow_the_tempered_softmax() {
    let temperature = 2.0;
    let base = logits();
    let max = base.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = base
        .iter()
        .map(|&l| f64::from((l - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let n = 20_000;
    let mut counts = vec![0usize; base.len()];
    for token in draws(&mut sampled(temperature, None, None, 11), n) {
        counts[token as usize] += 1;
    }
    for (id, (&count, &weight)) in counts.iter().zip(&weights).enumerate() {
        let p = weight / total;
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        let freq = count as f64 / n as f64;
        assert!(
            (freq - p).abs() <= 5.0 * sd + 1e-3,
            "token {id}: {freq} vs {p}"
        );
    }
}
