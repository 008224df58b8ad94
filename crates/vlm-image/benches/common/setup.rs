//! Setup shared by the image benches (`vlm-image`'s `preprocess`, `vlm-data`'s `loader`, which
//! includes this file), so that their figures compare: the same photo-like JPEGs (smooth
//! gradients plus deterministic noise, written with the `image` crate's encoder) and the same
//! criterion group settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// Images per measured iteration.
pub const IMAGES: usize = 64;

/// Source sizes (width, height): 224 x 224, and 640 x 480, the usual COCO size, where decoding
/// and downscaling cost more.
pub const SIZES: [(u32, u32); 2] = [(224, 224), (640, 480)];

/// The `loader` group both benches report in, throughput in images.
pub fn loader_group(c: &mut Criterion) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group("loader");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(IMAGES as u64));
    group
}

/// A photo-like test pattern: smooth gradients plus deterministic noise.
fn pattern(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 24) as i32 - 12
    };
    let mut out = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let fx = x as f32 / width as f32;
            let fy = y as f32 / height as f32;
            let base = [
                128.0 + 100.0 * (6.0 * fx + seed as f32).sin(),
                128.0 + 100.0 * (5.0 * fy).cos(),
                128.0 + 90.0 * (4.0 * (fx + fy)).sin(),
            ];
            out.extend(base.map(|v| (v as i32 + noise()).clamp(0, 255) as u8));
        }
    }
    out
}

/// Writes [`IMAGES`] JPEGs of `width` x `height` (quality 90) into `dir`; returns their names,
/// relative to `dir`.
pub fn write_jpegs(dir: &Path, width: u32, height: u32) -> Vec<PathBuf> {
    (0..IMAGES)
        .map(|i| {
            let name = PathBuf::from(format!("{width}x{height}_{i}.jpg"));
            let file = std::fs::File::create(dir.join(&name)).expect("create jpeg");
            JpegEncoder::new_with_quality(file, 90)
                .write_image(
                    &pattern(width, height, i as u32),
                    width,
                    height,
                    ExtendedColorType::Rgb8,
                )
                .expect("encode jpeg");
            name
        })
        .collect()
}
