//! Flex's element-wise binary ops and contiguous copies on strided layouts (the patched block walk
//! of `vendor/burn-flex`, issue 19): broadcasts over leading, middle and trailing dims on either
//! operand, permuted, narrowed and flipped views, ND permuted copies and `slice_assign` into a
//! strided cache, in f32 and bf16, on sizes below and above the rayon split (32768 elements),
//! each against a plain-Rust reference computed from the input `TensorData`.

use std::ops::{Add, Div, Mul, Sub};

use burn::backend::Flex;
use burn::tensor::{bf16, DType, Tensor, TensorData};

type B = Flex<f32>;

/// A strided view over a flat buffer, the plain-Rust reference of a Flex tensor view.
#[derive(Clone)]
struct View {
    data: Vec<f32>,
    shape: Vec<usize>,
    strides: Vec<isize>,
    offset: isize,
}

impl View {
    /// Contiguous `shape` filled with deterministic values in `[lo, lo + 2)`, rounded to `dtype`.
    fn new(shape: &[usize], seed: usize, lo: f32, dtype: DType) -> Self {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|i| {
                let v = lo + ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5;
                round(v, dtype)
            })
            .collect();
        let mut strides = vec![1isize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1] as isize;
        }
        Self {
            data,
            shape: shape.to_vec(),
            strides,
            offset: 0,
        }
    }

    fn tensor<const D: usize>(&self, dtype: DType) -> Tensor<B, D> {
        let data = TensorData::new(self.data.clone(), self.shape.clone());
        Tensor::<B, D>::from_data(data, &Default::default()).cast(dtype)
    }

    fn permute(mut self, axes: &[usize]) -> Self {
        self.shape = axes.iter().map(|&a| self.shape[a]).collect();
        self.strides = axes.iter().map(|&a| self.strides[a]).collect();
        self
    }

    fn narrow(mut self, dim: usize, start: usize, len: usize) -> Self {
        self.offset += start as isize * self.strides[dim];
        self.shape[dim] = len;
        self
    }

    fn flip(mut self, dim: usize) -> Self {
        self.offset += (self.shape[dim] as isize - 1) * self.strides[dim];
        self.strides[dim] = -self.strides[dim];
        self
    }

    /// The element at `index` of the broadcast of this view to `index.len()` dims.
    fn at(&self, index: &[usize]) -> f32 {
        let lead = index.len() - self.shape.len();
        let pos = self
            .shape
            .iter()
            .enumerate()
            .fold(self.offset, |pos, (d, &size)| {
                let i = if size == 1 { 0 } else { index[lead + d] };
                pos + i as isize * self.strides[d]
            });
        self.data[pos as usize]
    }
}

fn round(v: f32, dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// Every multi-index of `shape` in row-major order.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|mut linear| {
            let mut index = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                index[d] = linear % shape[d];
                linear /= shape[d];
            }
            index
        })
        .collect()
}

fn values<const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .cast(DType::F32)
        .into_data()
        .to_vec::<f32>()
        .expect("f32 values")
}

/// The binary ops under test: the four SIMD ones and one custom op without a fast path.
#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

const OPS: [Op; 5] = [Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Pow];

/// The arithmetic [`Op`] applies: on Flex tensors and on the f32 reference alike.
trait Arithmetic:
    Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + Sized
{
    fn pow(self, exponent: Self) -> Self;
}

impl Arithmetic for f32 {
    fn pow(self, exponent: Self) -> Self {
        self.powf(exponent)
    }
}

impl<const D: usize> Arithmetic for Tensor<B, D> {
    fn pow(self, exponent: Self) -> Self {
        self.powf(exponent)
    }
}

impl Op {
    fn apply<T: Arithmetic>(self, a: T, b: T) -> T {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
            Op::Pow => a.pow(b),
        }
    }
}

