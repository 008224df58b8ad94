//! The manifest loader: every good record once per epoch, skipped records counted with their
//! reasons, deterministic shuffling by (seed, epoch), exact resumption, strict mode.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use vlm_data::{
    ChatTemplate, Conversation, DataError, Dataset, EncoderConfig, LoadedBatch, LoaderOptions,
    Position, SampleEncoder, SkipReason, Tokenizer, Turn,
};
use vlm_hf::{CropSize, ImageSize, PreprocessorConfig};
use vlm_image::ImageProcessor;

const TOKENS_PER_IMAGE: usize = 9;
const GOOD: usize = 23;

fn tokenizer() -> Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tokenizer/qwen2");
            Tokenizer::from_model_dir(dir).expect("qwen2 tokenizer")
        })
        .clone()
}

/// A CLIP processor cropping to 32 x 32 (small, so debug builds stay fast).
fn processor() -> ImageProcessor {
    let mut config = PreprocessorConfig::clip_default();
    config.size = ImageSize::ShortestEdge(32);
    config.crop_size = CropSize {
        height: 32,
        width: 32,
    };
    ImageProcessor::new(config)
}

fn write_jpeg(path: &Path, width: u32, height: u32, seed: u32) {
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|i| ((i * 7 + seed * 31) % 251) as u8)
        .collect();
    let file = std::fs::File::create(path).unwrap();
    JpegEncoder::new_with_quality(file, 90)
        .write_image(&pixels, width, height, ExtendedColorType::Rgb8)
        .unwrap();
}

fn good_record(i: usize, image: Option<PathBuf>) -> Conversation {
    let question = if image.is_some() {
        format!("<image>\n第{i}张图里有什么？")
    } else {
        format!("Question {i}?")
    };
    Conversation {
        id: format!("good-{i}"),
        image,
        turns: vec![
            Turn::user(question),
            Turn::assistant(format!("Answer {i}.")),
        ],
    }
}

/// A manifest of GOOD good records (some with relative images, one with an absolute path,
/// some text only) and one bad record of each loader-level kind, plus a blank line.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    manifest: PathBuf,
    /// (1-based manifest line, reason) of each bad record.
    bad: Vec<(usize, SkipReason)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let mut lines = Vec::new();
    for i in 0..GOOD {
        let image = match i % 3 {
            0 => None,
            1 => Some(PathBuf::from(format!("sub/{i}.jpg"))),
            _ => Some(PathBuf::from(format!("{i}.jpg"))),
        };
        let image = if i == 5 {
            Some(root.join("5.jpg"))
        } else {
            image
        };
        if let Some(rel) = &image {
            write_jpeg(&root.join(rel), 40 + i as u32, 36, i as u32);
        }
        lines.push(serde_json::to_string(&good_record(i, image)).unwrap());
    }
    let mut bad = Vec::new();
    let mut insert = |at: usize, line: String, reason| {
        lines.insert(at, line);
        bad.push((at, reason));
    };
    insert(
        3,
        "{\"id\": \"broken\", \"turns\": [".into(),
        SkipReason::MalformedRecord,
    );
    let missing = good_record(100, Some("absent.jpg".into()));
    insert(
        8,
        serde_json::to_string(&missing).unwrap(),
        SkipReason::ImageUnreadable,
    );
    let mut no_placeholder = good_record(101, Some("1.jpg".into()));
    no_placeholder.turns[0].text = "What is this?".into();
    let line = serde_json::to_string(&no_placeholder).unwrap();
    insert(15, line, SkipReason::MissingImagePlaceholder);
    let empty = r#"{"id": "empty", "turns": []}"#.to_string();
    insert(21, empty, SkipReason::EmptyConversation);
    // Line numbers: the blank line goes in at index 10, shifting the later bad records.
    lines.insert(10, "   ".into());
    let bad = bad
        .into_iter()
        .map(|(at, reason)| (if at >= 10 { at + 2 } else { at + 1 }, reason))
        .collect();
    let manifest = dir.path().join("train.jsonl");
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    Fixture {
        _dir: dir,
        root,
        manifest,
        bad,
    }
}

fn options(batch_size: usize) -> LoaderOptions {
    LoaderOptions {
        workers: 2,
        prefetch: 2,
        seed: 7,
        ..LoaderOptions::new(batch_size)
    }
}

