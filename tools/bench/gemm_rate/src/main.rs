//! GFLOP/s of gemm 0.19's f32 product on one thread for the bench config's shapes: the vision
//! MLP (8 images x 196 tokens), the training batch's MLP (4 x 260 tokens) and a batch-8
//! decode step, best of 5 repetitions.

use std::time::Instant;

fn main() {
    let shapes = [
        (512, 512, 512),
        (1568, 384, 1536),
        (1040, 512, 1408),
        (8, 512, 1408),
    ];
    for (m, k, n) in shapes {
        println!("{m} x {k} x {n}: {:.1} GFLOP/s", rate(m, k, n));
    }
}

/// GFLOP/s of `[m, k] x [k, n]`, row-major, best of 5 timings of ~2 GFLOP each.
fn rate(m: usize, k: usize, n: usize) -> f64 {
    let a = vec![1.0f32; m * k];
    let b = vec![0.5f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let flop = 2.0 * (m * k * n) as f64;
    let reps = (2e9 / flop).max(3.0) as usize;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..reps {
            // SAFETY: the three buffers hold m*k, k*n and m*n elements, row-major strides.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    flop / best / 1e9
}
