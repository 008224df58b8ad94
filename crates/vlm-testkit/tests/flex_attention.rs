//! The patched Flex attention kernel (`vendor/burn-flex/src/ops/attention.rs`) against a
//! plain-Rust reference computed from `TensorData`: both strategies (full score matrix and KV
//! tiles), masks and additive biases with broadcast batch/head dims, causal, softcap and
//! custom scale, grouped-query heads (fewer key/value heads), strided inputs read in place
//! (head-split views, a KV-cache prefix) and the permuted output layout, in f32 and bf16.

use burn::backend::Flex;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Distribution, FloatDType, Tensor, TensorData};

type B = Flex<f32>;

/// Shape of one case: `[batch, heads, seq_q, head_dim]` queries against `kv_heads` heads of
/// `seq_kv` keys and values of width `val_dim`.
#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq_q: usize,
    seq_kv: usize,
    head_dim: usize,
    val_dim: usize,
}

impl Case {
    fn new(batch: usize, heads: usize, seq: usize, head_dim: usize) -> Self {
        Self {
            batch,
            heads,
            kv_heads: heads,
            seq_q: seq,
            seq_kv: seq,
            head_dim,
            val_dim: head_dim,
        }
    }

    fn q(&self) -> [usize; 4] {
        [self.batch, self.heads, self.seq_q, self.head_dim]
    }

    fn k(&self) -> [usize; 4] {
        [self.batch, self.kv_heads, self.seq_kv, self.head_dim]
    }

    fn v(&self) -> [usize; 4] {
        [self.batch, self.kv_heads, self.seq_kv, self.val_dim]
    }
}

/// The inputs of one call, any of them possibly a strided view.
struct Inputs {
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    bias: Option<Tensor<B, 4>>,
}