fn open(f: &Fixture, options: LoaderOptions) -> Dataset {
    let config = EncoderConfig::new(TOKENS_PER_IMAGE, 256);
    let encoder = SampleEncoder::new(tokenizer(), ChatTemplate::default(), config).unwrap();
    Dataset::open(&f.manifest, &f.root, encoder, processor(), options).unwrap()
}

fn collect(batches: vlm_data::Batches) -> Vec<LoadedBatch> {
    batches.map(|b| b.expect("batch")).collect()
}

fn ids(batches: &[LoadedBatch]) -> Vec<String> {
    batches.iter().flat_map(|b| b.batch.ids.clone()).collect()
}

#[test]
fn an_epoch_yields_every_good_record_once_and_counts_the_bad_ones() {
    let f = fixture();
    let data = open(&f, options(4));
    assert_eq!(data.len(), GOOD + 4, "blank lines are not records");
    let mut epoch = data.epoch(0);
    let batches: Vec<LoadedBatch> = epoch.by_ref().map(|b| b.unwrap()).collect();

    let seen = ids(&batches);
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    let expected: BTreeSet<_> = (0..GOOD).map(|i| format!("good-{i}")).collect();
    assert_eq!(seen.len(), GOOD);
    assert_eq!(unique, expected);
    let sizes: Vec<usize> = batches.iter().map(|b| b.batch.batch_size).collect();
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&s| s == 4),
        "{sizes:?}"
    );
    assert_eq!(sizes.last(), Some(&(GOOD % 4)));
    assert_eq!(
        batches.last().unwrap().resume,
        Position {
            epoch: 0,
            index: data.len()
        }
    );

    let counts = epoch.skip_counts();
    assert_eq!(counts.total(), 4, "{counts}");
    for (_, reason) in &f.bad {
        assert_eq!(counts.get(*reason), 1, "{reason}: {counts}");
    }
    let mut reported: Vec<(usize, SkipReason)> = batches
        .iter()
        .flat_map(|b| b.skipped.iter().map(|s| (s.line, s.record.reason)))
        .collect();
    reported.sort();
    // Skips after the last batch are only counted; all four come before it here or not.
    assert!(
        reported.iter().all(|r| f.bad.contains(r)),
        "{reported:?} vs {:?}",
        f.bad
    );
}

#[test]
fn batches_carry_the_processed_pixels_and_image_runs() {
    let f = fixture();
    let data = open(
        &f,
        LoaderOptions {
            shuffle: false,
            ..options(5)
        },
    );
    let batches = collect(data.epoch(0));
    let first = &batches[0].batch;
    // Manifest order: good-0 (text only), good-1 (sub/1.jpg), good-2 (2.jpg), good-3, good-4.
    assert_eq!(
        first.ids,
        ["good-0", "good-1", "good-2", "good-3", "good-4"]
    );
    assert_eq!(first.has_image, [false, true, true, false, true]);
    assert_eq!(first.image_shape, Some([3, 32, 32]));
    let p = processor();
    let mut expected = p.process_path(f.root.join("sub/1.jpg")).unwrap().data;
    expected.extend(p.process_path(f.root.join("2.jpg")).unwrap().data);
    expected.extend(p.process_path(f.root.join("sub/4.jpg")).unwrap().data);
    assert_eq!(first.pixel_values, expected);
    let row = &first.input_ids[first.seq_len..2 * first.seq_len];
    assert_eq!(
        row.iter().filter(|&&id| id == 151655).count(),
        TOKENS_PER_IMAGE
    );
    // good-5 has an absolute image path.
    assert_eq!(batches[1].batch.ids[0], "good-5");
    assert!(batches[1].batch.has_image[0]);
}

#[test]
fn shuffling_depends_only_on_seed_and_epoch() {
    let f = fixture();
    let data = open(&f, options(4));
    let epoch0 = ids(&collect(data.epoch(0)));
    assert_eq!(
        ids(&collect(data.epoch(0))),
        epoch0,
        "same seed and epoch, same order"
    );
    assert_ne!(
        ids(&collect(data.epoch(1))),
        epoch0,
        "another epoch, another order"
    );
    let reseeded = open(
        &f,
        LoaderOptions {
            seed: 8,
            ..options(4)
        },
    );
    assert_ne!(
        ids(&collect(reseeded.epoch(0))),
        epoch0,
        "another seed, another order"
    );
    let ordered = open(
        &f,
        LoaderOptions {
            shuffle: false,
            ..options(4)
        },
    );
    let expected: Vec<String> = (0..GOOD).map(|i| format!("good-{i}")).collect();
    assert_eq!(ids(&collect(ordered.epoch(3))), expected);
}

