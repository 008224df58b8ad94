//! A JPEG decoder that reproduces libjpeg-turbo's output (what Pillow, and so transformers,
//! decode with) bit for bit for the common cases: 8-bit baseline / extended-sequential /
//! progressive Huffman JPEGs with 1 (grayscale) or 3 (YCbCr or RGB) components.
//!
//! libjpeg-turbo's default decompression settings (used by Pillow) are reproduced:
//! `JDCT_ISLOW` (`jidctint.c`, 13-bit fixed point with range-limit table), "fancy" upsampling
//! (`jdsample.c` triangle filters h2v1 / h1v2 / h2v2 with their alternating rounding biases,
//! edge rows and columns replicated), and the `jdcolor.c` YCbCr -> RGB tables (16-bit fixed
//! point). libjpeg-turbo's SIMD kernels for these paths are bit-exact with its C code.
//!
//! Everything else (arithmetic coding, 12-bit samples, lossless / hierarchical frames, CMYK /
//! YCCK, DNL, odd sampling ratios, damaged entropy data) is reported as [`JpegError`] and the
//! caller falls back to the general-purpose decoder.

use ::image::metadata::Orientation;

use crate::simd;

/// Why this decoder declined an image. The reasons are not shown to users (the caller falls
/// back to another decoder) but help when debugging.
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) enum JpegError {
    /// A valid JPEG using a feature this decoder does not implement.
    Unsupported(String),
    /// Malformed data.
    Corrupt(String),
    /// The frame header announces more than the caller admits (width, height, bytes).
    TooLarge(u32, u32, u64),
}

type Result<T> = std::result::Result<T, JpegError>;

fn corrupt<T>(msg: impl Into<String>) -> Result<T> {
    Err(JpegError::Corrupt(msg.into()))
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(JpegError::Unsupported(msg.into()))
}

/// A decoded JPEG before orientation is applied.
pub(crate) struct Decoded {
    pub width: u32,
    pub height: u32,
    /// 1 (grayscale) or 3 (RGB) interleaved channels.
    pub channels: usize,
    pub data: Vec<u8>,
    /// EXIF orientation, or the XMP `tiff:Orientation` digit, as Pillow finds them.
    pub orientation: Option<Orientation>,
}

/// Zigzag index -> natural (row-major) index, with 16 extra entries for corrupt run lengths
/// (libjpeg's `jpeg_natural_order`).
const NATURAL_ORDER: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

// ---------------------------------------------------------------------------------------------
// Huffman tables and the entropy-coded bit reader.

const FAST_BITS: u32 = 9;

struct Huffman {
    /// For every 9-bit prefix: (code length << 8) | symbol, or 0 when the code is longer.
    fast: Vec<u16>,
    maxcode: [i32; 18],
    valoffset: [i32; 18],
    values: Vec<u8>,
}

