//! Attention (scaled dot-product) for CPU.
//!
//! Computes: softmax(Q @ K^T * scale + bias) @ V
//!
//! Two strategies, auto-selected by `attention()` based on sequence length:
//!
//! - **Naive** (seq_kv <= 8*TILE_KV): materializes full score matrix, two
//!   large gemm calls per (batch, head). Faster for short sequences.
//! - **Flash** (seq_kv > 8*TILE_KV): tiles over KV with online softmax,
//!   O(TILE_KV) scratch per row. Better cache behavior for long sequences.
//!
//! Both read query, key and value in place through their strides (no copy of a
//! `swap_dims` view), accept fewer key/value heads than query heads (grouped-query
//! attention), run the (batch, head) pairs in parallel, and write the output in
//! `[batch, seq_q, heads, val_dim]` order so merging the heads is a reshape.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::AttentionModuleOptions;
use burn_std::Bytes;
use bytemuck::Pod;
use num_traits::Float;

use crate::{FlexTensor, Layout};

/// KV tile size for flash attention.
///
/// Chosen so the score row (TILE_KV * 4 bytes for f32) and the V tile
/// [TILE_KV, val_dim] fit comfortably in L1. With val_dim=128 the V tile
/// is 32KB; this fits well on Apple Silicon (64-128KB L1) and modern x86
/// (48KB+ L1d since Golden Cove / Zen 4). On older x86 with 32KB L1d the
/// tile saturates L1 but still benefits from L2 residency.
/// WASM targets use a smaller tile to stay within tighter cache budgets.
#[cfg(target_family = "wasm")]
const TILE_KV: usize = 32;
#[cfg(not(target_family = "wasm"))]
const TILE_KV: usize = 64;

/// Max score matrix size (in elements) for the naive path.
///
/// Naive attention materializes a [seq_q, seq_kv] score matrix per head.
/// When this exceeds the budget, flash attention is used instead.
/// 256K elements = 1 MB for f32, fits comfortably in L2.
const NAIVE_SCORE_BUDGET: usize = 256 * 1024;

/// Auto-selecting attention: picks the fastest strategy based on sequence length.
///
/// Uses naive attention when the score matrix (seq_q * seq_kv) fits within
/// `NAIVE_SCORE_BUDGET`. Falls back to flash attention for larger shapes.
pub fn attention(
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: Option<FlexTensor>,
    attn_bias: Option<FlexTensor>,
    options: AttentionModuleOptions,
) -> FlexTensor {
    debug_assert!(
        query.layout().shape().num_dims() == 4,
        "attention: query must be 4D, got {}D",
        query.layout().shape().num_dims()
    );
    debug_assert!(
        key.layout().shape().num_dims() == 4,
        "attention: key must be 4D, got {}D",
        key.layout().shape().num_dims()
    );
    let seq_q = query.layout().shape()[2];
    let seq_kv = key.layout().shape()[2];
    if seq_q * seq_kv <= NAIVE_SCORE_BUDGET {
        return attention_naive(query, key, value, mask, attn_bias, options);
    }
    attention_flash(query, key, value, mask, attn_bias, options)
}

/// Dispatch attention by dtype, casting f16/bf16 to f32 for computation.
macro_rules! dispatch_attention_dtype {
    ($query:expr, $key:expr, $value:expr, $mask:expr, $attn_bias:expr, $options:expr, $impl_fn:ident) => {{
        let query = $query;
        let key = $key;
        let value = $value;
        let mask = $mask;
        let attn_bias = $attn_bias;
        let options = $options;
        let dtype = query.dtype();
        debug_assert_eq!(key.dtype(), dtype, "attention: key dtype mismatch");
        debug_assert_eq!(value.dtype(), dtype, "attention: value dtype mismatch");
        if let Some(ref b) = attn_bias {
            debug_assert_eq!(b.dtype(), dtype, "attention: attn_bias dtype mismatch");
        }
        match dtype {
            DType::F32 => $impl_fn::<f32>(query, key, value, mask, attn_bias, options),
            DType::F64 => $impl_fn::<f64>(query, key, value, mask, attn_bias, options),
            DType::F16 => {
                use burn_std::f16;
                let r = $impl_fn::<f32>(
                    cast_to_f32(query, f16::to_f32),
                    cast_to_f32(key, f16::to_f32),
                    cast_to_f32(value, f16::to_f32),
                    mask,
                    attn_bias.map(|b| cast_to_f32(b, f16::to_f32)),
                    options,
                );
                cast_from_f32(r, f16::from_f32)
            }
            DType::BF16 => {
                use burn_std::bf16;
                let r = $impl_fn::<f32>(
                    cast_to_f32(query, bf16::to_f32),
                    cast_to_f32(key, bf16::to_f32),
                    cast_to_f32(value, bf16::to_f32),
                    mask,
                    attn_bias.map(|b| cast_to_f32(b, bf16::to_f32)),
                    options,
                );
                cast_from_f32(r, bf16::from_f32)
            }
            dtype => panic!("attention: unsupported dtype {:?}", dtype),
        }
    }};
}

/// Contiguous mask/bias tensor plus the per-batch and per-head element offsets the
/// inner loop should use to locate the `[seq_q, seq_kv]` tile for each `(batch, head)`
/// pair. When a leading dim (batch or heads) is `1` in the source, its step is `0`, so
/// the inner loop re-reads the same tile for every pair without allocating an expanded
/// copy. The tile length itself is always `seq_q * seq_kv` and is computed at the call
/// site, so it is not stored here.
struct BroadcastMaskBias {
    tensor: FlexTensor,
    batch_step: usize,
    head_step: usize,
}

