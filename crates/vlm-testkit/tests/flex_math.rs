//! The patched Flex element-wise math kernels (`vendor/burn-flex/PATCH.md`): the vectorised
//! f32 `exp` against an f64 reference over the whole f32 range, and `exp`, `sigmoid`,
//! `log_sigmoid` and `softmax` through Burn's tensor API against plain-Rust f64 references,
//! on contiguous and strided views, in f32 and bf16, below and above the size where the
//! element-wise map splits over rayon's threads (32768 elements).

use burn::backend::Flex;
use burn::tensor::{activation, DType, Tensor, TensorData};
use burn_flex::simd::math::exp_f32;

type B = Flex<f32>;

/// Distance from `got` to the exact `want` in units of the f32 spacing at `want`
/// (subnormal spacing below the normal range).
fn ulp_error(got: f32, want: f64) -> f64 {
    let spacing = if want.abs() < f32::MIN_POSITIVE as f64 {
        2f64.powi(-149)
    } else {
        let exponent = want.abs().log2().floor() as i32;
        2f64.powi(exponent - 23)
    };
    (got as f64 - want).abs() / spacing
}

/// The largest ulp error of `exp_f32` over every `step`-th f32 bit pattern in
/// `[from, to]` whose exact result is a finite f32.
fn max_exp_ulp(from: u32, to: u32, step: usize) -> f64 {
    let mut worst = 0.0f64;
    for bits in (from..=to).step_by(step) {
        let x = f32::from_bits(bits);
        let want = (x as f64).exp();
        if x.is_nan() || want > f32::MAX as f64 {
            continue;
        }
        let err = ulp_error(exp_f32(x), want);
        assert!(
            err <= 2.0,
            "exp_f32({x:e}) = {:e}, want {want:e}: {err} ulp",
            exp_f32(x)
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn exp_is_within_two_ulp_over_the_f32_range() {
    // Every 1021st bit pattern of both signs (all exponents), then every pattern of the
    // hot interval [-16, 16] near 0 and of the subnormal-result end [-104, -87].
    let sparse = max_exp_ulp(0, 0x7F7F_FFFF, 1021).max(max_exp_ulp(0x8000_0000, 0xFF7F_FFFF, 1021));
    let dense = max_exp_ulp(0x3F00_0000, 0x3F10_0000, 1)
        .max(max_exp_ulp(0xBF00_0000, 0xBF10_0000, 1))
        .max(max_exp_ulp((-104.0f32).to_bits(), (-87.0f32).to_bits(), 7));
    println!("exp_f32 max error: {sparse:.3} ulp (sparse sweep), {dense:.3} ulp (dense)");
}

#[test]
fn exp_special_values() {
    assert_eq!(exp_f32(0.0), 1.0);
    assert_eq!(exp_f32(-0.0), 1.0);
    assert_eq!(exp_f32(f32::NEG_INFINITY).to_bits(), 0);
    assert_eq!(
        exp_f32(f32::MIN).to_bits(),
        0,
        "masked scores give exactly +0"
    );
    assert_eq!(exp_f32(-104.0).to_bits(), 0);
    assert_eq!(exp_f32(-1e30).to_bits(), 0);
    assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
    assert_eq!(exp_f32(88.73), f32::INFINITY);
    assert_eq!(exp_f32(f32::MAX), f32::INFINITY);
    assert!(exp_f32(88.72).is_finite());
    assert!(exp_f32(f32::NAN).is_nan());
    assert!(exp_f32(-f32::NAN).is_nan());
    // The smallest subnormal result and the ones around it.
    assert!(ulp_error(exp_f32(-103.0), (-103.0f64).exp()) <= 2.0);
    assert!(ulp_error(exp_f32(-100.0), (-100.0f64).exp()) <= 2.0);
}

/// Deterministic inputs in `[-scale, scale]` (a fixed LCG, no RNG crate).
fn inputs(n: usize, scale: f32) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The layouts every element-wise op is checked on: the tensor itself, its transpose, a
/// slice with an offset, and a flip (negative strides), each with the same values read in
/// the view's order.
fn views(t: Tensor<B, 2>) -> Vec<(&'static str, Tensor<B, 2>)> {
    let [rows, cols] = t.dims();
    vec![
        ("contiguous", t.clone()),
        ("transposed", t.clone().swap_dims(0, 1)),
        ("sliced", t.clone().slice([1..rows, 1..cols])),
        ("flipped", t.flip([1])),
    ]
}

fn values(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Checks `op` on every view of a `[rows, cols]` input in f32 and bf16 against `reference`
/// applied to the view's values (as f64): relative `f32_tol` in f32, one bf16 step in bf16.
fn check_elementwise(
    name: &str,
    op: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>,
    reference: impl Fn(f64) -> f64,
    scale: f32,
    f32_tol: f64,
) {
    let device = Default::default();
    for (rows, cols) in [(7, 33), (300, 200)] {
        let data = TensorData::new(inputs(rows * cols, scale), [rows, cols]);
        for dtype in [DType::F32, DType::BF16] {
            let base = Tensor::<B, 2>::from_data(data.clone(), &device).cast(dtype);
            for (layout, view) in views(base) {
                let input = values(view.clone());
                let got = values(op(view));
                let tol = if dtype == DType::F32 {
                    f32_tol
                } else {
                    2f64.powi(-7)
                };
                for (i, (&x, &g)) in input.iter().zip(&got).enumerate() {
                    let want = reference(x as f64);
                    assert!(
                        (g as f64 - want).abs() <= tol * want.abs().max(1e-30) + 1e-37,
                        "{name} {dtype:?} {layout} [{rows}x{cols}] #{i}: f({x}) = {g}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn exp_tensor_matches_f64() {
    check_elementwise("exp", |t| t.exp(), f64::exp, 85.0, 3e-7);
}

#[test]
fn sigmoid_matches_f64() {
    check_elementwise(
        "sigmoid",
        activation::sigmoid,
        |x| 1.0 / (1.0 + (-x).exp()),
        40.0,
        6e-7,
    );
}

#[test]
fn silu_matches_f64() {
    check_elementwise(
        "silu",
        activation::silu,
        |x| x / (1.0 + (-x).exp()),
        20.0,
        1e-6,
    );
}

#[test]
fn log_sigmoid_matches_f64() {
    check_elementwise(
        "log_sigmoid",
        activation::log_sigmoid,
        |x| -(-x).exp().ln_1p(),
        30.0,
        1e-6,
    );
}

/// Row-wise softmax over the last dimension in f64.
fn softmax_reference(x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| e / sum)
        })
        .collect()
}

/// A masked attention score as the models write it (finite, also in bf16).
const MASKED: f32 = -1.7e38;

#[test]
fn softmax_with_masked_scores_matches_f64() {
    let device = Default::default();
    // Rows partly masked,
    // one row fully masked (uniform), sizes below and above the parallel split.
    for (rows, cols) in [(5, 19), (64, 40), (96, 512)] {
        let mut x = inputs(rows * cols, 12.0);
        for (i, v) in x.iter_mut().enumerate() {
            let (r, c) = (i / cols, i % cols);
            if c > r % cols || r == 2 {
                *v = MASKED;
            }
        }
        let data = TensorData::new(x, [rows, cols]);
        for dtype in [DType::F32, DType::BF16] {
            let base = Tensor::<B, 2>::from_data(data.clone(), &device).cast(dtype);
            for (layout, view) in [
                ("contiguous", base.clone()),
                ("sliced", base.slice([1..rows, 0..cols])),
            ] {
                let [_, c] = view.dims();
                let input = values(view.clone());
                let want = softmax_reference(&input, c);
                let got = values(activation::softmax(view, 1));
                let tol = if dtype == DType::F32 {
                    1e-6
                } else {
                    2f64.powi(-7)
                };
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= tol * w.max(1e-3),
                        "softmax {dtype:?} {layout} [{rows}x{cols}] #{i}: {g}, want {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn softmax_over_a_leading_dim_matches_f64() {
    let device = Default::default();
    let (rows, cols) = (33, 70);
    let x = inputs(rows * cols, 30.0);
    let t = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [rows, cols]), &device);
    let got = values(activation::softmax(t, 0).swap_dims(0, 1));
    let transposed: Vec<f32> = (0..cols)
        .flat_map(|c| (0..rows).map(move |r| (r, c)))
        .map(|(r, c)| x[r * cols + c])
        .collect();
    for (i, (&g, w)) in got
        .iter()
        .zip(softmax_reference(&transposed, rows))
        .enumerate()
    {
        assert!(
            (g as f64 - w).abs() <= 1e-6 * w.max(1e-3),
            "#{i}: {g}, want {w}"
        );
    }
}
