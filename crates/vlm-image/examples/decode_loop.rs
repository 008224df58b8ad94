//! Single-threaded decode (+ resize) loop for `perf stat -e task-clock`: the per-core figure of
//! BENCHMARKS.md's "Image decoding".
//!
//! `decode_loop FILE.jpg N [resize]` decodes the file N times (and resizes each image to
//! CLIP's 298 x 224 with Pillow's bicubic filter when `resize` is given).

use vlm_hf::Resample;
use vlm_image::{decode_image_bytes, resize, DecodeLimits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, n, rest @ ..] = &args[..] else {
        return Err("usage: decode_loop FILE.jpg N [resize]".into());
    };
    let bytes = std::fs::read(path)?;
    let n: usize = n.parse()?;
    let with_resize = rest.first().is_some_and(|a| a == "resize");
    let limits = DecodeLimits::default();
    let mut checksum = 0u64;
    for _ in 0..n {
        let img = decode_image_bytes(&bytes, path, &limits)?;
        let img = if with_resize {
            resize(&img, 298, 224, Resample::Bicubic)
        } else {
            img
        };
        checksum = checksum.wrapping_add(img.as_raw().iter().map(|&b| u64::from(b)).sum::<u64>());
    }
    println!("{n} images, checksum {checksum}");
    Ok(())
}