impl Huffman {
    /// libjpeg's `jpeg_make_d_derived_tbl`.
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Self> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || total > values.len() {
            return corrupt("bad Huffman table");
        }
        let mut sizes = Vec::with_capacity(total);
        for (l, &c) in counts.iter().enumerate() {
            sizes.extend(std::iter::repeat_n(l as u32 + 1, usize::from(c)));
        }
        let mut codes = vec![0u32; total];
        let mut code = 0u32;
        let mut si = sizes.first().copied().unwrap_or(1);
        let mut p = 0;
        while p < total {
            while p < total && sizes[p] == si {
                codes[p] = code;
                code += 1;
                p += 1;
            }
            if code >= (1 << si) {
                return corrupt("bad Huffman table");
            }
            code <<= 1;
            si += 1;
        }
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 18];
        let mut p = 0usize;
        for l in 1..=16 {
            let c = usize::from(counts[l - 1]);
            if c > 0 {
                valoffset[l] = p as i32 - codes[p] as i32;
                p += c;
                maxcode[l] = codes[p - 1] as i32;
            }
        }
        maxcode[17] = 0xFFFFF;
        let mut fast = vec![0u16; 1 << FAST_BITS];
        for (i, (&size, &code)) in sizes.iter().zip(&codes).enumerate() {
            if size <= FAST_BITS {
                let shift = FAST_BITS - size;
                let base = (code << shift) as usize;
                for j in 0..(1usize << shift) {
                    fast[base + j] = ((size as u16) << 8) | u16::from(values[i]);
                }
            }
        }
        Ok(Self {
            fast,
            maxcode,
            valoffset,
            values: values[..total].to_vec(),
        })
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
    /// A marker (or the end of the data) was reached: further bits read as zeros, as libjpeg
    /// supplies them.
    at_marker: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self {
            data,
            pos,
            acc: 0,
            nbits: 0,
            at_marker: false,
        }
    }

    fn fill(&mut self) {
        while self.nbits <= 56 {
            let byte = if self.at_marker || self.pos >= self.data.len() {
                self.at_marker = true;
                0
            } else if self.data[self.pos] == 0xFF {
                match self.data.get(self.pos + 1) {
                    Some(0x00) => {
                        self.pos += 2;
                        0xFF
                    }
                    _ => {
                        self.at_marker = true;
                        0
                    }
                }
            } else {
                self.pos += 1;
                self.data[self.pos - 1]
            };
            self.acc |= u64::from(byte) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    #[inline]
    fn peek(&mut self, n: u32) -> u32 {
        if self.nbits < n {
            self.fill();
        }
        (self.acc >> (64 - n)) as u32
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.acc <<= n;
        self.nbits -= n;
    }

    #[inline]
    fn bits(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.consume(n);
        v as i32
    }

    #[inline]
    fn bit(&mut self) -> bool {
        self.bits(1) != 0
    }

    fn decode(&mut self, h: &Huffman) -> Result<u8> {
        let p = self.peek(16);
        let e = h.fast[(p >> (16 - FAST_BITS)) as usize];
        if e != 0 {
            self.consume(u32::from(e >> 8));
            return Ok(e as u8);
        }
        for l in FAST_BITS + 1..=16 {
            let code = (p >> (16 - l)) as i32;
            if code <= h.maxcode[l as usize] {
                self.consume(l);
                let i = code + h.valoffset[l as usize];
                return match h.values.get(i as usize) {
                    Some(&v) => Ok(v),
                    None => corrupt("bad Huffman code"),
                };
            }
        }
        corrupt("bad Huffman code")
    }

    /// Whether a marker (0xFF then neither a stuffed 0x00 nor a fill 0xFF) starts at `i`.
    fn marker_at(&self, i: usize) -> bool {
        self.data[i] == 0xFF
            && self
                .data
                .get(i + 1)
                .is_some_and(|&b| b != 0x00 && b != 0xFF)
    }

    /// Moves past the RSTn marker that must follow a restart interval.
    fn restart(&mut self) -> Result<()> {
        self.acc = 0;
        self.nbits = 0;
        self.at_marker = false;
        // Skip leftover padding up to the marker.
        while self.pos + 1 < self.data.len() && !self.marker_at(self.pos) {
            self.pos += 1;
        }
        match self.data.get(self.pos + 1) {
            Some(0xD0..=0xD7) => {
                self.pos += 2;
                Ok(())
            }
            _ => corrupt("missing restart marker"),
        }
    }
}

/// HUFF_EXTEND: the signed value of an `s`-bit magnitude category.
#[inline]
fn extend(v: i32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < (1 << (s - 1)) {
        v + (-1 << s) + 1
    } else {
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Buffers kept between images.

/// The most bytes of buffers a thread keeps between images (a 640 x 480 4:2:0 image needs
/// about 1.4 MB; a 4096 x 4096 4:4:4 one 150 MB, which is not kept).
const MAX_KEPT_BYTES: usize = 32 << 20;

/// The coefficient arrays and sample planes of the last image a thread decoded, kept so a
/// stream of images reuses them instead of faulting in fresh zeroed pages for every image
/// (about a tenth of the decode time at 640 x 480).
#[derive(Default)]
struct Pool {
    coefs: Vec<Vec<i16>>,
    samples: Vec<Vec<u8>>,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = std::cell::RefCell::default();
}

/// A zeroed buffer of `len` values, reusing a kept one when there is one.
fn take<T: Copy + Default>(len: usize, kept: fn(&mut Pool) -> &mut Vec<Vec<T>>) -> Vec<T> {
    let mut v = POOL
        .with(|p| kept(&mut p.borrow_mut()).pop())
        .unwrap_or_default();
    v.clear();
    v.resize(len, T::default());
    v
}

/// Keeps the buffers of a decoded image for the next one on this thread, within
/// [`MAX_KEPT_BYTES`].
fn keep(coefs: impl IntoIterator<Item = Vec<i16>>, samples: impl IntoIterator<Item = Vec<u8>>) {
    let coefs: Vec<_> = coefs.into_iter().collect();
    let samples: Vec<_> = samples.into_iter().collect();
    let bytes = coefs.iter().map(|v| v.capacity() * 2).sum::<usize>()
        + samples.iter().map(Vec::capacity).sum::<usize>();
    if bytes <= MAX_KEPT_BYTES {
        POOL.with(|p| *p.borrow_mut() = Pool { coefs, samples });
    }
}

// ---------------------------------------------------------------------------------------------
// Frame, scans, coefficient decoding.

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Width / height of the component's samples (libjpeg's `downsampled_width/height`).
    dw: usize,
    dh: usize,
    /// Blocks actually covering the component (`ceil(dw / 8)`, `ceil(dh / 8)`).
    bw: usize,
    bh: usize,
    /// Blocks allocated: whole MCUs in interleaved scans.
    stride_blocks: usize,
    rows_blocks: usize,
    coefs: Vec<i16>,
    quant: Option<[u16; 64]>,
    dc_table: usize,
    ac_table: usize,
}

struct Frame {
    progressive: bool,
    width: usize,
    height: usize,
    comps: Vec<Component>,
    hmax: usize,
    vmax: usize,
    mcux: usize,
    mcuy: usize,
}

struct Scan {
    comps: Vec<usize>,
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

struct State {
    dc_pred: Vec<i32>,
    eobrun: u32,
}

fn decode_block_baseline(
    r: &mut BitReader,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    block: &mut [i16],
) -> Result<()> {
    let s = u32::from(r.decode(dc)?);
    if s > 16 {
        return corrupt("bad DC magnitude");
    }
    let diff = extend(r.bits(s), s);
    *pred = pred.wrapping_add(diff);
    block[0] = *pred as i16;
    let mut k = 1;
    while k < 64 {
        let rs = r.decode(ac)?;
        let run = usize::from(rs >> 4);
        let s = u32::from(rs & 15);
        if s != 0 {
            k += run;
            let v = extend(r.bits(s), s);
            block[NATURAL_ORDER[k.min(79)]] = v as i16;
        } else {
            if run != 15 {
                break;
            }
            k += 15;
        }
        k += 1;
    }
    Ok(())
}

fn decode_dc_first(
    r: &mut BitReader,
    dc: &Huffman,
    pred: &mut i32,
    al: u32,
    block: &mut [i16],
) -> Result<()> {
    let s = u32::from(r.decode(dc)?);
    if s > 16 {
        return corrupt("bad DC magnitude");
    }
    let diff = extend(r.bits(s), s);
    *pred = pred.wrapping_add(diff);
    block[0] = pred.wrapping_shl(al) as i16;
    Ok(())
}

fn decode_ac_first(
    r: &mut BitReader,
    ac: &Huffman,
    scan: &Scan,
    eobrun: &mut u32,
    block: &mut [i16],
) -> Result<()> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = r.decode(ac)?;
        let run = u32::from(rs >> 4);
        let s = u32::from(rs & 15);
        if s != 0 {
            k += run as usize;
            let v = extend(r.bits(s), s);
            block[NATURAL_ORDER[k.min(79)]] = v.wrapping_shl(scan.al) as i16;
        } else if run == 15 {
            k += 15;
        } else {
            *eobrun = 1 << run;
            if run != 0 {
                *eobrun += r.bits(run) as u32;
            }
            *eobrun -= 1;
            break;
        }
        k += 1;
    }
    Ok(())
}

