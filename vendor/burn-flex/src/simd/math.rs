//! Vectorisable element-wise math: a branch-free f32 `exp` and the
//! parallel, SIMD-dispatched element-wise map that the unary ops run through.
//!
//! `exp_f32` is plain Rust arithmetic (no libm call, no branch), so LLVM
//! vectorises every loop it is inlined into. [`map_inplace`] and
//! [`map_into`] run such a loop inside a `macerator` dispatch, which compiles
//! it once per instruction set (AVX-512, AVX2, SSE, NEON, ...) and picks the
//! best at run time, and split large slices over rayon's threads.

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Below this many elements an element-wise map stays on the calling thread:
/// a rayon fork/join costs more than the work.
#[cfg(feature = "rayon")]
const PARALLEL_MIN_ELEMS: usize = 32 * 1024;

/// Elements per rayon task of a parallel map (64 KiB of f32: L2-resident).
#[cfg(feature = "rayon")]
const PARALLEL_CHUNK_ELEMS: usize = 16 * 1024;

/// Below this input `exp` underflows to 0 (`exp(-103.98) < 2^-150`); inputs
/// are clamped here so the scale factor stays representable.
const EXP_MIN_INPUT: f32 = -104.0;
/// Above this input `exp` overflows to `+inf` (`ln(f32::MAX) = 88.7228`).
const EXP_MAX_INPUT: f32 = 89.0;
/// `1.5 * 2^23`: adding it rounds an f32 of magnitude < 2^22 to an integer,
/// which then sits in the low mantissa bits.
const ROUND_SHIFTER: f32 = 12_582_912.0;
/// Bit pattern of `ROUND_SHIFTER`.
const ROUND_SHIFTER_BITS: i32 = 0x4B40_0000;
/// `ln 2` split for Cody-Waite reduction: `LN2_HI` has 9 significant bits, so
/// `n * LN2_HI` is exact for every `|n| <= 150`.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` for f32 within 2 ulp of the exact value over the whole f32 range.
///
/// Cody-Waite reduction `x = n ln2 + r` with `|r| <= ln2 / 2`, Cephes'
/// degree-7 polynomial for `e^r`, and the scale `2^n` applied as two exact
/// powers of two so that subnormal results round once. Branch-free: inputs
/// below -104 give exactly `0.0` (no errno / underflow path as in libm),
/// inputs above 88.73 give `+inf`, NaN gives NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // NaN fails both comparisons and flows through unchanged.
    let x = if x < EXP_MIN_INPUT { EXP_MIN_INPUT } else { x };
    let x = if x > EXP_MAX_INPUT { EXP_MAX_INPUT } else { x };

    let shifted = x * core::f32::consts::LOG2_E + ROUND_SHIFTER;
    let n = (shifted.to_bits() as i32).wrapping_sub(ROUND_SHIFTER_BITS);
    let n_f = shifted - ROUND_SHIFTER;
    let r = x - n_f * LN2_HI - n_f * LN2_LO;

    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let e_r = p * (r * r) + r + 1.0;

    // 2^n with n in [-150, 129], as 2^half * 2^(n - half): both factors are
    // normal, and the first product is exact.
    let half = n >> 1;
    e_r * pow2i(half) * pow2i(n.wrapping_sub(half))
}

/// `2^k` for `k` in the normal exponent range `[-126, 127]`.
#[inline(always)]
fn pow2i(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

/// Apply `op` to every element of `data` in place: vectorised for the CPU's
/// instruction set when `op` is plain arithmetic, and split over rayon's
/// threads above [`PARALLEL_MIN_ELEMS`].
pub fn map_inplace<E, F>(data: &mut [E], op: F)
where
    E: Copy + Send + Sync,
    F: Fn(E) -> E + Copy + Send + Sync,
{
    #[cfg(feature = "rayon")]
    if data.len() >= PARALLEL_MIN_ELEMS {
        data.par_chunks_mut(PARALLEL_CHUNK_ELEMS)
            .for_each(|chunk| map_chunk_inplace(chunk, op));
        return;
    }
    map_chunk_inplace(data, op);
}

/// Write `op(src[i])` to `dst[i]` for every element, like [`map_inplace`].
///
/// # Panics
///
/// If `src` and `dst` differ in length.
pub fn map_into<E, F>(src: &[E], dst: &mut [E], op: F)
where
    E: Copy + Send + Sync,
    F: Fn(E) -> E + Copy + Send + Sync,
{
    assert_eq!(src.len(), dst.len(), "map_into: length mismatch");
    #[cfg(feature = "rayon")]
    if dst.len() >= PARALLEL_MIN_ELEMS {
        dst.par_chunks_mut(PARALLEL_CHUNK_ELEMS)
            .zip(src.par_chunks(PARALLEL_CHUNK_ELEMS))
            .for_each(|(d, s)| map_chunk_into(s, d, op));
        return;
    }
    map_chunk_into(src, dst, op);
}

/// One thread's share of [`map_inplace`], under the best instruction set.
fn map_chunk_inplace<E: Copy, F: Fn(E) -> E>(data: &mut [E], op: F) {
    #[cfg(feature = "simd")]
    map_chunk_inplace_simd(data, op);
    #[cfg(not(feature = "simd"))]
    apply_inplace(data, op);
}

/// One thread's share of [`map_into`], under the best instruction set.
fn map_chunk_into<E: Copy, F: Fn(E) -> E>(src: &[E], dst: &mut [E], op: F) {
    #[cfg(feature = "simd")]
    map_chunk_into_simd(src, dst, op);
    #[cfg(not(feature = "simd"))]
    apply_into(src, dst, op);
}

#[cfg(feature = "simd")]
#[macerator::with_simd]
fn map_chunk_inplace_simd<S: macerator::Simd, E: Copy, F: Fn(E) -> E>(data: &mut [E], op: F) {
    apply_inplace(data, op);
}

#[cfg(feature = "simd")]
#[macerator::with_simd]
fn map_chunk_into_simd<S: macerator::Simd, E: Copy, F: Fn(E) -> E>(
    src: &[E],
    dst: &mut [E],
    op: F,
) {
    apply_into(src, dst, op);
}

/// The loop LLVM vectorises once inlined into a dispatched function.
#[inline(always)]
fn apply_inplace<E: Copy, F: Fn(E) -> E>(data: &mut [E], op: F) {
    for x in data.iter_mut() {
        *x = op(*x);
    }
}

#[inline(always)]
fn apply_into<E: Copy, F: Fn(E) -> E>(src: &[E], dst: &mut [E], op: F) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = op(s);
    }
}