/// A zero-copy view step, applied alike to a Flex tensor and to its reference [`View`].
#[derive(Clone, Copy)]
enum Step {
    Permute(&'static [usize]),
    Narrow(usize, usize, usize),
    Flip(usize),
}

fn view_of(mut view: View, steps: &[Step]) -> View {
    for step in steps {
        view = match *step {
            Step::Permute(axes) => view.permute(axes),
            Step::Narrow(dim, start, len) => view.narrow(dim, start, len),
            Step::Flip(dim) => view.flip(dim),
        };
    }
    view
}

fn tensor_of<const D: usize>(base: &View, steps: &[Step], dtype: DType) -> Tensor<B, D> {
    steps
        .iter()
        .fold(base.tensor::<D>(dtype), |t, step| match *step {
            Step::Permute(axes) => t.permute(<[usize; D]>::try_from(axes).expect("rank D axes")),
            Step::Narrow(dim, start, len) => t.narrow(dim, start, len),
            Step::Flip(dim) => t.flip([dim as isize]),
        })
}

/// `op(lhs, rhs)` on Flex, each operand a contiguous base under view steps, against the
/// reference in `dtype`, exactly: Flex computes each element as the reference does (f32
/// arithmetic, rounded once to `dtype`).
fn check_binary<const D: usize>(
    case: &str,
    (lhs_base, lhs_steps): (&View, &[Step]),
    (rhs_base, rhs_steps): (&View, &[Step]),
    dtype: DType,
) {
    let lhs = view_of(lhs_base.clone(), lhs_steps);
    let rhs = view_of(rhs_base.clone(), rhs_steps);
    let out_shape: Vec<usize> = (0..D).map(|d| lhs.shape[d].max(rhs.shape[d])).collect();
    for op in OPS {
        let actual = values(op.apply(
            tensor_of::<D>(lhs_base, lhs_steps, dtype),
            tensor_of::<D>(rhs_base, rhs_steps, dtype),
        ));
        let expected: Vec<f32> = indices(&out_shape)
            .iter()
            .map(|i| round(op.apply(lhs.at(i), rhs.at(i)), dtype))
            .collect();
        assert_eq!(
            actual.len(),
            expected.len(),
            "{case} {op:?} {dtype:?}: length"
        );
        let bad = actual
            .iter()
            .zip(&expected)
            .position(|(a, e)| a.to_bits() != e.to_bits() && !(a.is_nan() && e.is_nan()));
        if let Some(i) = bad {
            panic!(
                "{case} {op:?} {dtype:?} {out_shape:?}: element {i} is {} instead of {}",
                actual[i], expected[i]
            );
        }
    }
}

const DTYPES: [DType; 2] = [DType::F32, DType::BF16];

/// Each pair of shapes broadcast against each other, both ways round, in every dtype.
fn check_broadcasts<const D: usize>(pairs: &[([usize; D], [usize; D])]) {
    for dtype in DTYPES {
        for (a, b) in pairs {
            let lhs = View::new(a, 1, 0.5, dtype);
            let rhs = View::new(b, 2, 0.5, dtype);
            check_binary::<D>("a op b", (&lhs, &[]), (&rhs, &[]), dtype);
            check_binary::<D>("b op a", (&rhs, &[]), (&lhs, &[]), dtype);
        }
    }
}

#[test]
fn broadcast_over_middle_dims_like_the_attention_bias() {
    // scores [b, kv, groups, seq, total] op bias [b, 1, 1, seq, total]
    check_broadcasts::<5>(&[
        ([2, 3, 2, 5, 7], [2, 1, 1, 5, 7]),
        ([1, 2, 7, 48, 80], [1, 1, 1, 48, 80]),
    ]);
}

#[test]
fn broadcast_like_rope_and_over_leading_and_trailing_dims() {
    check_broadcasts::<4>(&[
        // RoPE: x [b, seq, heads, dim] * cos [1, seq, 1, dim], below and above the split.
        ([2, 5, 3, 8], [1, 5, 1, 8]),
        ([2, 64, 4, 64], [1, 64, 1, 64]),
        // shared row over leading dims, per-row scalar, one value over a middle dim
        ([3, 4, 5, 6], [1, 1, 1, 6]),
        ([3, 4, 5, 6], [3, 4, 5, 1]),
        ([3, 4, 5, 6], [3, 1, 5, 6]),
        ([4, 96, 5, 18], [4, 96, 1, 18]),
        ([4, 96, 5, 18], [4, 96, 5, 1]),
        // both sides broadcast
        ([3, 1, 5, 1], [1, 4, 1, 6]),
        ([8, 1, 96, 1], [1, 48, 1, 24]),
    ]);
}

#[test]
fn permuted_narrowed_and_flipped_views() {
    for dtype in DTYPES {
        for size in [4usize, 96] {
            let lhs = View::new(&[size, 6, 5, 8], 5, 0.5, dtype);
            let rhs = View::new(&[8, size, 1, 6], 6, 0.5, dtype);
            let same = View::new(&[size, 6, 5, 8], 7, 0.5, dtype);
            // [size, 5, 8, 6] against [size, 1, 8, 6]
            check_binary::<4>(
                "permuted op permuted broadcast",
                (&lhs, &[Step::Permute(&[0, 2, 3, 1])]),
                (&rhs, &[Step::Permute(&[1, 2, 0, 3])]),
                dtype,
            );
            // transposed inner dims on both sides, no broadcast
            check_binary::<4>(
                "permuted op permuted",
                (&lhs, &[Step::Permute(&[3, 1, 2, 0])]),
                (&same, &[Step::Permute(&[3, 1, 2, 0])]),
                dtype,
            );
            // [size, 4, 5, 5] against [size, 4, 1, 5]
            check_binary::<4>(
                "narrowed op narrowed permuted",
                (&lhs, &[Step::Narrow(1, 1, 4), Step::Narrow(3, 2, 5)]),
                (
                    &rhs,
                    &[
                        Step::Permute(&[1, 3, 2, 0]),
                        Step::Narrow(1, 1, 4),
                        Step::Narrow(3, 3, 5),
                    ],
                ),
                dtype,
            );
            check_binary::<4>(
                "flipped op flipped",
                (&lhs, &[Step::Flip(1), Step::Flip(3)]),
                (&same, &[Step::Flip(0)]),
                dtype,
            );
            let bias = View::new(&[1, 6, 1, 8], 8, 0.5, dtype);
            check_binary::<4>(
                "flipped broadcast op flipped",
                (&bias, &[Step::Flip(3)]),
                (&lhs, &[Step::Flip(1), Step::Flip(2)]),
                dtype,
            );
        }
    }
}

/// Flex's contiguous copy of `base` under `steps` (through `reshape` to 1-D) against the
/// reference walk.
fn check_copy<const D: usize>(case: &str, base: &View, steps: &[Step], dtype: DType) {
    let view = view_of(base.clone(), steps);
    let expected: Vec<f32> = indices(&view.shape).iter().map(|i| view.at(i)).collect();
    let flat = tensor_of::<D>(base, steps, dtype).reshape([expected.len()]);
    assert_eq!(values(flat), expected, "{case} {dtype:?} {:?}", base.shape);
}

#[test]
fn nd_permuted_copies() {
    for dtype in DTYPES {
        for seq in [5usize, 200] {
            let x = View::new(&[2, 3, seq, 64], 9, -1.0, dtype);
            // [b, heads, seq, dim] -> [b, seq, heads, dim]: contiguous inner runs of `dim`
            check_copy::<4>(
                "swap_dims(1, 2)",
                &x,
                &[Step::Permute(&[0, 2, 1, 3])],
                dtype,
            );
            // transposed inner dims under outer dims: the per-plane tiled copy
            check_copy::<4>(
                "permute [0, 3, 1, 2]",
                &x,
                &[Step::Permute(&[0, 3, 1, 2])],
                dtype,
            );
            check_copy::<4>(
                "narrowed, permute [3, 0, 2, 1]",
                &x,
                &[Step::Narrow(2, 1, seq - 2), Step::Permute(&[3, 0, 2, 1])],
                dtype,
            );
            check_copy::<4>(
                "flipped and permuted",
                &x,
                &[Step::Flip(2), Step::Permute(&[2, 0, 1, 3]), Step::Flip(3)],
                dtype,
            );
        }
    }
}

#[test]
fn slice_assign_of_permuted_values_into_a_cache() {
    for dtype in DTYPES {
        for (seq, new) in [(12usize, 3usize), (300, 130)] {
            let cache = View::new(&[2, 2, seq, 64], 10, 0.0, dtype);
            let step = View::new(&[2, new, 2, 64], 11, 3.0, dtype);
            let updated = cache.tensor::<4>(dtype).slice_assign(
                [0..2, 0..2, 1..1 + new, 0..64],
                step.tensor::<4>(dtype).swap_dims(1, 2),
            );
            let step_view = step.clone().permute(&[0, 2, 1, 3]);
            let expected: Vec<f32> = indices(&cache.shape)
                .iter()
                .map(|i| {
                    if (1..1 + new).contains(&i[2]) {
                        step_view.at(&[i[0], i[1], i[2] - 1, i[3]])
                    } else {
                        cache.at(i)
                    }
                })
                .collect();
            assert_eq!(
                values(updated),
                expected,
                "slice_assign {seq} {new} {dtype:?}"
            );
        }
    }
}