fn refine(r: &mut BitReader, coef: &mut i16, p1: i16, m1: i16) {
    if r.bit() && (*coef & p1) == 0 {
        *coef = if *coef >= 0 {
            coef.wrapping_add(p1)
        } else {
            coef.wrapping_add(m1)
        };
    }
}

/// libjpeg's `decode_mcu_AC_refine`.
fn decode_ac_refine(
    r: &mut BitReader,
    ac: &Huffman,
    scan: &Scan,
    eobrun: &mut u32,
    block: &mut [i16],
) -> Result<()> {
    let p1: i16 = 1i16.wrapping_shl(scan.al);
    let m1: i16 = (-1i16).wrapping_shl(scan.al);
    let mut k = scan.ss;
    if *eobrun == 0 {
        while k <= scan.se {
            let rs = r.decode(ac)?;
            let mut run = i32::from(rs >> 4);
            let s = rs & 15;
            let mut value = 0i16;
            if s != 0 {
                // s must be 1 in a valid stream.
                value = if r.bit() { p1 } else { m1 };
            } else if run != 15 {
                *eobrun = 1 << run;
                if run != 0 {
                    *eobrun += r.bits(run as u32) as u32;
                }
                break;
            }
            while k <= scan.se {
                let coef = &mut block[NATURAL_ORDER[k]];
                if *coef != 0 {
                    refine(r, coef, p1, m1);
                } else {
                    run -= 1;
                    if run < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 {
                block[NATURAL_ORDER[k.min(79)]] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= scan.se {
            let coef = &mut block[NATURAL_ORDER[k]];
            if *coef != 0 {
                refine(r, coef, p1, m1);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

fn need(t: Option<&Huffman>) -> Result<&Huffman> {
    t.ok_or_else(|| JpegError::Corrupt("scan uses an undefined Huffman table".into()))
}

/// Decodes one block of the current scan.
#[allow(clippy::too_many_arguments)]
fn decode_block(
    r: &mut BitReader,
    st: &mut State,
    frame: &mut Frame,
    scan: &Scan,
    ci: usize,
    bx: usize,
    by: usize,
    dc: Option<&Huffman>,
    ac: Option<&Huffman>,
) -> Result<()> {
    let progressive = frame.progressive;
    let comp = &mut frame.comps[ci];
    let off = (by * comp.stride_blocks + bx) * 64;
    let Some(block) = comp.coefs.get_mut(off..off + 64) else {
        return corrupt("block outside the component");
    };
    if !progressive {
        decode_block_baseline(r, need(dc)?, need(ac)?, &mut st.dc_pred[ci], block)
    } else if scan.ss == 0 {
        if scan.ah == 0 {
            decode_dc_first(r, need(dc)?, &mut st.dc_pred[ci], scan.al, block)
        } else {
            if r.bit() {
                block[0] |= 1i16.wrapping_shl(scan.al);
            }
            Ok(())
        }
    } else if scan.ah == 0 {
        decode_ac_first(r, need(ac)?, scan, &mut st.eobrun, block)
    } else {
        decode_ac_refine(r, need(ac)?, scan, &mut st.eobrun, block)
    }
}

/// Decodes the entropy-coded data of one scan starting at `pos`; returns where it stopped.
fn decode_scan(
    data: &[u8],
    pos: usize,
    frame: &mut Frame,
    scan: &Scan,
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    restart_interval: usize,
) -> Result<usize> {
    let mut r = BitReader::new(data, pos);
    let mut st = State {
        dc_pred: vec![0; frame.comps.len()],
        eobrun: 0,
    };
    let tables: Vec<(Option<&Huffman>, Option<&Huffman>)> = scan
        .comps
        .iter()
        .map(|&ci| {
            let c = &frame.comps[ci];
            (
                dc_tables.get(c.dc_table).and_then(Option::as_ref),
                ac_tables.get(c.ac_table).and_then(Option::as_ref),
            )
        })
        .collect();

    let mut mcus_done = 0usize;
    let mut next_mcu = |r: &mut BitReader, st: &mut State| -> Result<()> {
        if restart_interval > 0 && mcus_done > 0 && mcus_done.is_multiple_of(restart_interval) {
            r.restart()?;
            st.dc_pred.iter_mut().for_each(|p| *p = 0);
            st.eobrun = 0;
        }
        mcus_done += 1;
        Ok(())
    };

    if let [ci] = scan.comps[..] {
        // Non-interleaved: one block per MCU, only the blocks covering the component.
        let (bw, bh) = (frame.comps[ci].bw, frame.comps[ci].bh);
        let (dc, ac) = tables[0];
        for by in 0..bh {
            for bx in 0..bw {
                next_mcu(&mut r, &mut st)?;
                decode_block(&mut r, &mut st, frame, scan, ci, bx, by, dc, ac)?;
            }
        }
    } else {
        for my in 0..frame.mcuy {
            for mx in 0..frame.mcux {
                next_mcu(&mut r, &mut st)?;
                for (si, &ci) in scan.comps.iter().enumerate() {
                    let (h, v) = (frame.comps[ci].h, frame.comps[ci].v);
                    let (dc, ac) = tables[si];
                    for y in 0..v {
                        for x in 0..h {
                            let (bx, by) = (mx * h + x, my * v + y);
                            decode_block(&mut r, &mut st, frame, scan, ci, bx, by, dc, ac)?;
                        }
                    }
                }
            }
        }
    }
    Ok(r.pos)
}

// ---------------------------------------------------------------------------------------------
// Sample reconstruction: islow IDCT, fancy upsampling, colour conversion.

const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

#[inline]
fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's post-IDCT range limit: `idct_range_limit[x & 1023]`, i.e. `clamp(x + 128)` for
/// sane inputs, wrapping like libjpeg for absurd ones.
fn idct_range_limit() -> [u8; 1024] {
    let mut t = [0u8; 1024];
    for (j, e) in t.iter_mut().enumerate() {
        *e = match j {
            0..=127 => (j + 128) as u8,
            128..=511 => 255,
            512..=895 => 0,
            _ => (j - 896) as u8,
        };
    }
    t
}

/// One 8x8 block: the even/odd butterfly shared by both passes.
#[inline]
#[allow(clippy::too_many_arguments)]
fn idct_1d(i0: i64, i1: i64, i2: i64, i3: i64, i4: i64, i5: i64, i6: i64, i7: i64) -> [i64; 8] {
    // Even part.
    let z1 = (i2 + i6) * FIX_0_541196100;
    let tmp2 = z1 + i6 * -FIX_1_847759065;
    let tmp3 = z1 + i2 * FIX_0_765366865;
    let tmp0 = (i0 + i4) << CONST_BITS;
    let tmp1 = (i0 - i4) << CONST_BITS;
    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;
    // Odd part.
    let (mut t0, mut t1, mut t2, mut t3) = (i7, i5, i3, i1);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    t0 *= FIX_0_298631336;
    t1 *= FIX_2_053119869;
    t2 *= FIX_3_072711026;
    t3 *= FIX_1_501321110;
    let z1 = z1 * -FIX_0_899976223;
    let z2 = z2 * -FIX_2_562915447;
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z4 = z4 * -FIX_0_390180644 + z5;
    t0 += z1 + z3;
    t1 += z2 + z4;
    t2 += z2 + z3;
    t3 += z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

/// libjpeg's `jpeg_idct_islow`: dequantize, 8x8 inverse DCT, range-limit, write 8 rows.
fn idct_islow(coefs: &[i16], quant: &[u16; 64], limit: &[u8; 1024], out: &mut [u8], stride: usize) {
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let c = |row: usize| i64::from(coefs[row * 8 + col]) * i64::from(quant[row * 8 + col]);
        if (1..8).all(|row| coefs[row * 8 + col] == 0) {
            let dc = c(0) << PASS1_BITS;
            for row in 0..8 {
                ws[row * 8 + col] = dc;
            }
            continue;
        }
        let o = idct_1d(c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7));
        for row in 0..8 {
            ws[row * 8 + col] = descale(o[row], CONST_BITS - PASS1_BITS);
        }
    }
    for row in 0..8 {
        let w = &ws[row * 8..row * 8 + 8];
        let line = &mut out[row * stride..row * stride + 8];
        if w[1..].iter().all(|&x| x == 0) {
            let v = limit[(descale(w[0], PASS1_BITS + 3) & 1023) as usize];
            line.fill(v);
            continue;
        }
        let o = idct_1d(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]);
        for (dst, x) in line.iter_mut().zip(o) {
            *dst = limit[(descale(x, CONST_BITS + PASS1_BITS + 3) & 1023) as usize];
        }
    }
}

/// A component's samples, `width` x `height` valid (rows are `stride` apart).
struct Plane {
    data: Vec<u8>,
    stride: usize,
    width: usize,
    height: usize,
}

impl Plane {
    /// Row `y`, clamped to the valid rows (libjpeg's context-row replication at the edges).
    fn row(&self, y: isize) -> &[u8] {
        let y = y.clamp(0, (self.height as isize - 1).max(0)) as usize;
        &self.data[y * self.stride..y * self.stride + self.width]
    }
}

fn reconstruct(comp: &Component, limit: &[u8; 1024]) -> Result<Plane> {
    let quant = comp
        .quant
        .as_ref()
        .ok_or_else(|| JpegError::Corrupt("component without quantization table".into()))?;
    let stride = comp.bw * 8;
    let mut data = take(stride * comp.bh * 8, |p| &mut p.samples);
    for by in 0..comp.bh {
        for bx in 0..comp.bw {
            let off = (by * comp.stride_blocks + bx) * 64;
            let out = &mut data[by * 8 * stride + bx * 8..];
            idct_islow(&comp.coefs[off..off + 64], quant, limit, out, stride);
        }
    }
    Ok(Plane {
        data,
        stride,
        width: comp.dw,
        height: comp.dh,
    })
}

/// libjpeg-turbo's `jdsample.c` for a component sampled `hr` x `vr` times more coarsely than
/// the image: writes row `y` of the full-resolution component into `o` (`p.width * hr`
/// samples). Rows are produced one at a time so no full-size chroma plane is stored.
fn upsample_row(p: &Plane, hr: usize, vr: usize, y: usize, o: &mut [u8]) {
    let w = p.width;
    let (near_y, below) = ((y / vr) as isize, y % vr == 1);
    match (hr, vr) {
        (1, 1) => o.copy_from_slice(p.row(near_y)),
        // h2v1_fancy_upsample (needs downsampled_width > 2).
        (2, 1) if w > 2 => {
            let i = p.row(near_y);
            let at = |k: usize| u32::from(i[k]);
            o[0] = i[0];
            o[1] = ((at(0) * 3 + at(1) + 2) >> 2) as u8;
            for c in 1..w - 1 {
                let v = at(c) * 3;
                o[2 * c] = ((v + at(c - 1) + 1) >> 2) as u8;
                o[2 * c + 1] = ((v + at(c + 1) + 2) >> 2) as u8;
            }
            o[2 * w - 2] = ((at(w - 1) * 3 + at(w - 2) + 1) >> 2) as u8;
            o[2 * w - 1] = i[w - 1];
        }
        // h1v2_fancy_upsample: the nearer input row weighs 3, the other 1.
        (1, 2) => {
            let near = p.row(near_y);
            let (far, bias) = if below {
                (p.row(near_y + 1), 2)
            } else {
                (p.row(near_y - 1), 1)
            };
            for ((o, &n), &f) in o.iter_mut().zip(near).zip(far) {
                *o = ((u32::from(n) * 3 + u32::from(f) + bias) >> 2) as u8;
            }
        }
        // h2v2_fancy_upsample (needs downsampled_width > 2).
        (2, 2) if w > 2 => {
            let near = p.row(near_y);
            let far = p.row(if below { near_y + 1 } else { near_y - 1 });
            let sum = |c: usize| u32::from(near[c]) * 3 + u32::from(far[c]);
            let mut this = sum(0);
            let mut next = sum(1);
            o[0] = ((this * 4 + 8) >> 4) as u8;
            o[1] = ((this * 3 + next + 7) >> 4) as u8;
            let mut last = this;
            this = next;
            for c in 1..w - 1 {
                next = sum(c + 1);
                o[2 * c] = ((this * 3 + last + 8) >> 4) as u8;
                o[2 * c + 1] = ((this * 3 + next + 7) >> 4) as u8;
                last = this;
                this = next;
            }
            o[2 * w - 2] = ((this * 3 + last + 8) >> 4) as u8;
            o[2 * w - 1] = ((this * 4 + 7) >> 4) as u8;
        }
        // h2v1_upsample / h2v2_upsample / int_upsample: replicate.
        _ => {
            let i = p.row(near_y);
            for (x, v) in o.iter_mut().enumerate() {
                *v = i[x / hr];
            }
        }
    }
}

/// A reconstructed component and how it is upsampled to the image's resolution.
struct Upsampler {
    plane: Plane,
    hr: usize,
    vr: usize,
    /// Row scratch, `plane.width * hr` samples.
    row: Vec<u8>,
}

impl Upsampler {
    fn new(plane: Plane, hr: usize, vr: usize, out_w: usize, out_h: usize) -> Result<Self> {
        let (ow, oh) = (plane.width * hr, plane.height * vr);
        if ow < out_w || oh < out_h {
            return corrupt("upsampled component smaller than the image");
        }
        Ok(Self {
            plane,
            hr,
            vr,
            row: vec![0; ow],
        })
    }

    /// Row `y` of the full-resolution component (borrowed from the plane when not subsampled).
    fn row(&mut self, y: usize) -> &[u8] {
        if (self.hr, self.vr) == (1, 1) {
            return self.plane.row(y as isize);
        }
        upsample_row(&self.plane, self.hr, self.vr, y, &mut self.row);
        &self.row
    }
}

/// `jdcolor.c`'s `ycc_rgb_convert` constants (`FIX(x)`, 16 fractional bits).
const fn fix(x: f64) -> i32 {
    (x * 65536.0 + 0.5) as i32
}
const CR_R: i32 = fix(1.40200);
const CB_B: i32 = fix(1.77200);
const CR_G: i32 = -fix(0.71414);
const CB_G: i32 = -fix(0.34414);
const ONE_HALF: i32 = 1 << 15;

simd::kernel! {
/// `ycc_rgb_convert` for one row, computed rather than looked up: libjpeg's tables hold
/// exactly these products (`(FIX(1.402) * x + ONE_HALF) >> 16`, ...), which fit in `i32`.
fn ycc_to_rgb_row(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    for (((o, &y), &cb), &cr) in out.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
        let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
        o[0] = clamp8(y + ((CR_R * cr + ONE_HALF) >> 16));
        o[1] = clamp8(y + ((CB_G * cb + CR_G * cr + ONE_HALF) >> 16));
        o[2] = clamp8(y + ((CB_B * cb + ONE_HALF) >> 16));
    }
}
}

#[inline(always)]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

// ---------------------------------------------------------------------------------------------
// Markers.

fn u16_at(b: &[u8], i: usize) -> Result<usize> {
    match b.get(i..i + 2) {
        Some(s) => Ok(usize::from(u16::from_be_bytes([s[0], s[1]]))),
        None => corrupt("segment runs past the end of the data"),
    }
}

/// Decodes `bytes` (which start with SOI). `admit(width, height, decoded_bytes)` is asked
/// before anything proportional to the image size is allocated.
pub(crate) fn decode(bytes: &[u8], admit: &dyn Fn(u32, u32, u64) -> bool) -> Result<Decoded> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return corrupt("missing SOI marker");
    }
    let mut pos = 2;
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut restart_interval = 0usize;
    let mut frame: Option<Frame> = None;
    let mut jfif = false;
    let mut adobe_transform: Option<u8> = None;
    let mut exif: Option<&[u8]> = None;
    let mut xmp: Option<&[u8]> = None;
    let limit = idct_range_limit();

    loop {
        // Next marker (skipping fill bytes and, after a scan, stray data).
        while pos < bytes.len() && bytes[pos] != 0xFF {
            pos += 1;
        }
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return corrupt("no end-of-image marker");
        };
        pos += 1;
        match marker {
            0xD9 => break,
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = u16_at(bytes, pos)?;
        if len < 2 || pos + len > bytes.len() {
            return corrupt("segment runs past the end of the data");
        }
        let seg = &bytes[pos + 2..pos + len];
        pos += len;
        match marker {
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return unsupported("more than one frame");
                }
                frame = Some(parse_frame(seg, marker == 0xC2, admit)?);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return unsupported(format!("JPEG process SOF{}", marker - 0xC0));
            }
            0xC4 => parse_dht(seg, &mut dc_tables, &mut ac_tables)?,
            0xDB => parse_dqt(seg, &mut qt)?,
            0xDD => restart_interval = u16_at(seg, 0)?,
            0xDC => return unsupported("DNL marker"),
            // libjpeg needs the full 14-byte JFIF header (APP0_DATA_LEN).
            0xE0 if seg.starts_with(b"JFIF\0") && seg.len() >= 14 => jfif = true,
            0xE1 if seg.starts_with(b"Exif\0\0") && exif.is_none() => exif = Some(&seg[6..]),
            // Pillow keeps the first Exif segment and the last XMP one.
            0xE1 if seg.starts_with(b"http://ns.adobe.com/xap/1.0/\0") => {
                xmp = Some(&seg[29..]);
            }
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                adobe_transform = Some(seg[11]);
            }
            0xDA => {
                let Some(f) = frame.as_mut() else {
                    return corrupt("scan before frame header");
                };
                let scan = parse_sos(seg, f)?;
                for &ci in &scan.comps {
                    let c = &mut f.comps[ci];
                    if c.quant.is_none() {
                        c.quant = qt.get(c.tq).copied().flatten();
                    }
                }
                pos = decode_scan(
                    bytes,
                    pos,
                    f,
                    &scan,
                    &dc_tables,
                    &ac_tables,
                    restart_interval,
                )?;
            }
            _ => {}
        }
    }

    let Some(frame) = frame else {
        return corrupt("no frame header");
    };
    let orientation = exif
        .and_then(Orientation::from_exif_chunk)
        .or_else(|| xmp.and_then(xmp_orientation));
    let (w, h) = (frame.width, frame.height);
    let mut comps = Vec::with_capacity(frame.comps.len());
    for c in &frame.comps {
        let plane = reconstruct(c, &limit)?;
        if frame.hmax % c.h != 0 || frame.vmax % c.v != 0 {
            return unsupported("non-integral sampling ratio");
        }
        comps.push(Upsampler::new(
            plane,
            frame.hmax / c.h,
            frame.vmax / c.v,
            w,
            h,
        )?);
    }

    // libjpeg's `default_decompress_parms` colour-space guess for 3 components.
    let ycc = match &frame.comps[..] {
        [a, b, c] if !jfif => match adobe_transform {
            Some(t) => t != 0,
            None => [a.id, b.id, c.id] != [b'R', b'G', b'B'],
        },
        _ => true,
    };
    let (channels, data) = interleave(&mut comps, w, h, ycc)?;
    keep(
        frame.comps.into_iter().map(|c| c.coefs),
        comps.into_iter().map(|u| u.plane.data),
    );
    Ok(Decoded {
        width: w as u32,
        height: h as u32,
        channels,
        data,
        orientation,
    })
}

