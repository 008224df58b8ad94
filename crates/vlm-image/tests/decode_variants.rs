//! Decoding and resizing against Pillow 13 on the small corpus in tests/image_data/
//! (regenerate with `tools/reference/.venv/bin/python crates/vlm-image/tests/image_data/make.py`):
//! progressive and restart-marker JPEGs, every chroma subsampling libjpeg-turbo upsamples
//! differently, odd sizes, RGB / grayscale / CMYK JPEGs, EXIF orientations 2..8 and an XMP one,
//! low / high bit-depth, transparent and interlaced PNGs; and `Image.resize` with all six
//! filters, including the size pairs where Pillow runs the vertical pass first.
//!
//! Everything must equal Pillow exactly, except `cmyk.jpg`: CMYK JPEGs go to the fallback
//! decoder (zune-jpeg), whose CMYK -> RGB conversion is close to but not Pillow's.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vlm_hf::Resample;
use vlm_image::{decode_image_path, resize, DecodeLimits, RgbImage};

#[derive(Deserialize)]
struct Manifest {
    decode: Vec<DecodeCase>,
    resize: Vec<ResizeCase>,
    resize_input: Input,
}

#[derive(Deserialize)]
struct DecodeCase {
    file: String,
    width: u32,
    height: u32,
    offset: usize,
    note: String,
}

#[derive(Deserialize)]
struct ResizeCase {
    width: u32,
    height: u32,
    filter: u64,
    offset: usize,
}

#[derive(Deserialize)]
struct Input {
    file: String,
    width: u32,
    height: u32,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/image_data")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(data_dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Max |ours - pillow| and how many bytes differ.
fn diff(ours: &[u8], pillow: &[u8]) -> (u8, usize) {
    assert_eq!(ours.len(), pillow.len());
    let max = ours
        .iter()
        .zip(pillow)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let n = ours.iter().zip(pillow).filter(|(a, b)| a != b).count();
    (max, n)
}

#[test]
fn decodes_equal_pillow() {
    let m = manifest();
    let pillow = read("pillow_decoded.rgb");
    let mut failures = Vec::new();
    for case in &m.decode {
        let ours = decode_image_path(data_dir().join(&case.file), &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert_eq!(
            (ours.width(), ours.height()),
            (case.width, case.height),
            "{}: size after orientation",
            case.file
        );
        let len = (case.width * case.height * 3) as usize;
        let (max, n) = diff(ours.as_raw(), &pillow[case.offset..case.offset + len]);
        println!(
            "{:20} {:60} max |diff| {max}, {n} of {len} values differ",
            case.file, case.note
        );
        let allowed = if case.file == "cmyk.jpg" { 1 } else { 0 };
        if max > allowed {
            failures.push(format!("{}: max diff {max} > {allowed}", case.file));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn resizes_equal_pillow() {
    let m = manifest();
    let input = RgbImage::from_raw(
        m.resize_input.width,
        m.resize_input.height,
        read(&m.resize_input.file),
    )
    .unwrap();
    let pillow = read("pillow_resized.rgb");
    for case in &m.resize {
        let filter = Resample::from_pil_code(case.filter).unwrap();
        let ours = resize(&input, case.width, case.height, filter);
        let len = (case.width * case.height * 3) as usize;
        let (max, n) = diff(ours.as_raw(), &pillow[case.offset..case.offset + len]);
        assert_eq!(
            max,
            0,
            "{}x{} -> {}x{} {filter:?}: {n} values differ",
            input.width(),
            input.height(),
            case.width,
            case.height
        );
    }
}

#[derive(Deserialize)]
struct PhotoRefs {
    file: String,
    width: u32,
    height: u32,
    decoded_fnv1a64: String,
    resized: Vec<PhotoResize>,
}

#[derive(Deserialize)]
struct PhotoResize {
    width: u32,
    height: u32,
    filter: u64,
    fnv1a64: String,
}

/// 64-bit FNV-1a, as `make_photo.py` hashes Pillow's outputs.
fn fnv1a64(data: &[u8]) -> String {
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The 640 x 480 photo-like baseline 4:2:0 JPEG (the COCO case the fast paths are tuned for):
/// decoded and resized bytes hash to Pillow's (`make_photo.py`).
#[test]
fn photo_decodes_and_resizes_equal_pillow() {
    let text = std::fs::read_to_string(data_dir().join("photo640.json")).unwrap();
    let refs: PhotoRefs = serde_json::from_str(&text).unwrap();
    let img = decode_image_path(data_dir().join(&refs.file), &DecodeLimits::default()).unwrap();
    assert_eq!((img.width(), img.height()), (refs.width, refs.height));
    assert_eq!(fnv1a64(img.as_raw()), refs.decoded_fnv1a64, "decoded bytes");
    for case in &refs.resized {
        let filter = Resample::from_pil_code(case.filter).unwrap();
        let out = resize(&img, case.width, case.height, filter);
        assert_eq!(
            fnv1a64(out.as_raw()),
            case.fnv1a64,
            "{}x{} {filter:?}",
            case.width,
            case.height
        );
    }
}
