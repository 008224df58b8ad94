//! The vendored Flex's matrix products of few rows (vendor/burn-flex/PATCH.md): split over
//! the threads by columns (one row: on its spinning team, by blocks of rows whose partial
//! outputs are summed, or by blocks of columns), and with a transposed right-hand side written
//! column-major, they must give the product of a plain f64 reference, for every row count
//! around the limits, also when several threads multiply at the same time (the team serves
//! one caller; the others compute alone).

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

type B = Flex<f32>;

/// Deterministic values in [-1, 1).
fn values(count: usize, seed: usize) -> Vec<f32> {
    (0..count)
        .map(|i| (((i * 7919 + seed * 104_729) % 2000) as f32 / 1000.0) - 1.0)
        .collect()
}

/// `lhs [m, k] x rhs [k, n]`, row-major, in f64.
fn reference(lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let a = f64::from(lhs[i * k + p]);
            for j in 0..n {
                out[i * n + j] += a * f64::from(rhs[p * n + j]);
            }
        }
    }
    out
}

/// Flex's product of `[m, k]` by `[k, n]`, the rhs stored row-major or as the transposed
/// view of its `[n, k]` transpose (a tied embedding table's layout).
fn flex_product(
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    k: usize,
    n: usize,
    transposed: bool,
) -> Vec<f32> {
    let device = Default::default();
    let a = Tensor::<B, 2>::from_data(TensorData::new(lhs.to_vec(), [m, k]), &device);
    let b = if transposed {
        let mut table = vec![0.0f32; n * k];
        for p in 0..k {
            for j in 0..n {
                table[j * k + p] = rhs[p * n + j];
            }
        }
        Tensor::<B, 2>::from_data(TensorData::new(table, [n, k]), &device).transpose()
    } else {
        Tensor::<B, 2>::from_data(TensorData::new(rhs.to_vec(), [k, n]), &device)
    };
    a.matmul(b).into_data().to_vec::<f32>().expect("f32 output")
}

/// Checks Flex's `[m, k] x [k, n]` against the f64 reference.
fn check_product(m: usize, k: usize, n: usize, transposed: bool) {
    let lhs = values(m * k, 1);
    let rhs = values(k * n, 2);
    let expected = reference(&lhs, &rhs, m, k, n);
    let got = flex_product(&lhs, &rhs, m, k, n, transposed);
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(g, e)| (f64::from(*g) - e).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4 * k as f64,
        "m {m} k {k} n {n} transposed {transposed}: max |diff| {worst}"
    );
}

#[test]
fn few_row_products_match_the_reference() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a two-thread pool");
    // k * n >= 64 Ki elements takes the column split; one row takes the vector kernels,
    // split over the threads from 128 Ki elements ((257, 515): blocks of 129 and 128 rows;
    // (1031, 700): an odd k, 1031 = 8 * 128 + 7, so the eight-row kernel's tail runs);
    // (3, 40) is split by nothing; 17 rows is past the few-row limit.
    let shapes = [(64, 1408), (300, 300), (257, 515), (1031, 700), (3, 40)];
    for (k, n) in shapes {
        for m in [1, 2, 3, 8, 16, 17] {
            for transposed in [false, true] {
                pool.install(|| check_product(m, k, n, transposed));
            }
        }
    }
}

#[test]
fn concurrent_products_match_the_reference() {
    std::thread::scope(|scope| {
        for caller in 0..4 {
            scope.spawn(move || {
                for round in 0..6 {
                    let m = [1, 4][(caller + round) % 2];
                    check_product(m, 1031, 700, round % 3 == 0);
                }
            });
        }
    });
}