/// The image's `w` x `h` samples, interleaved: gray as it is, three components converted from
/// YCbCr to RGB when `ycc` (else copied); returns the channel count and the bytes.
fn interleave(comps: &mut [Upsampler], w: usize, h: usize, ycc: bool) -> Result<(usize, Vec<u8>)> {
    match comps {
        [gray] => {
            let mut data = Vec::with_capacity(w * h);
            for y in 0..h {
                data.extend_from_slice(&gray.row(y)[..w]);
            }
            Ok((1, data))
        }
        [c0, c1, c2] => {
            let mut data = vec![0u8; w * h * 3];
            for (y, out) in data.chunks_exact_mut(w * 3).enumerate() {
                let (r0, r1, r2) = (&c0.row(y)[..w], &c1.row(y)[..w], &c2.row(y)[..w]);
                if ycc {
                    ycc_to_rgb_row(r0, r1, r2, out);
                } else {
                    for (((o, &a), &b), &c) in out.chunks_exact_mut(3).zip(r0).zip(r1).zip(r2) {
                        o.copy_from_slice(&[a, b, c]);
                    }
                }
            }
            Ok((3, data))
        }
        _ => unsupported("not 1 or 3 components"),
    }
}

/// Pillow: `re.search(rb'tiff:Orientation(="|>)([0-9])', xmp)`.
pub(crate) fn xmp_orientation(xmp: &[u8]) -> Option<Orientation> {
    let needle = b"tiff:Orientation";
    let mut start = 0;
    while let Some(p) = xmp[start..].windows(needle.len()).position(|w| w == needle) {
        let at = start + p + needle.len();
        let digit = match xmp.get(at..) {
            Some([b'=', b'"', d, ..]) | Some([b'>', d, ..]) if d.is_ascii_digit() => Some(d - b'0'),
            _ => None,
        };
        if let Some(d) = digit {
            return Some(Orientation::from_exif(d).unwrap_or(Orientation::NoTransforms));
        }
        start = at;
    }
    None
}

