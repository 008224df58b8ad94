//! Bad inputs give typed errors that name the file, never a panic, and a header claiming a
//! huge image is refused before any pixel memory is allocated.

use std::path::{Path, PathBuf};

use vlm_hf::PreprocessorConfig;
use vlm_image::{DecodeLimits, ImageError, ImageProcessor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures/image_processor")
        .join(name)
}

fn processor() -> ImageProcessor {
    ImageProcessor::new(PreprocessorConfig::clip_default())
}

/// Writes `bytes` to `dir/name` and runs the processor on it.
fn process(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, ImageError) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = processor()
        .process_path(&path)
        .expect_err("bad input must fail");
    (path, err)
}

/// The error names the file, both structurally and in its message.
fn assert_names(err: &ImageError, path: &Path) {
    assert_eq!(err.path(), path);
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A well-formed PNG whose IHDR claims `width` x `height` 8-bit RGB pixels, with a tiny IDAT.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn truncated_jpeg_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let jpg = std::fs::read(fixture("image.jpg")).unwrap();
    // Cut in the middle of the scan, and cut only the last byte of the EOI marker: Pillow
    // refuses both ("image file is truncated").
    for (name, cut) in [("half.jpg", jpg.len() / 2), ("no_eoi.jpg", jpg.len() - 1)] {
        let (path, err) = process(dir.path(), name, &jpg[..cut]);
        assert!(
            matches!(err, ImageError::Truncated { format: "JPEG", .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
        assert_names(&err, &path);
    }
    // Data after the end-of-image marker is ignored, as Pillow ignores it.
    let mut trailing = jpg.clone();
    trailing.extend_from_slice(b"trailing garbage");
    let path = dir.path().join("trailing.jpg");
    std::fs::write(&path, &trailing).unwrap();
    assert_eq!(
        processor().process_path(&path).unwrap(),
        processor().process_path(fixture("image.jpg")).unwrap()
    );
}

#[test]
fn truncated_png_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(fixture("image.png")).unwrap();
    let (path, err) = process(dir.path(), "half.png", &png[..png.len() / 2]);
    assert!(
        matches!(err, ImageError::Truncated { format: "PNG", .. }),
        "{err:?}"
    );
    assert_names(&err, &path);
    // image.png is IHDR, IDAT (65536 bytes), IDAT, IEND. Cut after the first IDAT: the pixel
    // data is incomplete, Pillow says "image file is truncated".
    let (_, err) = process(dir.path(), "one_idat.png", &png[..8 + 25 + 12 + 65536]);
    assert!(matches!(err, ImageError::Truncated { .. }), "{err:?}");
    // Only IEND missing: Pillow decodes it, and so do we.
    let path = dir.path().join("no_iend.png");
    std::fs::write(&path, &png[..png.len() - 12]).unwrap();
    assert_eq!(
        processor().process_path(&path).unwrap(),
        processor().process_path(fixture("image.png")).unwrap()
    );
}

#[test]
fn zero_byte_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = process(dir.path(), "empty.jpg", &[]);
    assert!(matches!(err, ImageError::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert_names(&err, &path);
}

#[test]
fn non_image_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = process(
        dir.path(),
        "notes.jpg",
        b"these are captions, not pixels\n".as_slice(),
    );
    assert!(matches!(err, ImageError::NotAnImage { .. }), "{err:?}");
    assert_names(&err, &path);

    // A real image format that is not JPEG or PNG.
    let (path, err) = process(
        dir.path(),
        "anim.gif",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    );
    assert!(
        matches!(&err, ImageError::UnsupportedFormat { format, .. } if format == "image/gif"),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn corrupt_png_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = png_claiming(4, 4);
    png[29] ^= 0xFF; // IHDR CRC
    let (path, err) = process(dir.path(), "bad_crc.png", &png);
    assert!(
        matches!(err, ImageError::Corrupt { format: "PNG", .. }),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn png_bomb_header_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    // 100000 x 100000 RGB would need 30 GB; the file is 57 bytes.
    let (path, err) = process(dir.path(), "bomb.png", &png_claiming(100_000, 100_000));
    match &err {
        ImageError::TooLarge {
            width,
            height,
            bytes,
            ..
        } => {
            assert_eq!((*width, *height), (100_000, 100_000));
            assert_eq!(*bytes, 30_000_000_000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("decompression-bomb"), "{msg}");
    assert!(msg.contains("100000x100000"), "{msg}");
    assert_names(&err, &path);

    // Within the width / height limits but over the allocation budget: 16000 x 16000 RGB is
    // 768 MB > 512 MiB.
    let (_, err) = process(dir.path(), "wide.png", &png_claiming(16_000, 16_000));
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                width: 16_000,
                height: 16_000,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn jpeg_bomb_header_is_refused_before_decoding() {
    // SOI, SOF0 claiming 65000 x 65000 x 3 components, an empty scan, EOI.
    let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    jpg.extend_from_slice(&65_000u16.to_be_bytes());
    jpg.extend_from_slice(&65_000u16.to_be_bytes());
    jpg.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    jpg.extend_from_slice(&[
        0xFF, 0xDA, 0x00, 0x0C, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0,
    ]);
    jpg.extend_from_slice(&[0x00, 0xFF, 0xD9]);
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = process(dir.path(), "bomb.jpg", &jpg);
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                width: 65_000,
                height: 65_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn custom_limits_apply() {
    let limits = DecodeLimits {
        max_width: 100,
        max_height: 100,
        max_alloc: 1 << 20,
    };
    let proc = processor().with_limits(limits);
    for file in ["image.png", "image.jpg"] {
        let err = proc.process_path(fixture(file)).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::TooLarge {
                    width: 320,
                    height: 200,
                    ..
                }
            ),
            "{file}: {err:?}"
        );
    }
    assert!(proc.process_path(fixture("small_rgb.jpg")).is_ok());
}

#[test]
fn missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("does_not_exist.png");
    let err = processor().process_path(&path).unwrap_err();
    match &err {
        ImageError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert_names(&err, &path);
}

#[test]
fn bytes_errors_name_the_given_source() {
    let err = processor()
        .process_bytes(b"", "dataset/row-17")
        .unwrap_err();
    assert!(matches!(err, ImageError::Empty { .. }));
    assert_eq!(err.path(), Path::new("dataset/row-17"));
}

#[test]
fn an_endless_file_is_refused_at_the_size_limit() {
    let path = Path::new("/dev/zero");
    let err = processor().process_path(path).unwrap_err();
    match &err {
        ImageError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::FileTooLarge)
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("256 MiB limit"), "{err}");
    assert_names(&err, path);
}