/// Prepare an attention mask or bias for the inner loop, accepting ONNX Attention-23
/// broadcast shapes.
///
/// Stride-0 along the leading `[batch, heads]` dims is handled without materializing,
/// so the common ONNX patterns (`[1, 1, seq_q, seq_kv]`, `[batch, 1, seq_q, seq_kv]`,
/// `[1, heads, seq_q, seq_kv]`) stay zero-copy. That matters especially for the flash
/// path, where materializing an expanded mask/bias would allocate a full
/// `[batch, heads, seq_q, seq_kv]` buffer and negate flash attention's memory
/// efficiency. If the trailing `[seq_q, seq_kv]` dims are themselves broadcast (rare in
/// practice), we fall back to `expand` + `to_contiguous` so the tile stays contiguous
/// in memory for the inner loop's slice-based access.
fn broadcast_attn_mask_bias(
    tensor: FlexTensor,
    target: [usize; 4],
    name: &'static str,
) -> BroadcastMaskBias {
    let ndim = tensor.layout().shape().num_dims();
    assert!(ndim == 4, "attention: {name} must be 4D, got {ndim}D");
    let shape = tensor.layout().shape();
    let src = [shape[0], shape[1], shape[2], shape[3]];
    for i in 0..4 {
        assert!(
            src[i] == target[i] || src[i] == 1,
            "attention: {name} dim {i} must be {} or 1, got {}",
            target[i],
            src[i]
        );
    }

    let tile_len = target[2] * target[3];

    // Broadcast on seq_q or seq_kv: the source's trailing tile has fewer elements
    // than `tile_len`, so per-pair slice access would under-read. Materialize via
    // expand + to_contiguous in that case.
    if src[2] != target[2] || src[3] != target[3] {
        let expanded = crate::ops::expand::expand(tensor, burn_std::Shape::new(target));
        return BroadcastMaskBias {
            tensor: expanded.to_contiguous(),
            batch_step: target[1] * tile_len,
            head_step: tile_len,
        };
    }

    // Trailing dims match the target. Keep the source at its own shape (size
    // `src[0] * src[1] * tile_len`) and zero-out the step for any leading dim of 1.
    BroadcastMaskBias {
        tensor: tensor.to_contiguous(),
        batch_step: if src[0] == 1 { 0 } else { src[1] * tile_len },
        head_step: if src[1] == 1 { 0 } else { tile_len },
    }
}

/// Flash attention: tiled computation with online softmax. Use directly to bypass auto-selection.
pub fn attention_flash(
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: Option<FlexTensor>,
    attn_bias: Option<FlexTensor>,
    options: AttentionModuleOptions,
) -> FlexTensor {
    dispatch_attention_dtype!(query, key, value, mask, attn_bias, options, attention_impl)
}

fn cast_to_f32<E: burn_backend::Element + Pod + Copy>(
    tensor: FlexTensor,
    to_f32: fn(E) -> f32,
) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let shape = tensor.layout().shape().clone();
    let data: &[E] = tensor.storage();
    let f32_data: Vec<f32> = data.iter().map(|&v| to_f32(v)).collect();
    FlexTensor::new(
        Bytes::from_elems(f32_data),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// Converts an attention output (a fresh buffer, whatever its layout) element by element,
/// keeping its layout.
fn cast_from_f32<E: burn_backend::Element + Pod + Copy>(
    tensor: FlexTensor,
    from_f32: fn(f32) -> E,
) -> FlexTensor {
    let data: &[f32] = tensor.storage();
    let half_data: Vec<E> = data.iter().map(|&v| from_f32(v)).collect();
    FlexTensor::new(
        Bytes::from_elems(half_data),
        tensor.layout().clone(),
        E::dtype(),
    )
}

/// Which per-head kernel [`attention_strided`] runs.
#[derive(Clone, Copy)]
enum HeadKernel {
    /// Full `[seq_q, seq_kv]` score matrix, two gemm calls.
    Naive,
    /// KV tiles with an online softmax, `O(seq_q * TILE_KV)` scratch.
    Flash,
}

/// Flash attention for one float type (see [`attention_strided`]).
fn attention_impl<T>(
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: Option<FlexTensor>,
    attn_bias: Option<FlexTensor>,
    options: AttentionModuleOptions,
) -> FlexTensor
where
    T: FlashGemm + burn_backend::Element,
{
    attention_strided::<T>(
        [query, key, value],
        mask,
        attn_bias,
        options,
        HeadKernel::Flash,
    )
}

/// Where the `[rows, cols]` matrix of each `(batch, head)` pair of a 4-D tensor lies in its
/// buffer: the tensor is read in place through its strides (a `swap_dims` view of a
/// `[batch, seq, heads, dim]` projection needs no copy, gemm reads the row stride).
///
/// `groups` query heads share one stored head (grouped-query attention): query head `h`
/// reads stored head `h / groups`, so keys and values need not be repeated per query head.
#[derive(Clone, Copy)]
struct HeadStrides {
    start: isize,
    batch: isize,
    head: isize,
    row: isize,
    col: isize,
    groups: usize,
}

impl HeadStrides {
    fn new(layout: &Layout, groups: usize) -> Self {
        let s = layout.strides();
        Self {
            start: layout.start_offset() as isize,
            batch: s[0],
            head: s[1],
            row: s[2],
            col: s[3],
            groups,
        }
    }

    /// Element offset of the matrix read by query head `head` of batch entry `batch`.
    fn offset(&self, batch: usize, head: usize) -> isize {
        self.start + batch as isize * self.batch + (head / self.groups) as isize * self.head
    }
}

/// A raw pointer that may cross threads: every `(batch, head)` task reads shared inputs
/// and writes its own disjoint rows of the output.
#[derive(Clone, Copy)]
struct SharedPtr<T>(*mut T);

// SAFETY: the tasks only read through input pointers, and each writes output elements no
// other task touches (see `attention_strided`).
unsafe impl<T> Send for SharedPtr<T> {}
unsafe impl<T> Sync for SharedPtr<T> {}

impl<T> SharedPtr<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not its field).
    fn get(self) -> *mut T {
        self.0
    }
}

/// Below this many multiply-adds in all (batch, head) pairs together, the pairs run on the
/// calling thread: a batch-1 decode step's attention (~100 K with a 100-token context) costs
/// less than waking rayon's threads (measured: 3.7 -> 4.1 ms per token at 64 K).
#[cfg(feature = "rayon")]
const PARALLEL_MIN_WORK: usize = 256 * 1024;