#[test]
fn resuming_yields_exactly_the_remaining_batches() {
    let f = fixture();
    let data = open(&f, options(3));
    let full = collect(data.epoch(2));
    assert!(full.len() > 4);
    assert_eq!(collect(data.resume(Position::start_of(2)).unwrap()), full);
    for k in 0..full.len() {
        let rest = collect(data.resume(full[k].resume).unwrap());
        assert_eq!(
            rest,
            full[k + 1..],
            "resumed after batch {k} at {:?}",
            full[k].resume
        );
    }
    let end = Position {
        epoch: 2,
        index: data.len(),
    };
    assert!(collect(data.resume(end).unwrap()).is_empty());
    let past = Position {
        epoch: 2,
        index: data.len() + 1,
    };
    assert!(matches!(
        data.resume(past),
        Err(DataError::BadPosition { .. })
    ));
}

#[test]
fn strict_mode_stops_at_the_first_bad_record() {
    let f = fixture();
    let strict = LoaderOptions {
        strict: true,
        shuffle: false,
        ..options(2)
    };
    let mut batches = open(&f, strict).epoch(0);
    let first_bad_line = f.bad.iter().map(|(line, _)| *line).min().unwrap();
    let mut good = 0;
    let error = loop {
        match batches.next().expect("an error before the end") {
            Ok(b) => good += b.batch.batch_size,
            Err(e) => break e,
        }
    };
    assert_eq!(good, 2, "the one full batch before line {first_bad_line}");
    match &error {
        DataError::Invalid { line, record, path } => {
            assert_eq!(*line, first_bad_line);
            assert_eq!(record.reason, SkipReason::MalformedRecord);
            assert_eq!(path, &f.manifest);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(error.to_string().contains("train.jsonl"), "{error}");
    assert!(batches.next().is_none());
}

#[test]
fn drop_last_and_early_drop() {
    let f = fixture();
    let data = open(
        &f,
        LoaderOptions {
            drop_last: true,
            ..options(4)
        },
    );
    let batches = collect(data.epoch(0));
    assert_eq!(batches.len(), GOOD / 4);
    assert!(batches.iter().all(|b| b.batch.batch_size == 4));

    // Abandoning an epoch after one batch stops the loader (this would hang otherwise).
    let data = open(
        &f,
        LoaderOptions {
            prefetch: 1,
            ..options(1)
        },
    );
    let mut epoch = data.epoch(0);
    assert!(epoch.next().unwrap().is_ok());
    drop(epoch);
}

#[test]
fn open_errors_name_the_problem() {
    let f = fixture();
    let config = EncoderConfig::new(TOKENS_PER_IMAGE, 256);
    let encoder = SampleEncoder::new(tokenizer(), ChatTemplate::default(), config).unwrap();
    let missing = f.root.join("nope.jsonl");
    let err = Dataset::open(&missing, &f.root, encoder, processor(), options(2)).unwrap_err();
    assert!(matches!(err, DataError::Manifest { .. }));
    assert!(err.to_string().contains("nope.jsonl"), "{err}");

    let config = EncoderConfig::new(TOKENS_PER_IMAGE, 256);
    let encoder = SampleEncoder::new(tokenizer(), ChatTemplate::default(), config).unwrap();
    let err = Dataset::open(&f.manifest, &f.root, encoder, processor(), options(0)).unwrap_err();
    assert!(matches!(err, DataError::InvalidOptions(_)), "{err:?}");
}

#[test]
fn a_manifest_line_longer_than_a_record_can_be_is_refused_by_line() {
    let f = fixture();
    let manifest = f.root.join("endless.jsonl");
    let first = std::fs::read_to_string(&f.manifest).unwrap();
    let first = first.lines().next().unwrap();
    let endless = vec![b'x'; vlm_hf::MAX_RECORD_BYTES as usize + 1];
    std::fs::write(&manifest, [first.as_bytes(), b"\n", &endless].concat()).unwrap();
    let config = EncoderConfig::new(TOKENS_PER_IMAGE, 256);
    let encoder = SampleEncoder::new(tokenizer(), ChatTemplate::default(), config).unwrap();
    let err = Dataset::open(&manifest, &f.root, encoder, processor(), options(2)).unwrap_err();
    assert!(matches!(err, DataError::Manifest { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("endless.jsonl"), "{message}");
    assert!(
        message.contains("line 2") && message.contains("16 MiB limit"),
        "{message}"
    );
}