fn parse_frame(
    seg: &[u8],
    progressive: bool,
    admit: &dyn Fn(u32, u32, u64) -> bool,
) -> Result<Frame> {
    if seg.len() < 6 {
        return corrupt("short frame header");
    }
    if seg[0] != 8 {
        return unsupported(format!("{}-bit samples", seg[0]));
    }
    let height = u16_at(seg, 1)?;
    let width = u16_at(seg, 3)?;
    let n = usize::from(seg[5]);
    if height == 0 {
        return unsupported("height defined by a DNL marker");
    }
    if width == 0 {
        return corrupt("zero width");
    }
    if n != 1 && n != 3 {
        return unsupported(format!("{n} components"));
    }
    if seg.len() < 6 + 3 * n {
        return corrupt("short frame header");
    }
    if !admit(width as u32, height as u32, (width * height * n) as u64) {
        return Err(JpegError::TooLarge(
            width as u32,
            height as u32,
            (width * height * n) as u64,
        ));
    }
    let mut comps = Vec::with_capacity(n);
    for i in 0..n {
        let s = &seg[6 + 3 * i..9 + 3 * i];
        let (h, v) = (usize::from(s[1] >> 4), usize::from(s[1] & 15));
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || s[2] > 3 {
            return corrupt("bad component sampling factors or table");
        }
        comps.push(Component {
            id: s[0],
            h,
            v,
            tq: usize::from(s[2]),
            dw: 0,
            dh: 0,
            bw: 0,
            bh: 0,
            stride_blocks: 0,
            rows_blocks: 0,
            coefs: Vec::new(),
            quant: None,
            dc_table: 0,
            ac_table: 0,
        });
    }
    let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
    let mcux = width.div_ceil(8 * hmax);
    let mcuy = height.div_ceil(8 * vmax);
    for c in &mut comps {
        c.dw = (width * c.h).div_ceil(hmax);
        c.dh = (height * c.v).div_ceil(vmax);
        c.bw = c.dw.div_ceil(8);
        c.bh = c.dh.div_ceil(8);
        c.stride_blocks = (mcux * c.h).max(c.bw);
        c.rows_blocks = (mcuy * c.v).max(c.bh);
        c.coefs = take(c.stride_blocks * c.rows_blocks * 64, |p| &mut p.coefs);
    }
    Ok(Frame {
        progressive,
        width,
        height,
        comps,
        hmax,
        vmax,
        mcux,
        mcuy,
    })
}