/// Scaled dot-product attention over strided inputs, one task per `(batch, head)` pair
/// (parallel over rayon's pool when the `rayon` feature is on).
///
/// Input shapes (all 4D, any strides):
///   query: \[batch, heads, seq_q, head_dim\]
///   key:   \[batch, kv_heads, seq_kv, head_dim\]  (`heads` a multiple of `kv_heads`)
///   value: \[batch, kv_heads, seq_kv, val_dim\]
///   mask:  \[batch, heads, seq_q, seq_kv\] (optional, u8 where nonzero = masked out;
///          `batch` and `heads` may be 1)
///   attn_bias: \[batch, heads, seq_q, seq_kv\] (optional, same broadcasting)
///
/// Output: \[batch, heads, seq_q, val_dim\], stored as a `[batch, seq_q, heads, val_dim]`
/// buffer (its `swap_dims(1, 2)` is contiguous): attention layers merge the heads right
/// after, and that merge is then a reshape instead of a copy.
fn attention_strided<T>(
    qkv: [FlexTensor; 3],
    mask: Option<FlexTensor>,
    attn_bias: Option<FlexTensor>,
    options: AttentionModuleOptions,
    kernel: HeadKernel,
) -> FlexTensor
where
    T: FlashGemm + burn_backend::Element,
{
    if let Some(softcap) = options.softcap {
        assert!(softcap > 0.0, "softcap must be positive, got {softcap}");
    }
    let [query, key, value] = qkv;
    let q_shape = query.layout().shape();
    let k_shape = key.layout().shape();
    let v_shape = value.layout().shape();
    assert!(q_shape.num_dims() == 4, "attention: query must be 4D");
    assert!(k_shape.num_dims() == 4, "attention: key must be 4D");
    assert!(v_shape.num_dims() == 4, "attention: value must be 4D");

    let [batch, heads, seq_q, head_dim] = [q_shape[0], q_shape[1], q_shape[2], q_shape[3]];
    assert!(head_dim > 0, "attention: head_dim must be non-zero");
    let [kv_heads, seq_kv, val_dim] = [k_shape[1], k_shape[2], v_shape[3]];

    assert_eq!(k_shape[0], batch, "attention: key batch mismatch");
    assert!(
        kv_heads > 0 && heads % kv_heads == 0,
        "attention: key heads mismatch ({kv_heads} key heads for {heads} query heads)"
    );
    assert_eq!(k_shape[3], head_dim, "attention: key head_dim mismatch");
    assert_eq!(v_shape[0], batch, "attention: value batch mismatch");
    assert_eq!(v_shape[1], kv_heads, "attention: value heads mismatch");
    assert_eq!(v_shape[2], seq_kv, "attention: value seq_kv mismatch");

    let target = [batch, heads, seq_q, seq_kv];
    let mask_bcast = mask.map(|m| broadcast_attn_mask_bias(m, target, "mask"));
    let bias_bcast = attn_bias.map(|b| broadcast_attn_mask_bias(b, target, "bias"));

    let params = AttentionParams {
        scale: T::from(
            options
                .scale
                .unwrap_or_else(|| 1.0 / (head_dim as f64).sqrt()),
        )
        .unwrap(),
        softcap: options.softcap.map(|s| T::from(s).unwrap()),
        causal_offset: options
            .is_causal
            .then_some(seq_kv as isize - seq_q as isize),
        seq_q,
        seq_kv,
        head_dim,
        val_dim,
    };

    let groups = heads / kv_heads;
    let strides = [
        HeadStrides::new(query.layout(), 1),
        HeadStrides::new(key.layout(), groups),
        HeadStrides::new(value.layout(), groups),
    ];
    let inputs = [
        query.storage::<T>().as_ptr(),
        key.storage::<T>().as_ptr(),
        value.storage::<T>().as_ptr(),
    ]
    .map(|p| SharedPtr(p as *mut T));
    let mask_data: Option<&[u8]> = mask_bcast.as_ref().map(|b| b.tensor.bytes());
    let bias_data: Option<&[T]> = bias_bcast.as_ref().map(|b| b.tensor.storage());
    let tile_len = seq_q * seq_kv;

    let mut output = vec![T::zero(); batch * seq_q * heads * val_dim];
    let out = SharedPtr(output.as_mut_ptr());
    let out_row_stride = heads * val_dim;

    let run_pair = |pair: usize, scratch: &mut ScratchBuffers<T>| {
        let (b, h) = (pair / heads, pair % heads);
        let [q, k, v] = [0, 1, 2].map(|i| {
            let s = strides[i];
            MatRef {
                // SAFETY: the offset is that of an element of the tensor's own layout.
                ptr: unsafe { inputs[i].get().offset(s.offset(b, h)) },
                rs: s.row,
                cs: s.col,
            }
        });
        let mask_off = |m: &BroadcastMaskBias| b * m.batch_step + h * m.head_step;
        let head = HeadArgs {
            q,
            k,
            v,
            // SAFETY: rows `b * seq_q..(b + 1) * seq_q`, columns `h * val_dim..` of the
            // `[batch * seq_q, heads * val_dim]` output: this pair's alone.
            out: unsafe { out.get().add(b * seq_q * out_row_stride + h * val_dim) },
            out_rs: out_row_stride,
            mask: mask_bcast
                .as_ref()
                .zip(mask_data)
                .map(|(m, d)| &d[mask_off(m)..mask_off(m) + tile_len]),
            bias: bias_bcast
                .as_ref()
                .zip(bias_data)
                .map(|(m, d)| &d[mask_off(m)..mask_off(m) + tile_len]),
        };
        match kernel {
            HeadKernel::Naive => naive_attention_head(&head, &params, scratch),
            HeadKernel::Flash => flash_attention_head(&head, &params, scratch),
        }
    };

    let pairs = batch * heads;
    let new_scratch = || ScratchBuffers::new(kernel, &params);
    #[cfg(feature = "rayon")]
    if pairs > 1 && pairs * tile_len * (head_dim + val_dim) >= PARALLEL_MIN_WORK {
        use rayon::prelude::*;
        (0..pairs)
            .into_par_iter()
            .for_each_init(new_scratch, |scratch, pair| run_pair(pair, scratch));
        return attention_output(output, [batch, heads, seq_q, val_dim]);
    }
    let mut scratch = new_scratch();
    for pair in 0..pairs {
        run_pair(pair, &mut scratch);
    }
    attention_output(output, [batch, heads, seq_q, val_dim])
}

/// The `[batch, heads, seq_q, val_dim]` view of an output buffer written in
/// `[batch, seq_q, heads, val_dim]` order.
fn attention_output<T: burn_backend::Element>(output: Vec<T>, shape: [usize; 4]) -> FlexTensor {
    let [_, heads, seq_q, val_dim] = shape;
    let strides = vec![
        (seq_q * heads * val_dim) as isize,
        val_dim as isize,
        (heads * val_dim) as isize,
        1,
    ];
    FlexTensor::new(
        Bytes::from_elems(output),
        Layout::new(burn_std::Shape::from(shape.to_vec()), strides, 0),
        T::dtype(),
    )
}

/// Gemm dispatch for flash attention block matmuls.
///
/// Wraps `gemm::gemm` for f32 and f64 so `flash_attention_head` stays generic.
/// Convention: dst = alpha * dst + beta * (lhs @ rhs)
trait FlashGemm: Float + Pod + Copy + core::ops::AddAssign {
    /// Block matrix multiply used for score and value matmuls.
    ///
    /// # Safety
    /// All pointers must be valid for the given dimensions and strides.
    unsafe fn block_gemm(args: BlockGemmArgs<Self>);

    /// `e^self`: the vectorisable [`exp_f32`](crate::simd::math::exp_f32) in f32, libm's in
    /// f64.
    fn exp_fast(self) -> Self;
}

/// Arguments for a block matrix multiply: dst = alpha * dst + beta * (lhs @ rhs).
struct BlockGemmArgs<T> {
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const T,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const T,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: T,
    beta: T,
}

