//! Pillow's `Image.resize` for 8-bit RGB images, reimplemented bit for bit.
//!
//! This follows Pillow 13's `libImaging/Resample.c`: a separable convolution in two passes
//! through an 8-bit intermediate image, horizontal first unless the height shrinks much more
//! than the width (see [`resize`]). For each output pixel the filter is centred at
//! `(x + 0.5) * scale` in input coordinates and, when downscaling, stretched by the scale
//! factor (antialiasing); its taps are evaluated in `f64`, normalised to sum 1, then turned into
//! fixed-point integers with 22 fractional bits (rounded half away from zero). Each pass sums
//! `u8 * i32` products in an `i32` that starts at one half, then shifts right by 22 and clamps
//! to 0..=255. NEAREST is Pillow's separate affine nearest-neighbour path.

use vlm_hf::Resample;

use crate::{simd, RgbImage};

const PRECISION_BITS: u32 = 32 - 8 - 2;

struct Filter {
    support: f64,
    weight: fn(f64) -> f64,
}

fn box_filter(x: f64) -> f64 {
    if x > -0.5 && x <= 0.5 {
        1.0
    } else {
        0.0
    }
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn hamming_filter(x: f64) -> f64 {
    let x = x.abs();
    if x == 0.0 {
        1.0
    } else if x >= 1.0 {
        0.0
    } else {
        let x = x * std::f64::consts::PI;
        // Pillow writes the constants as C floats (`0.54f + 0.46f * cos(x)`).
        x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
    }
}

fn bicubic_filter(x: f64) -> f64 {
    // Keys' cubic convolution with a = -0.5.
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc_filter(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos_filter(x: f64) -> f64 {
    // Truncated sinc, 3 lobes.
    if (-3.0..3.0).contains(&x) {
        sinc_filter(x) * sinc_filter(x / 3.0)
    } else {
        0.0
    }
}

fn filter_of(resample: Resample) -> Option<Filter> {
    let (support, weight): (f64, fn(f64) -> f64) = match resample {
        Resample::Nearest => return None,
        Resample::Box => (0.5, box_filter),
        Resample::Bilinear => (1.0, bilinear_filter),
        Resample::Hamming => (1.0, hamming_filter),
        Resample::Bicubic => (2.0, bicubic_filter),
        Resample::Lanczos => (3.0, lanczos_filter),
    };
    Some(Filter { support, weight })
}

/// Fixed-point taps for one axis: output pixel `i` reads `len[i]` inputs from `start[i]` with
/// weights `k[i * ksize..][..len[i]]`.
struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the box `in0..in1` of an axis of
/// `in_size` pixels resampled to `out_size` pixels.
fn precompute_coeffs(in_size: usize, in0: f64, in1: f64, out_size: usize, f: &Filter) -> Coeffs {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = f.support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        // C `(int)` casts truncate toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let n = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let v = (f.weight)(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *wx = v;
            ww += v;
        }
        let kk = &mut k[xx * ksize..(xx + 1) * ksize];
        for x in 0..n {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let scaled = v * f64::from(1u32 << PRECISION_BITS);
            kk[x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        start.push(xmin as usize);
        len.push(n);
    }
    Coeffs {
        ksize,
        start,
        len,
        k,
    }
}

/// Pillow's `clip8`: the 8-bit value of a fixed-point sum, clamped to 0..=255 (written as a
/// shift and a clamp, which vectorise).
#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over rows `row0..row0 + rows` of `src` (width `in_w`).
///
/// Each input row is first widened to one `[i32; 4]` per pixel (the fourth lane unused), so the
/// multiply-adds of a tap run on all channels at once (vectorised); the sums are Pillow's.
fn resample_horizontal(
    src: &[u8],
    in_w: usize,
    row0: usize,
    rows: usize,
    out_w: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let mut out = vec![0u8; rows * out_w * 3];
    let mut wide = vec![[0i32; 4]; in_w];
    let rows_in = src[row0 * in_w * 3..(row0 + rows) * in_w * 3].chunks_exact(in_w * 3);
    for (line, out_line) in rows_in.zip(out.chunks_exact_mut(out_w * 3)) {
        horizontal_row(line, &mut wide, out_line, c);
    }
    out
}

simd::kernel! {
/// One output row of [`resample_horizontal`]; `wide` is scratch of the input width.
fn horizontal_row(line: &[u8], wide: &mut [[i32; 4]], out_line: &mut [u8], c: &Coeffs) {
    for (w, p) in wide.iter_mut().zip(line.chunks_exact(3)) {
        *w = [i32::from(p[0]), i32::from(p[1]), i32::from(p[2]), 0];
    }
    let half = 1i32 << (PRECISION_BITS - 1);
    for (xx, o) in out_line.chunks_exact_mut(3).enumerate() {
        let k = &c.k[xx * c.ksize..xx * c.ksize + c.len[xx]];
        let px = &wide[c.start[xx]..c.start[xx] + c.len[xx]];
        let mut s = [half; 4];
        for (p, &w) in px.iter().zip(k) {
            for (a, &v) in s.iter_mut().zip(p) {
                *a = a.wrapping_add(v.wrapping_mul(w));
            }
        }
        o.copy_from_slice(&[clip8(s[0]), clip8(s[1]), clip8(s[2])]);
    }
}
}

/// Vertical pass: `src` is `width` wide; coefficient starts are relative to row `row0`.
fn resample_vertical(src: &[u8], width: usize, row0: usize, out_h: usize, c: &Coeffs) -> Vec<u8> {
    let stride = width * 3;
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, out_line) in out.chunks_exact_mut(stride).enumerate() {
        let k = &c.k[yy * c.ksize..yy * c.ksize + c.len[yy]];
        let first = (c.start[yy] - row0) * stride;
        let lines = &src[first..first + k.len() * stride];
        vertical_row(lines, k, &mut acc, out_line);
    }
    out
}

simd::kernel! {
/// One output row of [`resample_vertical`]: `lines` holds the `k.len()` input rows it reads.
fn vertical_row(lines: &[u8], k: &[i32], acc: &mut [i32], out_line: &mut [u8]) {
    acc.fill(1i32 << (PRECISION_BITS - 1));
    for (line, &w) in lines.chunks_exact(acc.len()).zip(k) {
        for (a, &p) in acc.iter_mut().zip(line) {
            *a = a.wrapping_add(i32::from(p).wrapping_mul(w));
        }
    }
    for (o, &a) in out_line.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}
}

/// Pillow's nearest-neighbour resize (`ImagingScaleAffine`): output pixel `x` reads input
/// `floor((x + 0.5) * in / out)`, the position accumulated in `f64` as Pillow does.
fn resize_nearest(img: &RgbImage, out_w: usize, out_h: usize) -> Vec<u8> {
    let (in_w, in_h) = (img.width as usize, img.height as usize);
    let index = |in_size: usize, out_size: usize| -> Vec<Option<usize>> {
        let step = in_size as f64 / out_size as f64;
        let mut pos = step * 0.5;
        (0..out_size)
            .map(|_| {
                let i = if pos < 0.0 { None } else { Some(pos as usize) };
                pos += step;
                i.filter(|&i| i < in_size)
            })
            .collect()
    };
    let xs = index(in_w, out_w);
    let ys = index(in_h, out_h);
    let mut out = vec![0u8; out_w * out_h * 3];
    for (y, sy) in ys.iter().enumerate() {
        let Some(sy) = *sy else { continue };
        for (x, sx) in xs.iter().enumerate() {
            let Some(sx) = *sx else { continue };
            let s = (sy * in_w + sx) * 3;
            out[(y * out_w + x) * 3..][..3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    out
}

/// Resizes to `width` x `height` exactly as Pillow's `Image.resize(size, resample)` does for an
/// RGB image (no `box`, no `reducing_gap`: what transformers calls).
pub fn resize(img: &RgbImage, width: u32, height: u32, resample: Resample) -> RgbImage {
    let (in_w, in_h) = (img.width as usize, img.height as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (out_w, out_h) == (in_w, in_h) {
        return img.clone();
    }
    if out_w == 0 || out_h == 0 {
        return RgbImage {
            width,
            height,
            data: Vec::new(),
        };
    }
    let Some(filter) = filter_of(resample) else {
        return RgbImage {
            width,
            height,
            data: resize_nearest(img, out_w, out_h),
        };
    };
    let horiz = precompute_coeffs(in_w, 0.0, in_w as f64, out_w, &filter);
    let vert = precompute_coeffs(in_h, 0.0, in_h as f64, out_h, &filter);
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height
    // shrinks by more than twice as many pixels as the width does; the 8-bit intermediate
    // makes the order visible in the output. Checked against Pillow 13.0.0 on 1484 random
    // size pairs (no mismatch): vertical first iff out_h < in_h && in_h - out_h > 2 * (in_w - out_w).
    let (iw, ih, ow, oh) = (in_w as i64, in_h as i64, out_w as i64, out_h as i64);
    let vertical_first = oh < ih && ih - oh > 2 * (iw - ow);

    let data = match (need_horizontal, need_vertical) {
        (true, true) if vertical_first => {
            let tmp = resample_vertical(&img.data, in_w, 0, out_h, &vert);
            resample_horizontal(&tmp, in_w, 0, out_h, out_w, &horiz)
        }
        (true, _) => {
            // Only the rows the vertical pass will read.
            let first = vert.start[0];
            let last = vert.start[out_h - 1] + vert.len[out_h - 1];
            let tmp = resample_horizontal(&img.data, in_w, first, last - first, out_w, &horiz);
            if need_vertical {
                resample_vertical(&tmp, out_w, first, out_h, &vert)
            } else {
                tmp
            }
        }
        (false, _) => resample_vertical(&img.data, in_w, 0, out_h, &vert),
    };
    RgbImage {
        width,
        height,
        data,
    }
}