fn parse_dht(
    mut seg: &[u8],
    dc: &mut [Option<Huffman>; 4],
    ac: &mut [Option<Huffman>; 4],
) -> Result<()> {
    while !seg.is_empty() {
        if seg.len() < 17 {
            return corrupt("short Huffman table");
        }
        let (class, id) = (seg[0] >> 4, usize::from(seg[0] & 15));
        if class > 1 || id > 3 {
            return corrupt("bad Huffman table id");
        }
        let mut counts = [0u8; 16];
        counts.copy_from_slice(&seg[1..17]);
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let Some(values) = seg.get(17..17 + total) else {
            return corrupt("short Huffman table");
        };
        let table = Huffman::new(&counts, values.to_vec())?;
        if class == 0 {
            dc[id] = Some(table);
        } else {
            ac[id] = Some(table);
        }
        seg = &seg[17 + total..];
    }
    Ok(())
}

fn parse_dqt(mut seg: &[u8], qt: &mut [Option<[u16; 64]>; 4]) -> Result<()> {
    while !seg.is_empty() {
        let (precision, id) = (seg[0] >> 4, usize::from(seg[0] & 15));
        if id > 3 || precision > 1 {
            return corrupt("bad quantization table id");
        }
        let size = if precision == 0 { 64 } else { 128 };
        let Some(body) = seg.get(1..1 + size) else {
            return corrupt("short quantization table");
        };
        let mut table = [0u16; 64];
        for (k, &natural) in NATURAL_ORDER[..64].iter().enumerate() {
            table[natural] = if precision == 0 {
                u16::from(body[k])
            } else {
                u16::from_be_bytes([body[2 * k], body[2 * k + 1]])
            };
        }
        qt[id] = Some(table);
        seg = &seg[1 + size..];
    }
    Ok(())
}