macro_rules! impl_flash_gemm {
    ($ty:ty, $exp:expr) => {
        impl FlashGemm for $ty {
            fn exp_fast(self) -> Self {
                ($exp)(self)
            }

            unsafe fn block_gemm(a: BlockGemmArgs<Self>) {
                unsafe {
                    gemm::gemm(
                        a.m,
                        a.n,
                        a.k,
                        a.dst,
                        a.dst_cs,
                        a.dst_rs,
                        a.read_dst,
                        a.lhs,
                        a.lhs_cs,
                        a.lhs_rs,
                        a.rhs,
                        a.rhs_cs,
                        a.rhs_rs,
                        a.alpha,
                        a.beta,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
    };
}

impl_flash_gemm!(f32, crate::simd::math::exp_f32);
impl_flash_gemm!(f64, <f64 as Float>::exp);

/// One strided `[rows, cols]` input matrix of a `(batch, head)` pair.
#[derive(Clone, Copy)]
struct MatRef<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

/// The inputs and output of one `(batch, head)` pair.
struct HeadArgs<'a, T> {
    q: MatRef<T>,
    k: MatRef<T>,
    v: MatRef<T>,
    /// First element of the pair's `[seq_q, val_dim]` output, columns contiguous.
    out: *mut T,
    out_rs: usize,
    mask: Option<&'a [u8]>,
    bias: Option<&'a [T]>,
}

impl<T: FlashGemm> HeadArgs<'_, T> {
    /// `dst[seq_q, n] = scale * Q @ K[kv_start..kv_start + n]^T`, row stride `n`.
    fn scores(&self, dst: &mut [T], kv_start: usize, n: usize, p: &AttentionParams<T>) {
        // SAFETY: `q` and `k` address `seq_q` and `seq_kv` rows of `head_dim` elements;
        // `dst` holds `seq_q * n` elements.
        unsafe {
            T::block_gemm(BlockGemmArgs {
                m: p.seq_q,
                n,
                k: p.head_dim,
                dst: dst.as_mut_ptr(),
                dst_cs: 1,
                dst_rs: n as isize,
                read_dst: false,
                lhs: self.q.ptr,
                lhs_cs: self.q.cs,
                lhs_rs: self.q.rs,
                rhs: self.k.ptr.offset(kv_start as isize * self.k.rs),
                rhs_cs: self.k.rs,
                rhs_rs: self.k.cs,
                alpha: T::zero(),
                beta: p.scale,
            });
        }
    }

    /// Scores row `qi`, columns `kv_start..kv_start + row.len()`: softcap, mask, causal
    /// limit and bias applied in place; returns the row's maximum.
    fn prepare_row(&self, row: &mut [T], qi: usize, kv_start: usize, p: &AttentionParams<T>) -> T {
        let cols = qi * p.seq_kv + kv_start..qi * p.seq_kv + kv_start + row.len();
        if let Some(cap) = p.softcap {
            for s in row.iter_mut() {
                *s = cap * (*s / cap).tanh();
            }
        }
        if let Some(mask) = self.mask {
            for (s, &m) in row.iter_mut().zip(&mask[cols.clone()]) {
                if m != 0 {
                    *s = T::neg_infinity();
                }
            }
        }
        if let Some(offset) = p.causal_offset {
            let visible =
                (qi as isize + offset + 1 - kv_start as isize).clamp(0, row.len() as isize);
            row[visible as usize..].fill(T::neg_infinity());
        }
        if let Some(bias) = self.bias {
            for (s, &b) in row.iter_mut().zip(&bias[cols]) {
                *s += b;
            }
        }
        row_max(row)
    }

    /// Output row `qi` (`val_dim` elements).
    ///
    /// # Safety
    /// Only the task owning this pair may call it, one row borrow at a time.
    #[allow(clippy::mut_from_ref)]
    unsafe fn out_row(&self, qi: usize, val_dim: usize) -> &mut [T] {
        unsafe { core::slice::from_raw_parts_mut(self.out.add(qi * self.out_rs), val_dim) }
    }
}

/// Lanes of the independent accumulators in [`row_max`] and [`exp_shifted_sum`], so the
/// reductions vectorise.
const LANES: usize = 8;

/// Maximum of a scores row (`-inf` when empty or fully masked).
fn row_max<T: Float>(row: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(T::neg_infinity(), |m, &x| if x > m { x } else { m })
}

/// `row = exp(row - max)` in place; returns the sum of the new row.
fn exp_shifted_sum<T: FlashGemm>(row: &mut [T], max: T) -> T {
    let mut lanes = [T::zero(); LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (acc, s) in lanes.iter_mut().zip(chunk) {
            *s = (*s - max).exp_fast();
            *acc = *acc + *s;
        }
    }
    let mut tail_sum = T::zero();
    for s in chunks.into_remainder() {
        *s = (*s - max).exp_fast();
        tail_sum = tail_sum + *s;
    }
    lanes.iter().fold(tail_sum, |sum, &x| sum + x)
}

/// Multiplies a row by `factor`.
fn scale_row<T: Float>(row: &mut [T], factor: T) {
    for x in row.iter_mut() {
        *x = *x * factor;
    }
}

/// Scratch of one task, reused across the `(batch, head)` pairs it runs.
struct ScratchBuffers<T> {
    /// Scores: `[seq_q, seq_kv]` (naive) or `[seq_q, TILE_KV]` (flash).
    scores: Vec<T>,
    /// Running row maxima (flash) or reciprocal row sums (naive).
    row_max: Vec<T>,
    row_sum: Vec<T>,
    /// Flash's unnormalised `[seq_q, val_dim]` output accumulator.
    acc: Vec<T>,
}

impl<T: Float> ScratchBuffers<T> {
    fn new(kernel: HeadKernel, p: &AttentionParams<T>) -> Self {
        let (score_cols, acc) = match kernel {
            HeadKernel::Naive => (p.seq_kv, 0),
            HeadKernel::Flash => (TILE_KV, p.seq_q * p.val_dim),
        };
        Self {
            scores: vec![T::zero(); p.seq_q * score_cols],
            row_max: vec![T::neg_infinity(); p.seq_q],
            row_sum: vec![T::zero(); p.seq_q],
            acc: vec![T::zero(); acc],
        }
    }
}

/// Parameters shared by every (batch, head) pair.
struct AttentionParams<T> {
    scale: T,
    softcap: Option<T>,
    causal_offset: Option<isize>,
    seq_q: usize,
    seq_kv: usize,
    head_dim: usize,
    val_dim: usize,
}

/// Process a single (batch, head) pair with flash attention.
///
/// Per KV tile: `scores = scale * Q @ K_tile^T` (gemm), per row softcap / mask / bias and
/// the online softmax update (running max and sum, rescaled accumulator), then
/// `acc += P @ V_tile` (gemm). Finally `out = acc / row_sum` (rows with every key masked
/// stay zero).
fn flash_attention_head<T: FlashGemm>(
    head: &HeadArgs<'_, T>,
    p: &AttentionParams<T>,
    scratch: &mut ScratchBuffers<T>,
) {
    let (seq_q, val_dim) = (p.seq_q, p.val_dim);
    let neg_inf = T::neg_infinity();
    let ScratchBuffers {
        scores,
        row_max,
        row_sum,
        acc,
    } = scratch;
    row_max.fill(neg_inf);
    row_sum.fill(T::zero());
    acc.fill(T::zero());

    for kv_start in (0..p.seq_kv).step_by(TILE_KV) {
        let tile_kv = TILE_KV.min(p.seq_kv - kv_start);
        let tile = &mut scores[..seq_q * tile_kv];
        head.scores(tile, kv_start, tile_kv, p);

        for (qi, row) in tile.chunks_exact_mut(tile_kv).enumerate() {
            let tile_max = head.prepare_row(row, qi, kv_start, p);
            if tile_max == neg_inf {
                // All masked: zero out scores so gemm contributes nothing
                row.fill(T::zero());
                continue;
            }
            let new_max = if row_max[qi] > tile_max {
                row_max[qi]
            } else {
                tile_max
            };
            let tile_sum = exp_shifted_sum(row, new_max);
            let correction = if row_max[qi] == neg_inf {
                T::zero()
            } else {
                (row_max[qi] - new_max).exp()
            };
            scale_row(&mut acc[qi * val_dim..(qi + 1) * val_dim], correction);
            row_sum[qi] = row_sum[qi] * correction + tile_sum;
            row_max[qi] = new_max;
        }

        // acc[seq_q, val_dim] += P[seq_q, tile_kv] @ V_tile[tile_kv, val_dim]
        // SAFETY: `v` addresses `seq_kv` rows of `val_dim` elements.
        unsafe {
            T::block_gemm(BlockGemmArgs {
                m: seq_q,
                n: val_dim,
                k: tile_kv,
                dst: acc.as_mut_ptr(),
                dst_cs: 1,
                dst_rs: val_dim as isize,
                read_dst: true,
                lhs: tile.as_ptr(),
                lhs_cs: 1,
                lhs_rs: tile_kv as isize,
                rhs: head.v.ptr.offset(kv_start as isize * head.v.rs),
                rhs_cs: head.v.cs,
                rhs_rs: head.v.rs,
                alpha: T::one(),
                beta: T::one(),
            });
        }
    }

    for (qi, acc_row) in acc.chunks_exact(val_dim).enumerate() {
        let inv_sum = if row_sum[qi] > T::zero() {
            T::one() / row_sum[qi]
        } else {
            T::zero()
        };
        // SAFETY: this task owns the pair's output rows.
        let out_row = unsafe { head.out_row(qi, val_dim) };
        for (o, &a) in out_row.iter_mut().zip(acc_row) {
            *o = a * inv_sum;
        }
    }
}

/// Naive attention: mathematically equivalent to flash but without KV tiling.
///
/// Materializes the full [seq_q, seq_kv] score matrix, applies scale/softcap/mask/causal/bias,
/// row-wise softmax, then a single output matmul. Two large gemm calls per (batch, head).
///
/// Faster than flash for short sequences. Also useful as a benchmarking baseline.
pub fn attention_naive(
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: Option<FlexTensor>,
    attn_bias: Option<FlexTensor>,
    options: AttentionModuleOptions,
) -> FlexTensor {
    dispatch_attention_dtype!(
        query,
        key,
        value,
        mask,
        attn_bias,
        options,
        attention_naive_impl
    )
}

/// Naive attention for one float type (see [`attention_strided`]).
fn attention_naive_impl<T>(
    query: FlexTensor,
    key: FlexTensor,
    value: FlexTensor,
    mask: Option<FlexTensor>,
    attn_bias: Option<FlexTensor>,
    options: AttentionModuleOptions,
) -> FlexTensor
where
    T: FlashGemm + burn_backend::Element,
{
    attention_strided::<T>(
        [query, key, value],
        mask,
        attn_bias,
        options,
        HeadKernel::Naive,
    )
}

/// Process a single (batch, head) pair with naive (non-tiled) attention.
///
/// 1. `scores[seq_q, seq_kv] = scale * Q @ K^T`             (one gemm)
/// 2. softcap / mask / causal / bias, `exp(s - max)` per row (row sums kept)
/// 3. `out[seq_q, val_dim] = P @ V`, each row divided by its sum (one gemm + a pass over
///    the `val_dim`-wide output instead of the `seq_kv`-wide probabilities)
fn naive_attention_head<T: FlashGemm>(
    head: &HeadArgs<'_, T>,
    p: &AttentionParams<T>,
    scratch: &mut ScratchBuffers<T>,
) {
    let (seq_kv, val_dim) = (p.seq_kv, p.val_dim);
    let scores = &mut scratch.scores;
    let inv_sums = &mut scratch.row_sum;
    head.scores(scores, 0, seq_kv, p);

    for (qi, row) in scores.chunks_exact_mut(seq_kv).enumerate() {
        let max = head.prepare_row(row, qi, 0, p);
        inv_sums[qi] = if max == T::neg_infinity() {
            row.fill(T::zero());
            T::zero()
        } else {
            T::one() / exp_shifted_sum(row, max)
        };
    }

    // SAFETY: `v` addresses `seq_kv` rows of `val_dim` elements; the output rows are this
    // pair's own (row stride `out_rs`, columns contiguous).
    unsafe {
        T::block_gemm(BlockGemmArgs {
            m: p.seq_q,
            n: val_dim,
            k: seq_kv,
            dst: head.out,
            dst_cs: 1,
            dst_rs: head.out_rs as isize,
            read_dst: false,
            lhs: scores.as_ptr(),
            lhs_cs: 1,
            lhs_rs: seq_kv as isize,
            rhs: head.v.ptr,
            rhs_cs: head.v.cs,
            rhs_rs: head.v.rs,
            alpha: T::zero(),
            beta: T::one(),
        });
    }
    for (qi, &inv_sum) in inv_sums.iter().enumerate() {
        // SAFETY: this task owns the pair's output rows.
        scale_row(unsafe { head.out_row(qi, val_dim) }, inv_sum);
    }
}

// Tests kept here exercise flex-specific internals: direct calls into
// `attention_flash` / `attention_naive` (the public `attention()` dispatcher
// routes small shapes to naive so flash-path coverage requires a direct
// call), the `broadcast_attn_mask_bias` helper's rank/dim validation,
// flex-internal tiling and online-softmax correction paths, and
// dtype-specific kernels (f16/f64). Generic attention semantics (causal,
// custom scale, softcap, cross-attention, bool mask, additive bias,
// multi-batch/multi-head, single-element) live in
// crates/burn-backend-tests/tests/tensor/float/module/attention.rs, which
// exercises every backend. When adding new tests, keep them here only if
// they probe flex internals; otherwise add them to that suite.
#[cfg(test)]
mod tests {
    use alloc::{vec, vec::Vec};
    use burn_backend::DType;
    use burn_backend::ops::AttentionModuleOptions;
    use burn_std::{BoolStore, Bytes, Shape, f16};

    use crate::{FlexTensor, Layout};

    fn flex_f32(data: Vec<f32>, shape: &[usize]) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
    }

    fn flex_f64(data: Vec<f64>, shape: &[usize]) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F64,
        )
    }

    fn flex_f16(data: Vec<f16>, shape: &[usize]) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F16,
        )
    }

    fn flex_bool(data: Vec<u8>, shape: &[usize]) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::Bool(BoolStore::Native),
        )
    }

    /// Assert two attention-output slices are elementwise close. Used by the
    /// flash broadcast tests below.
    fn assert_attention_outputs_close(bcast: &[f32], full: &[f32], label: &str) {
        assert_eq!(bcast.len(), full.len(), "{label}: length mismatch");
        for (i, (&a, &b)) in bcast.iter().zip(full).enumerate() {
            assert!((a - b).abs() < 1e-5, "{label} mismatch at {i}: {a} vs {b}");
        }
    }

    #[test]
    fn test_flash_bias_broadcast_across_batch_and_heads() {
        // Exercises the flash path for a `[1, 1, seq_q, seq_kv]` broadcast
        // bias. The dispatcher in `attention()` routes to naive for
        // `seq_q * seq_kv <= NAIVE_SCORE_BUDGET` (and the backend-tests
        // attention suite uses small shapes), so the flash entry needs a
        // direct call to stay covered. General broadcast semantics for the
        // main `attention()` path live in
        // crates/burn-backend-tests/tests/tensor/float/module/attention.rs.
        let batch = 2;
        let heads = 2;
        let seq_q = 3;
        let seq_kv = 5;
        let head_dim = 4;

        let mk = |shape: &[usize], g: &dyn Fn(usize) -> f32| -> FlexTensor {
            let len: usize = shape.iter().product();
            flex_f32((0..len).map(g).collect(), shape)
        };

        let q = mk(&[batch, heads, seq_q, head_dim], &|i| {
            (i as f32 * 0.1).sin()
        });
        let k = mk(&[batch, heads, seq_kv, head_dim], &|i| {
            (i as f32 * 0.1 + 1.0).sin()
        });
        let v = mk(&[batch, heads, seq_kv, head_dim], &|i| {
            (i as f32 * 0.1 + 2.0).sin()
        });

        let bias_tile: Vec<f32> = (0..seq_q * seq_kv)
            .map(|i| (i as f32 * 0.4).sin())
            .collect();
        let bias_bcast = flex_f32(bias_tile.clone(), &[1, 1, seq_q, seq_kv]);
        let bias_full_vec: Vec<f32> = bias_tile
            .iter()
            .cloned()
            .cycle()
            .take(batch * heads * seq_q * seq_kv)
            .collect();
        let bias_full = flex_f32(bias_full_vec, &[batch, heads, seq_q, seq_kv]);

        let out_bcast = super::attention_flash(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            Some(bias_bcast),
            Default::default(),
        );
        let out_full = super::attention_flash(q, k, v, None, Some(bias_full), Default::default());

        let bcast: &[f32] = out_bcast.storage();
        let full: &[f32] = out_full.storage();
        assert_attention_outputs_close(bcast, full, "flash bias[1,1,sq,skv]");
    }

    #[test]
    fn test_flash_bool_mask_broadcast_across_batch_and_heads() {
        // Flash-path counterpart to the bias broadcast test, but for a
        // `[1, 1, seq_q, seq_kv]` bool mask. The mask (u8) slicing path with
        // stride-0 batch/head steps is a different branch from the bias
        // (f32) path, so both need direct flash coverage.
        let batch = 2;
        let heads = 2;
        let seq_q = 3;
        let seq_kv = 5;
        let head_dim = 4;

        let mk = |shape: &[usize], g: &dyn Fn(usize) -> f32| -> FlexTensor {
            let len: usize = shape.iter().product();
            flex_f32((0..len).map(g).collect(), shape)
        };

        let q = mk(&[batch, heads, seq_q, head_dim], &|i| {
            (i as f32 * 0.1).sin()
        });
        let k = mk(&[batch, heads, seq_kv, head_dim], &|i| {
            (i as f32 * 0.1 + 1.0).sin()
        });
        let v = mk(&[batch, heads, seq_kv, head_dim], &|i| {
            (i as f32 * 0.1 + 2.0).sin()
        });

        // Mask out columns 3 and 4 (1 == masked out).
        let mask_tile: Vec<u8> = (0..seq_q * seq_kv)
            .map(|i| if (i % seq_kv) >= 3 { 1u8 } else { 0u8 })
            .collect();
        let mask_bcast = flex_bool(mask_tile.clone(), &[1, 1, seq_q, seq_kv]);
        let mask_full_vec: Vec<u8> = mask_tile
            .iter()
            .copied()
            .cycle()
            .take(batch * heads * seq_q * seq_kv)
            .collect();
        let mask_full = flex_bool(mask_full_vec, &[batch, heads, seq_q, seq_kv]);

        let out_bcast = super::attention_flash(
            q.clone(),
            k.clone(),
            v.clone(),
            Some(mask_bcast),
            None,
            Default::default(),
        );
        let out_full = super::attention_flash(q, k, v, Some(mask_full), None, Default::default());

        let bcast: &[f32] = out_bcast.storage();
        let full: &[f32] = out_full.storage();
        assert_attention_outputs_close(bcast, full, "flash bool mask[1,1,sq,skv]");
    }

    #[test]
    #[should_panic(expected = "must be 4D")]
    fn test_mask_wrong_rank_panics() {
        // Contract: the broadcast helper rejects non-4D mask/bias up-front
        // with a clearer message than `expand`'s rank prepending would produce.
        let mask = flex_bool(vec![0u8; 6], &[2, 3]);
        super::broadcast_attn_mask_bias(mask, [1, 1, 2, 3], "mask");
    }

    #[test]
    #[should_panic(expected = "bias dim 1 must be 3 or 1, got 2")]
    fn test_bias_incompatible_dim_panics() {
        // Contract: a dim that is neither equal to target nor `1` is a hard
        // error. Here heads=2 in the bias but target heads=3.
        let bias = flex_f32(vec![0.0f32; 2 * 2 * 4 * 5], &[2, 2, 4, 5]);
        super::broadcast_attn_mask_bias(bias, [2, 3, 4, 5], "bias");
    }

    #[test]
    fn test_multi_tile_seq_kv() {
        // seq_kv > TILE_KV (64) exercises tiling with online softmax
        // correction. 128 keys = exactly 2 tiles.
        let seq_q = 2;
        let seq_kv = 128;
        let head_dim = 4;
        let val_dim = 2;

        // Q: first query selects dim 0, second selects dim 1.
        let mut q_data = vec![0.0f32; seq_q * head_dim];
        q_data[0] = 1.0;
        q_data[head_dim + 1] = 1.0;

        // K: all keys identical so all scores are equal.
        let k_data = vec![0.1f32; seq_kv * head_dim];

        // V: linearly increasing values.
        let mut v_data = vec![0.0f32; seq_kv * val_dim];
        for i in 0..seq_kv {
            v_data[i * val_dim] = i as f32;
            v_data[i * val_dim + 1] = (seq_kv - 1 - i) as f32;
        }

        let q = flex_f32(q_data, &[1, 1, seq_q, head_dim]);
        let k = flex_f32(k_data, &[1, 1, seq_kv, head_dim]);
        let v = flex_f32(v_data, &[1, 1, seq_kv, val_dim]);

        let result = super::attention(q, k, v, None, None, Default::default());
        let data: &[f32] = result.storage();

        // All scores equal -> output = mean of 0..127 = 63.5 for both cols.
        assert_eq!(data.len(), seq_q * val_dim);
        assert!(
            (data[0] - 63.5).abs() < 0.1,
            "expected ~63.5, got {}",
            data[0]
        );
        assert!(
            (data[1] - 63.5).abs() < 0.1,
            "expected ~63.5, got {}",
            data[1]
        );
    }

    #[test]
    fn test_multi_tile_causal() {
        // seq_kv=128 with causal mask: each query sees only up to
        // causal_offset + its own index worth of keys.
        let seq_q = 4;
        let seq_kv = 128;
        let head_dim = 2;
        let val_dim = 1;

        // All queries/keys [1, 0] so all visible scores equal.
        let mut q_data = vec![0.0f32; seq_q * head_dim];
        for i in 0..seq_q {
            q_data[i * head_dim] = 1.0;
        }
        let mut k_data = vec![0.0f32; seq_kv * head_dim];
        for i in 0..seq_kv {
            k_data[i * head_dim] = 1.0;
        }
        let v_data: Vec<f32> = (0..seq_kv).map(|i| i as f32).collect();

        let q = flex_f32(q_data, &[1, 1, seq_q, head_dim]);
        let k = flex_f32(k_data, &[1, 1, seq_kv, head_dim]);
        let v = flex_f32(v_data, &[1, 1, seq_kv, val_dim]);

        let opts = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        let result = super::attention(q, k, v, None, None, opts);
        let data: &[f32] = result.storage();

        // causal_offset = seq_kv - seq_q = 124
        // q[0] sees 0..=124 -> mean 62.0; q[1] 62.5; q[2] 63.0; q[3] 63.5.
        assert_eq!(data.len(), seq_q);
        assert!((data[0] - 62.0).abs() < 0.1, "q0: got {}", data[0]);
        assert!((data[1] - 62.5).abs() < 0.1, "q1: got {}", data[1]);
        assert!((data[2] - 63.0).abs() < 0.1, "q2: got {}", data[2]);
        assert!((data[3] - 63.5).abs() < 0.1, "q3: got {}", data[3]);
    }

    #[test]
    fn test_tile_boundary_mask() {
        // Mask falls exactly on a tile boundary: first 64 keys masked,
        // next 64 visible.
        let seq_q = 1;
        let seq_kv = 128;
        let head_dim = 2;
        let val_dim = 1;

        let q_data = vec![1.0f32, 0.0];
        let k_data = vec![1.0f32, 0.0].repeat(seq_kv);
        let v_data: Vec<f32> = (0..seq_kv).map(|i| i as f32).collect();
        // true == masked out.
        let mask_data: Vec<u8> = (0..seq_kv).map(|i| (i < 64) as u8).collect();

        let q = flex_f32(q_data, &[1, 1, seq_q, head_dim]);
        let k = flex_f32(k_data, &[1, 1, seq_kv, head_dim]);
        let v = flex_f32(v_data, &[1, 1, seq_kv, val_dim]);
        let mask = flex_bool(mask_data, &[1, 1, seq_q, seq_kv]);

        let result = super::attention(q, k, v, Some(mask), None, Default::default());
        let data: &[f32] = result.storage();

        // Visible = 64..128 -> mean of 64..=127 = 95.5.
        assert!(
            (data[0] - 95.5).abs() < 0.1,
            "expected ~95.5, got {}",
            data[0]
        );
    }

    #[test]
    fn test_non_uniform_scores_across_tiles() {
        // Forces the online softmax correction path: tile 1 has much
        // larger scores than tile 0, so the correction factor
        // exp(old_max - new_max) < 1.
        let seq_q = 1;
        let seq_kv = 128;
        let head_dim = 1;
        let val_dim = 1;

        let q_data = vec![1.0f32];
        let mut k_data = vec![0.0f32; seq_kv];
        for k in k_data.iter_mut().take(64) {
            *k = 0.1;
        }
        for k in k_data.iter_mut().skip(64) {
            *k = 5.0;
        }
        let mut v_data = vec![0.0f32; seq_kv];
        for v in v_data.iter_mut().skip(64) {
            *v = 1.0;
        }

        let q = flex_f32(q_data, &[1, 1, seq_q, head_dim]);
        let k = flex_f32(k_data, &[1, 1, seq_kv, head_dim]);
        let v = flex_f32(v_data, &[1, 1, seq_kv, val_dim]);

        let result = super::attention(q, k, v, None, None, Default::default());
        let data: &[f32] = result.storage();

        // Large-score keys (tile 2) dominate softmax -> output ~ 1.0.
        assert!(data[0] > 0.99, "expected ~1.0, got {}", data[0]);
    }

    #[test]
    fn test_partial_last_tile() {
        // seq_kv=100 is not a multiple of TILE_KV=64, so the last tile has
        // 36 elements -> exercises partial-tile gemm and score buffer
        // indexing.
        let seq_q = 2;
        let seq_kv = 100;
        let head_dim = 2;
        let val_dim = 1;

        let q_data = vec![0.1f32, 0.1].repeat(seq_q);
        let k_data = vec![0.1f32, 0.1].repeat(seq_kv);
        let v_data: Vec<f32> = (0..seq_kv).map(|i| i as f32).collect();

        let q = flex_f32(q_data, &[1, 1, seq_q, head_dim]);
        let k = flex_f32(k_data, &[1, 1, seq_kv, head_dim]);
        let v = flex_f32(v_data, &[1, 1, seq_kv, val_dim]);

        let result = super::attention(q, k, v, None, None, Default::default());
        let data: &[f32] = result.storage();

        // Uniform attention -> mean of 0..99 = 49.5.
        assert_eq!(data.len(), seq_q);
        assert!(
            (data[0] - 49.5).abs() < 0.1,
            "expected ~49.5, got {}",
            data[0]
        );
        assert!(
            (data[1] - 49.5).abs() < 0.1,
            "expected ~49.5, got {}",
            data[1]
        );
    }

    /// Verify naive attention produces the same results as flash attention
    /// across various configurations.
    #[test]
    fn test_naive_matches_flash() {
        /// Deterministic tensor for cross-validation tests.
        ///
        /// Uses `i * 997 % N` as a cheap hash: 997 is prime and coprime to
        /// any power-of-two length, so the sequence visits all residues
        /// before repeating. For f32 this gives values in [-0.5, 0.5]. For
        /// bool masks it gives ~30% density with an irregular pattern that
        /// varies across rows (unlike a regular `i % 3` stride).
        fn make_tensor(shape: &[usize], dtype: DType) -> FlexTensor {
            let len: usize = shape.iter().product();
            match dtype {
                DType::F32 => {
                    let data: Vec<f32> =
                        (0..len).map(|i| ((i % 997) as f32 / 997.0) - 0.5).collect();
                    flex_f32(data, shape)
                }
                DType::Bool(_) => {
                    let data: Vec<u8> = (0..len)
                        .map(|i| (i.wrapping_mul(997) % 100 < 30) as u8)
                        .collect();
                    flex_bool(data, shape)
                }
                _ => unreachable!(),
            }
        }

        fn run_both(
            batch: usize,
            heads: usize,
            seq_q: usize,
            seq_kv: usize,
            head_dim: usize,
            val_dim: usize,
            with_mask: bool,
            with_bias: bool,
            options: AttentionModuleOptions,
            label: &str,
        ) {
            let f32_dt = DType::F32;
            let bool_dt = DType::Bool(BoolStore::Native);
            let q = make_tensor(&[batch, heads, seq_q, head_dim], f32_dt);
            let k = make_tensor(&[batch, heads, seq_kv, head_dim], f32_dt);
            let v = make_tensor(&[batch, heads, seq_kv, val_dim], f32_dt);
            let score_shape = [batch, heads, seq_q, seq_kv];
            let mask = with_mask.then(|| make_tensor(&score_shape, bool_dt));
            let bias = with_bias.then(|| make_tensor(&score_shape, f32_dt));

            let flash = super::attention_flash(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.clone(),
                bias.clone(),
                options,
            );
            let naive = super::attention_naive(q, k, v, mask, bias, options);

            let flash_data: &[f32] = flash.storage();
            let naive_data: &[f32] = naive.storage();
            assert_eq!(
                flash_data.len(),
                naive_data.len(),
                "{label}: length mismatch"
            );

            for (i, (&f, &n)) in flash_data.iter().zip(naive_data.iter()).enumerate() {
                let diff = (f - n).abs();
                let tol = 1e-4 * f.abs().max(n.abs()).max(1.0);
                assert!(
                    diff < tol,
                    "{label}: position {i}: flash={f} vs naive={n}, diff={diff}"
                );
            }
        }

        let default = AttentionModuleOptions::default();
        let causal = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        let all_opts = AttentionModuleOptions {
            scale: Some(0.05),
            softcap: Some(30.0),
            is_causal: true,
        };

        run_both(1, 1, 4, 4, 8, 8, false, false, default, "basic_4x4");
        run_both(
            2,
            4,
            8,
            8,
            16,
            16,
            false,
            false,
            default,
            "multi_head_batch",
        );
        run_both(1, 2, 4, 32, 16, 16, false, false, default, "cross_attn");
        run_both(1, 1, 4, 128, 16, 16, false, false, default, "multi_tile");
        run_both(1, 2, 16, 16, 32, 32, false, false, causal, "causal");
        run_both(2, 2, 16, 16, 32, 32, false, false, all_opts, "all_options");
        run_both(1, 1, 32, 256, 64, 64, false, false, causal, "large_causal");
        run_both(1, 2, 8, 8, 16, 16, true, false, default, "with_mask");
        run_both(1, 2, 8, 8, 16, 16, false, true, default, "with_bias");
        run_both(
            2,
            2,
            16,
            128,
            32,
            32,
            true,
            true,
            causal,
            "mask_bias_causal",
        );
        run_both(1, 1, 4, 100, 16, 16, false, false, default, "partial_tile");
        run_both(
            1,
            2,
            8,
            100,
            16,
            16,
            false,
            false,
            causal,
            "partial_tile_causal",
        );
    }

    #[test]
    fn test_f64_flash_attention() {
        let q = flex_f64(vec![1.0f64, 0.0, 0.0, 1.0], &[1, 1, 2, 2]);
        let k = q.clone();
        let v = flex_f64(vec![10.0f64, 20.0], &[1, 1, 2, 1]);

        let result = super::attention(q, k, v, None, None, Default::default());
        let data: &[f64] = result.storage();

        assert!((data[0] - 13.30).abs() < 0.1, "got {}", data[0]);
        assert!((data[1] - 16.70).abs() < 0.1, "got {}", data[1]);
    }

    /// Verify f16 cast-to-f32 round-trip produces correct results for both
    /// paths.
    #[test]
    fn test_f16_attention() {
        let q_vec: Vec<f16> = [1.0f32, 0.0, 0.0, 1.0]
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        let v_vec: Vec<f16> = [10.0f32, 20.0].iter().map(|&v| f16::from_f32(v)).collect();
        let q = flex_f16(q_vec, &[1, 1, 2, 2]);
        let k = q.clone();
        let v = flex_f16(v_vec, &[1, 1, 2, 1]);

        let flash = super::attention_flash(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            None,
            Default::default(),
        );
        let naive = super::attention_naive(q, k, v, None, None, Default::default());

        let flash_data: &[f16] = flash.storage();
        let naive_data: &[f16] = naive.storage();

        // softmax([1/sqrt(2), 0]) = [0.670, 0.330] -> row0: ~13.3, row1: ~16.7
        for (label, data) in [("flash", flash_data), ("naive", naive_data)] {
            let r0 = data[0].to_f32();
            let r1 = data[1].to_f32();
            assert!((r0 - 13.30).abs() < 0.2, "{label} row0: got {r0}");
            assert!((r1 - 16.70).abs() < 0.2, "{label} row1: got {r1}");
        }
    }
}