impl Inputs {
    /// Query, key and value without mask or bias.
    fn new(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Self {
        Self {
            q,
            k,
            v,
            mask: None,
            bias: None,
        }
    }
}

fn random(shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// A `[batch, heads, seq, dim]` view of a `[batch, seq, heads, dim]` tensor, as attention
/// layers split heads (`reshape` + `swap_dims`, no copy).
fn head_split(shape: [usize; 4]) -> Tensor<B, 4> {
    let [batch, heads, seq, dim] = shape;
    random([batch, seq, heads, dim]).swap_dims(1, 2)
}

/// Keys or values as a KV cache holds them: the first `seq` positions of a longer buffer.
fn cache_prefix(shape: [usize; 4]) -> Tensor<B, 4> {
    let [batch, heads, seq, dim] = shape;
    random([batch, heads, seq + 5, dim]).narrow(2, 0, seq)
}

fn values(tensor: &Tensor<B, 4>) -> Vec<f64> {
    tensor
        .to_data()
        .convert::<f64>()
        .to_vec()
        .expect("f64 values")
}

/// `softmax(scale * q k^T (softcapped) + bias, masked) v` in f64, rows with every key masked
/// zero (Flex's convention).
fn reference(case: Case, inputs: &Inputs, options: AttentionModuleOptions) -> Vec<f64> {
    let Case {
        batch,
        heads,
        kv_heads,
        seq_q,
        seq_kv,
        head_dim,
        val_dim,
    } = case;
    let (q, k, v) = (values(&inputs.q), values(&inputs.k), values(&inputs.v));
    let score_shape = [batch, heads, seq_q, seq_kv];
    let mask: Option<Vec<bool>> = inputs.mask.as_ref().map(|m| {
        m.clone()
            .expand(score_shape)
            .to_data()
            .to_vec()
            .expect("bool mask")
    });
    let bias = inputs
        .bias
        .as_ref()
        .map(|b| values(&b.clone().expand(score_shape)));
    let scale = options
        .scale
        .unwrap_or_else(|| 1.0 / (head_dim as f64).sqrt());
    let groups = heads / kv_heads;
    let mut out = vec![0.0; batch * heads * seq_q * val_dim];
    for b in 0..batch {
        for h in 0..heads {
            let kv = b * kv_heads + h / groups;
            for i in 0..seq_q {
                let q_row = &q[((b * heads + h) * seq_q + i) * head_dim..][..head_dim];
                let tile = ((b * heads + h) * seq_q + i) * seq_kv;
                let scores: Vec<f64> = (0..seq_kv)
                    .map(|j| {
                        let k_row = &k[(kv * seq_kv + j) * head_dim..][..head_dim];
                        let mut s =
                            scale * q_row.iter().zip(k_row).map(|(a, b)| a * b).sum::<f64>();
                        if let Some(cap) = options.softcap {
                            s = cap * (s / cap).tanh();
                        }
                        let causal_blocked = options.is_causal && j + seq_q > i + seq_kv;
                        if causal_blocked || mask.as_ref().is_some_and(|m| m[tile + j]) {
                            return f64::NEG_INFINITY;
                        }
                        s + bias.as_ref().map_or(0.0, |bias| bias[tile + j])
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    continue;
                }
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                let out_row = &mut out[((b * heads + h) * seq_q + i) * val_dim..][..val_dim];
                for (j, w) in weights.iter().enumerate() {
                    let v_row = &v[(kv * seq_kv + j) * val_dim..][..val_dim];
                    for (o, x) in out_row.iter_mut().zip(v_row) {
                        *o += w / sum * x;
                    }
                }
            }
        }
    }
    out
}

fn contiguous_inputs(case: Case) -> Inputs {
    Inputs::new(random(case.q()), random(case.k()), random(case.v()))
}

/// Runs the kernel on `inputs` and checks it against the reference within `tol`.
fn check(label: &str, case: Case, inputs: Inputs, options: AttentionModuleOptions, tol: f64) {
    let expected = reference(case, &inputs, options);
    let Inputs {
        q,
        k,
        v,
        mask,
        bias,
    } = inputs;
    let actual = attention(q, k, v, mask, bias, options);
    assert_eq!(
        actual.dims(),
        [case.batch, case.heads, case.seq_q, case.val_dim],
        "{label}: output shape"
    );
    assert_matches(label, &values(&actual), &expected, tol);
}

fn assert_matches(label: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{label}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * e.abs().max(1.0),
            "{label}: element {i}: kernel {a} vs reference {e}"
        );
    }
}

const F32_TOL: f64 = 2e-5;

fn causal() -> AttentionModuleOptions {
    AttentionModuleOptions {
        is_causal: true,
        ..Default::default()
    }
}

#[test]
fn unmasked_heads_match_the_reference() {
    for case in [
        Case::new(1, 1, 1, 4),
        Case::new(2, 3, 17, 16),
        Case::new(3, 6, 49, 64),
        Case::new(1, 2, 9, 72),
    ] {
        check(
            &format!("{case:?}"),
            case,
            contiguous_inputs(case),
            Default::default(),
            F32_TOL,
        );
    }
}

#[test]
fn head_split_views_are_read_in_place() {
    let case = Case::new(2, 4, 23, 16);
    let inputs = Inputs::new(
        head_split(case.q()),
        head_split(case.k()),
        head_split(case.v()),
    );
    check(
        "head-split views",
        case,
        inputs,
        Default::default(),
        F32_TOL,
    );
}

#[test]
fn cache_prefixes_and_decode_rows_match() {
    let case = Case {
        seq_q: 1,
        ..Case::new(3, 2, 1, 8)
    };
    let case = Case { seq_kv: 30, ..case };
    let inputs = Inputs::new(
        head_split(case.q()),
        cache_prefix(case.k()),
        cache_prefix(case.v()),
    );
    check(
        "decode against a cache prefix",
        case,
        inputs,
        causal(),
        F32_TOL,
    );
}

#[test]
fn grouped_query_heads_share_key_value_heads() {
    let case = Case {
        kv_heads: 2,
        ..Case::new(2, 8, 13, 16)
    };
    let mut inputs = Inputs::new(
        head_split(case.q()),
        cache_prefix(case.k()),
        head_split(case.v()),
    );
    let [batch, _, seq_q, seq_kv] = [case.batch, case.heads, case.seq_q, case.seq_kv];
    inputs.bias = Some(random([batch, 1, seq_q, seq_kv]));
    check("gqa 8/2 with bias", case, inputs, causal(), F32_TOL);
}

#[test]
fn causal_prefill_after_cached_keys_matches() {
    let case = Case {
        seq_q: 7,
        seq_kv: 19,
        ..Case::new(2, 3, 0, 16)
    };
    check(
        "causal, seq_q < seq_kv",
        case,
        contiguous_inputs(case),
        causal(),
        F32_TOL,
    );
}

#[test]
fn broadcast_masks_and_biases_match() {
    let case = Case {
        seq_q: 11,
        seq_kv: 14,
        val_dim: 24,
        ..Case::new(2, 3, 0, 16)
    };
    let [batch, heads, seq_q, seq_kv] = [case.batch, case.heads, case.seq_q, case.seq_kv];
    let device = Default::default();
    for mask_shape in [
        [1, 1, seq_q, seq_kv],
        [batch, 1, seq_q, seq_kv],
        [batch, heads, seq_q, seq_kv],
    ] {
        let blocked =
            Tensor::<B, 4>::random(mask_shape, Distribution::Default, &device).greater_elem(0.7);
        let mut inputs = contiguous_inputs(case);
        inputs.mask = Some(blocked);
        inputs.bias = Some(random([1, heads, seq_q, seq_kv]));
        check(
            &format!("mask {mask_shape:?} + bias"),
            case,
            inputs,
            Default::default(),
            F32_TOL,
        );
    }
}

#[test]
fn fully_masked_rows_are_zero() {
    let case = Case::new(1, 2, 5, 8);
    let device = Default::default();
    let row_blocked = TensorData::new(
        (0..25)
            .map(|i| i / 5 == 2 || i % 5 == 0)
            .collect::<Vec<bool>>(),
        [1, 1, 5, 5],
    );
    let mut inputs = contiguous_inputs(case);
    inputs.mask = Some(Tensor::<B, 4, Bool>::from_data(row_blocked, &device));
    check(
        "row 2 fully masked",
        case,
        inputs,
        Default::default(),
        F32_TOL,
    );
}

#[test]
fn softcap_and_scale_match() {
    let case = Case::new(2, 2, 12, 16);
    let options = AttentionModuleOptions {
        scale: Some(0.3),
        softcap: Some(2.0),
        is_causal: true,
    };
    check(
        "softcap + scale + causal",
        case,
        contiguous_inputs(case),
        options,
        F32_TOL,
    );
}

/// Above 256K scores per head the kernel switches to KV tiles with an online softmax.
#[test]
fn tiled_strategy_matches_for_long_sequences() {
    let case = Case {
        seq_q: 520,
        seq_kv: 530,
        val_dim: 4,
        ..Case::new(1, 2, 0, 8)
    };
    let mut inputs = Inputs::new(
        head_split(case.q()),
        cache_prefix(case.k()),
        head_split(case.v()),
    );
    inputs.bias = Some(random([1, 1, case.seq_q, case.seq_kv]));
    check("tiled, causal, bias", case, inputs, causal(), F32_TOL);
}

#[test]
fn heads_merge_to_the_reference_layout() {
    let case = Case::new(2, 3, 10, 8);
    let inputs = contiguous_inputs(case);
    let expected = reference(case, &inputs, Default::default());
    let out = attention(inputs.q, inputs.k, inputs.v, None, None, Default::default());
    let merged = out.swap_dims(1, 2).reshape([2, 10, 24]);
    let expected =
        Tensor::<B, 4>::from_data(TensorData::new(expected, case.q()), &Default::default())
            .swap_dims(1, 2)
            .reshape([2, 10, 24]);
    let values_3d = |t: Tensor<B, 3>| {
        t.to_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("values")
    };
    assert_matches(
        "merged heads",
        &values_3d(merged),
        &values_3d(expected),
        F32_TOL,
    );
}

/// bf16 inputs are computed in f32 and rounded once at the end: the result is the reference
/// on the bf16 inputs within bf16 rounding.
#[test]
fn bf16_matches_the_reference_on_rounded_inputs() {
    let case = Case {
        kv_heads: 1,
        ..Case::new(2, 2, 9, 16)
    };
    let round = |t: Tensor<B, 4>| t.cast(FloatDType::BF16).cast(FloatDType::F32);
    let inputs = Inputs {
        q: round(head_split(case.q())),
        k: round(random(case.k())),
        v: round(random(case.v())),
        mask: None,
        bias: Some(round(random([case.batch, 1, case.seq_q, case.seq_kv]))),
    };
    let expected = reference(case, &inputs, causal());
    let half = |t: Tensor<B, 4>| t.cast(FloatDType::BF16);
    let actual = attention(
        half(inputs.q),
        half(inputs.k),
        half(inputs.v),
        None,
        inputs.bias.map(half),
        causal(),
    );
    assert_eq!(actual.dtype(), burn::tensor::DType::BF16);
    assert_matches("bf16", &values(&actual), &expected, 1e-2);
}