fn parse_sos(seg: &[u8], frame: &mut Frame) -> Result<Scan> {
    let n = usize::from(*seg.first().unwrap_or(&0));
    if n == 0 || n > 4 || seg.len() < 1 + 2 * n + 3 {
        return corrupt("bad scan header");
    }
    let mut comps = Vec::with_capacity(n);
    for i in 0..n {
        let (id, tables) = (seg[1 + 2 * i], seg[2 + 2 * i]);
        let Some(ci) = frame.comps.iter().position(|c| c.id == id) else {
            return corrupt("scan names an unknown component");
        };
        let c = &mut frame.comps[ci];
        c.dc_table = usize::from(tables >> 4);
        c.ac_table = usize::from(tables & 15);
        comps.push(ci);
    }
    let p = 1 + 2 * n;
    let scan = Scan {
        comps,
        ss: usize::from(seg[p]),
        se: usize::from(seg[p + 1]),
        ah: u32::from(seg[p + 2] >> 4),
        al: u32::from(seg[p + 2] & 15),
    };
    if frame.progressive {
        let bad = scan.se > 63
            || scan.ss > scan.se
            || (scan.ss == 0 && scan.se != 0)
            || (scan.ss > 0 && n != 1)
            || scan.al > 13
            || scan.ah > 13;
        if bad {
            return corrupt("bad progressive scan parameters");
        }
    } else if scan.ss != 0 || scan.se != 63 {
        return unsupported("sequential scan with partial spectral range");
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ycc_rgb_convert` with libjpeg's lookup tables (`build_ycc_rgb_table`, in `i64`).
    fn ycc_by_tables(y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
        let (cb, cr) = (i64::from(cb) - 128, i64::from(cr) - 128);
        let cr_r = (fix(1.40200) * cr + (1 << 15)) >> 16;
        let cb_b = (fix(1.77200) * cb + (1 << 15)) >> 16;
        let g = (-fix(0.34414) * cb + (1 << 15) - fix(0.71414) * cr) >> 16;
        let y = i64::from(y);
        [y + cr_r, y + g, y + cb_b].map(|v| v.clamp(0, 255) as u8)
    }

    /// Every build of the colour conversion equals libjpeg's tables for all (Cb, Cr) pairs,
    /// each with a spread of luma values.
    #[test]
    fn colour_conversion_equals_libjpeg_tables() {
        let cb: Vec<u8> = (0..=255).collect();
        for level in simd::levels() {
            for cr in 0..=255u8 {
                for y0 in [0u8, 1, 77, 128, 200, 254, 255] {
                    let y: Vec<u8> = (0..256)
                        .map(|i| y0.wrapping_add((i * 37 % 256) as u8))
                        .collect();
                    let crs = vec![cr; 256];
                    let mut got = vec![0u8; 256 * 3];
                    simd::with_cap(level, || ycc_to_rgb_row(&y, &cb, &crs, &mut got));
                    for i in 0..256 {
                        let want = ycc_by_tables(y[i], cb[i], cr);
                        assert_eq!(
                            got[3 * i..3 * i + 3],
                            want,
                            "{level:?}: y {} cb {i} cr {cr}",
                            y[i]
                        );
                    }
                }
            }
        }
    }

    /// Buffers kept from earlier images of other sizes and layouts (progressive, 4:4:4, gray,
    /// restart markers) change nothing: every image decodes as on a fresh thread.
    #[test]
    fn kept_buffers_do_not_change_the_pixels() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/image_data/");
        let files = [
            "photo640.jpg",
            "tiny3x5.jpg",
            "prog444.jpg",
            "gray.jpg",
            "base420.jpg",
            "restart_blocks.jpg",
            "h4v1.jpg",
            "one_pixel.jpg",
        ];
        let decode_file = |f: &str| {
            let bytes = std::fs::read(format!("{dir}{f}")).unwrap();
            decode(&bytes, &|_, _, _| true).unwrap().data
        };
        let fresh: Vec<Vec<u8>> = files
            .iter()
            .map(|f| std::thread::scope(|s| s.spawn(|| decode_file(f)).join().unwrap()))
            .collect();
        for (f, want) in files
            .iter()
            .zip(&fresh)
            .chain(files.iter().zip(&fresh).rev())
        {
            assert!(decode_file(f) == *want, "{f}");
        }
    }
}
