use crate::layout::Layout;
use alloc::vec;
use alloc::vec::Vec;

/// Iterator that yields linear indices for strided tensor access.
///
/// Handles non-contiguous tensors (including those with negative strides from flip)
/// by computing the correct storage index for each logical element position.
pub struct StridedIter<'a> {
    /// Current storage index (signed to handle negative strides)
    storage_index: isize,
    multi_index: Vec<usize>,
    layout: &'a Layout,
    remaining: usize,
}

impl<'a> StridedIter<'a> {
    /// Create a new strided iterator for the given layout.
    pub fn new(layout: &'a Layout) -> Self {
        let ndims = layout.num_dims();
        Self {
            storage_index: layout.start_offset() as isize,
            multi_index: vec![0; ndims],
            layout,
            remaining: layout.num_elements(),
        }
    }
}

impl Iterator for StridedIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }

        debug_assert!(
            self.storage_index >= 0,
            "StridedIter: negative storage index"
        );
        let idx = self.storage_index as usize;
        self.remaining -= 1;

        // Advance multi-index (last dimension first, like odometer)
        let shape = self.layout.shape();
        let strides = self.layout.strides();

        for d in (0..shape.num_dims()).rev() {
            self.multi_index[d] += 1;
            if self.multi_index[d] < shape[d] {
                self.storage_index += strides[d];
                break;
            }
            // Wrap around this dimension
            self.multi_index[d] = 0;
            self.storage_index -= (shape[d] as isize - 1) * strides[d];
        }

        Some(idx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedIter<'_> {}

/// Largest rank the block walk handles; Burn tensors stay well below it.
pub(crate) const MAX_RANK: usize = 8;

/// Element count above which element-wise work is split over rayon's
/// threads, in chunks of this many elements (PyTorch's grain size).
pub(crate) const PARALLEL_GRAIN: usize = 32_768;

/// Row-major odometer over a shape shared by `N` strided views: it tracks
/// each view's storage offset at the current multi-index, so a walk pays
/// one add per view per step instead of recomputing offsets.
#[derive(Debug, Clone)]
pub(crate) struct Odometer<const N: usize> {
    ndim: usize,
    shape: [usize; MAX_RANK],
    strides: [[isize; MAX_RANK]; N],
    starts: [isize; N],
    index: [usize; MAX_RANK],
    offsets: [isize; N],
}

impl<const N: usize> Odometer<N> {
    /// Odometer at index 0 over `shape`, view `k` having `strides[k]` and
    /// storage offset `starts[k]` at index 0. `shape.len()` must be at most
    /// [`MAX_RANK`].
    pub(crate) fn new(shape: &[usize], strides: [&[isize]; N], starts: [isize; N]) -> Self {
        let ndim = shape.len();
        assert!(ndim <= MAX_RANK, "Odometer: rank {ndim} above {MAX_RANK}");
        let mut odometer = Self {
            ndim,
            shape: [1; MAX_RANK],
            strides: [[0; MAX_RANK]; N],
            starts,
            index: [0; MAX_RANK],
            offsets: starts,
        };
        odometer.shape[..ndim].copy_from_slice(shape);
        for (dst, src) in odometer.strides.iter_mut().zip(strides) {
            dst[..ndim].copy_from_slice(src);
        }
        odometer
    }

    /// Each view's storage offset at the current index.
    #[inline]
    pub(crate) fn offsets(&self) -> [isize; N] {
        self.offsets
    }

    /// Jump to the row-major position `linear`.
    pub(crate) fn seek(&mut self, mut linear: usize) {
        self.offsets = self.starts;
        for d in (0..self.ndim).rev() {
            let i = linear % self.shape[d];
            linear /= self.shape[d];
            self.index[d] = i;
            for k in 0..N {
                self.offsets[k] += i as isize * self.strides[k][d];
            }
        }
    }

    /// Step to the next row-major position (wrapping to 0 after the last).
    #[inline]
    pub(crate) fn advance(&mut self) {
        for d in (0..self.ndim).rev() {
            self.index[d] += 1;
            if self.index[d] < self.shape[d] {
                for k in 0..N {
                    self.offsets[k] += self.strides[k][d];
                }
                return;
            }
            self.index[d] = 0;
            for k in 0..N {
                self.offsets[k] -= (self.shape[d] as isize - 1) * self.strides[k][d];
            }
        }
    }
}

/// `N` strided views of one logical shape, jointly collapsed to the fewest
/// dims (size-1 dims dropped, adjacent dims merged where every view steps
/// through them as one run), walked as segments of the innermost dim.
///
/// Each segment is a run of `len` logical elements in which view `k` moves
/// by `inner_strides()[k]` (1: a contiguous slice, 0: one broadcast value).
/// This replaces per-element [`StridedIter`] walks for broadcasts over any
/// dims, permuted and sliced views: the per-element work becomes a tight
/// loop (or SIMD kernel) over each segment.
#[derive(Debug, Clone)]
pub(crate) struct BlockWalk<const N: usize> {
    outer: Odometer<N>,
    inner_len: usize,
    inner_strides: [isize; N],
}

impl<const N: usize> BlockWalk<N> {
    /// Walk over `layouts`, which must all have the same shape. `None` when
    /// the collapsed rank exceeds [`MAX_RANK`].
    pub(crate) fn new(layouts: [&Layout; N]) -> Option<Self> {
        let shape = layouts[0].shape();
        debug_assert!(layouts.iter().all(|l| l.shape() == shape));
        // Collapsed dims, innermost first.
        let mut sizes: Vec<usize> = Vec::with_capacity(shape.num_dims());
        let mut strides: [Vec<isize>; N] = core::array::from_fn(|_| Vec::new());
        for d in (0..shape.num_dims()).rev() {
            let size = shape[d];
            if size == 1 {
                continue;
            }
            let merge = sizes.last().is_some_and(|&inner| {
                (0..N).all(|k| {
                    let inner_stride = *strides[k].last().unwrap_or(&0);
                    (inner as isize)
                        .checked_mul(inner_stride)
                        .is_some_and(|run| run == layouts[k].strides()[d])
                })
            });
            if merge {
                let last = sizes.len() - 1;
                sizes[last] *= size;
            } else {
                sizes.push(size);
                for (k, s) in strides.iter_mut().enumerate() {
                    s.push(layouts[k].strides()[d]);
                }
            }
        }
        if sizes.len() > MAX_RANK + 1 {
            return None;
        }
        let inner_len = sizes.first().copied().unwrap_or(1);
        let inner_strides = core::array::from_fn(|k| strides[k].first().copied().unwrap_or(0));
        let outer_sizes: Vec<usize> = sizes.iter().skip(1).rev().copied().collect();
        let outer_strides: [Vec<isize>; N] =
            core::array::from_fn(|k| strides[k].iter().skip(1).rev().copied().collect());
        let starts = core::array::from_fn(|k| layouts[k].start_offset() as isize);
        let outer = Odometer::new(
            &outer_sizes,
            core::array::from_fn(|k| outer_strides[k].as_slice()),
            starts,
        );
        Some(Self {
            outer,
            inner_len,
            inner_strides,
        })
    }

    /// Per-view storage step inside a segment.
    pub(crate) fn inner_strides(&self) -> [isize; N] {
        self.inner_strides
    }

    /// Call `f(offsets, position, len)` for each segment covering the
    /// row-major logical positions `range`: `offsets[k]` is view `k`'s
    /// storage offset at logical `position`.
    pub(crate) fn for_each_segment(
        &self,
        range: core::ops::Range<usize>,
        mut f: impl FnMut([usize; N], usize, usize),
    ) {
        if range.is_empty() {
            return;
        }
        let mut outer = self.outer.clone();
        outer.seek(range.start / self.inner_len);
        let mut skip = range.start % self.inner_len;
        let mut position = range.start;
        while position < range.end {
            let len = (self.inner_len - skip).min(range.end - position);
            let offsets = outer.offsets();
            let at = core::array::from_fn(|k| {
                (offsets[k] + skip as isize * self.inner_strides[k]) as usize
            });
            f(at, position, len);
            position += len;
            skip = 0;
            outer.advance();
        }
    }
}

/// Run `f(start, chunk)` over `dst` cut into chunks of about
/// [`PARALLEL_GRAIN`] elements, each a whole number of `unit`s (`start`: the
/// chunk's position in `dst`), on rayon's threads when there is more than
/// one chunk.
pub(crate) fn for_each_chunk<E: Send>(
    dst: &mut [E],
    unit: usize,
    f: impl Fn(usize, &mut [E]) + Sync,
) {
    #[cfg(feature = "rayon")]
    {
        let chunk_len = PARALLEL_GRAIN.div_ceil(unit.max(1)) * unit.max(1);
        if dst.len() > chunk_len {
            use rayon::prelude::*;
            dst.par_chunks_mut(chunk_len)
                .enumerate()
                .for_each(|(i, chunk)| f(i * chunk_len, chunk));
            return;
        }
    }
    #[cfg(not(feature = "rayon"))]
    let _ = unit;
    f(0, dst);
}

/// Copy `dst.len()` elements of `src` starting at `at`, stepping `step`.
#[inline]
pub(crate) fn gather_segment<E: Copy>(dst: &mut [E], src: &[E], at: usize, step: isize) {
    match step {
        1 => dst.copy_from_slice(&src[at..at + dst.len()]),
        0 => dst.fill(src[at]),
        _ => {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = src[(at as isize + i as isize * step) as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_std::Shape;

    #[test]
    fn test_contiguous_iteration() {
        let layout = Layout::contiguous(Shape::from(vec![2, 3]));
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn test_transposed_iteration() {
        // Original: [[0, 1, 2], [3, 4, 5]] (shape [2, 3], strides [3, 1])
        // Transposed: [[0, 3], [1, 4], [2, 5]] (shape [3, 2], strides [1, 3])
        let layout = Layout::contiguous(Shape::from(vec![2, 3])).transpose(0, 1);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn test_narrowed_iteration() {
        // Original: [[0, 1, 2, 3], [4, 5, 6, 7]] (shape [2, 4])
        // Narrowed dim=1, start=1, len=2: [[1, 2], [5, 6]]
        let layout = Layout::contiguous(Shape::from(vec![2, 4])).narrow(1, 1, 2);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![1, 2, 5, 6]);
    }
}
