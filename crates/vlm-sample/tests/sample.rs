//! The synthetic shapes dataset: deterministic bytes, answers and captions that match the
//! pixels, and the committed `data/sample/` instance reproducible byte for byte.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use vlm_data::source::{
    read_source, CaptionMode, ImagePaths, ManifestWriter, PrepareConfig, ReadOptions, SourceKind,
    SourceSpec,
};
use vlm_data::{Conversation, Role};
use vlm_image::{decode_image_path, DecodeLimits, RgbImage};
use vlm_sample::sample::{
    generate, scenes, write_sample_data, Color, Position, SampleConfig, ShapeKind, Split,
};

fn small(seed: u64) -> SampleConfig {
    SampleConfig {
        seed,
        train: 24,
        heldout: 8,
        size: 96,
    }
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample")
}

#[test]
fn same_seed_gives_identical_bytes() {
    let a = generate(&small(5)).unwrap();
    let b = generate(&small(5)).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.len(),
        24 + 8 + 4,
        "one PNG per image and four annotation files"
    );
    let c = generate(&small(6)).unwrap();
    assert_ne!(a, c, "another seed gives other data");
}

#[test]
fn written_files_are_the_generated_ones() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_sample_data(dir.path(), &small(1)).unwrap();
    for f in &files {
        assert_eq!(std::fs::read(dir.path().join(&f.path)).unwrap(), f.bytes);
    }
    assert!(dir.path().join("images/train_0023.png").is_file());
    assert!(dir.path().join("images/heldout_0007.png").is_file());
}

#[test]
fn heldout_layouts_differ_from_train_layouts() {
    let config = SampleConfig::default();
    let train: HashSet<_> = scenes(&config, Split::Train)
        .into_iter()
        .map(|s| s.shapes)
        .collect();
    let heldout = scenes(&config, Split::Heldout);
    assert_eq!(heldout.len(), config.heldout);
    assert!(heldout.iter().all(|s| !train.contains(&s.shapes)));
    let counts: BTreeSet<usize> = heldout.iter().map(|s| s.shapes.len()).collect();
    assert_eq!(counts, BTreeSet::from([1, 2, 3]));
}

/// A scene rendered to pixels: the center color and the outline found at each position.
struct Seen {
    image: RgbImage,
    size: u32,
}

impl Seen {
    fn open(path: &Path) -> Self {
        let image = decode_image_path(path, &DecodeLimits::default()).unwrap();
        let size = image.width();
        Self { image, size }
    }

    /// The shape color at the center of `p`, or `None` for background.
    fn color_at(&self, p: Position) -> Option<Color> {
        let (x, y) = p.center(self.size);
        let pixel = self.image.pixel(x, y).unwrap();
        Color::ALL.into_iter().find(|c| c.rgb() == pixel)
    }

    /// The outline at `p`, told apart by two probes at 3/4 of the radius: up-right is inside
    /// only a square, down-right inside a square or a triangle.
    fn kind_at(&self, p: Position) -> Option<ShapeKind> {
        let color = self.color_at(p)?;
        let (x, y) = p.center(self.size);
        let d = self.size * 13 / 100 * 3 / 4;
        let inside = |x, y| self.image.pixel(x, y) == Some(color.rgb());
        Some(if inside(x + d, y - d) {
            ShapeKind::Square
        } else if inside(x + d, y + d) {
            ShapeKind::Triangle
        } else {
            ShapeKind::Circle
        })
    }

    fn shapes(&self) -> Vec<(Position, ShapeKind, Color)> {
        Position::ALL
            .into_iter()
            .filter_map(|p| Some((p, self.kind_at(p)?, self.color_at(p)?)))
            .collect()
    }
}

fn by_word<T: Copy>(all: &[T], word: impl Fn(T) -> &'static str, text: &str) -> T {
    let text = text.trim_end_matches('.').to_lowercase();
    *all.iter()
        .find(|&&t| word(t) == text)
        .unwrap_or_else(|| panic!("no word {text:?}"))
}

/// Checks one answer against the pixels.
fn check_answer(seen: &Seen, question: &str, answer: &str) {
    let shapes = seen.shapes();
    let color = |w: &str| by_word(&Color::ALL, Color::english, w);
    let kind = |w: &str| by_word(&ShapeKind::ALL, ShapeKind::english, w);
    let words: Vec<&str> = question.trim_end_matches('?').split(' ').collect();
    match words.as_slice() {
        ["How", "many", "shapes", "are", "there"] => {
            let n = ["One.", "Two.", "Three."].iter().position(|a| *a == answer);
            assert_eq!(n.map(|n| n + 1), Some(shapes.len()), "{question} {answer}");
        }
        ["Where", "is", "the", c, k] => {
            let p = by_word(&Position::ALL, Position::english, answer);
            assert_eq!(seen.color_at(p), Some(color(c)), "{question} {answer}");
            assert_eq!(seen.kind_at(p), Some(kind(k)), "{question} {answer}");
        }
        ["What", "color", "is", "the", k] => {
            let found = shapes.iter().find(|s| s.1 == kind(k)).unwrap();
            assert_eq!(found.2, color(answer), "{question} {answer}");
        }
        ["Which", "shape", "is", c] => {
            let found = shapes.iter().find(|s| s.2 == color(c)).unwrap();
            assert_eq!(found.1, kind(answer), "{question} {answer}");
        }
        _ => panic!("unexpected question {question:?}"),
    }
}

fn read(kind: SourceKind, annotations: PathBuf, images: PathBuf) -> Vec<Conversation> {
    let spec = SourceSpec {
        name: "sample".into(),
        kind,
        annotations,
        images,
        captions: CaptionMode::Each,
        seed: 0,
    };
    let mut out = Vec::new();
    let stats = read_source(&spec, &ReadOptions::default(), &mut out).unwrap();
    assert_eq!(stats.skipped_total(), 0, "{stats:?}");
    out
}

#[test]
fn answers_match_the_pixels() {
    let dir = tempfile::tempdir().unwrap();
    write_sample_data(dir.path(), &small(3)).unwrap();
    for split in ["train", "heldout"] {
        let annotations = dir.path().join(format!("llava_{split}.json"));
        let conversations = read(SourceKind::Llava, annotations, dir.path().join("images"));
        assert_eq!(conversations.len(), if split == "train" { 24 } else { 8 });
        for c in conversations {
            let seen = Seen::open(c.image.as_ref().unwrap());
            for pair in c.turns.chunks(2) {
                assert_eq!((pair[0].role, pair[1].role), (Role::User, Role::Assistant));
                let question = pair[0].text.replace("<image>", "");
                check_answer(&seen, question.trim(), &pair[1].text);
            }
        }
    }
}

#[test]
fn chinese_captions_match_the_pixels() {
    let dir = tempfile::tempdir().unwrap();
    write_sample_data(dir.path(), &small(4)).unwrap();
    let annotations = dir.path().join("aic_train.json");
    let samples = read(
        SourceKind::AiChallenger,
        annotations,
        dir.path().join("images"),
    );
    assert_eq!(samples.len(), 24 * 3, "three captions per image");
    // The second caption names each shape with its place: 左边有一个红色的圆形，...。
    for c in samples.iter().filter(|c| c.id.ends_with("#1")) {
        let seen = Seen::open(c.image.as_ref().unwrap());
        let caption = c.turns[1].text.trim_end_matches('。');
        let mut described = Vec::new();
        for part in caption.split('，') {
            let (place, rest) = part.split_once("有一个").unwrap();
            let (color, kind) = rest.split_once("的").unwrap();
            described.push((
                by_word(&Position::ALL, Position::chinese, place),
                by_word(&ShapeKind::ALL, ShapeKind::chinese, kind),
                by_word(&Color::ALL, Color::chinese, color),
            ));
        }
        assert_eq!(described, seen.shapes(), "{}", c.turns[1].text);
    }
}

/// `data/sample/` is exactly what `make_sample_data` with the default options writes.
#[test]
fn committed_sample_is_reproducible() {
    let dir = sample_dir();
    let files = generate(&SampleConfig::default()).unwrap();
    for f in &files {
        let committed = std::fs::read(dir.join(&f.path)).unwrap();
        assert!(committed == f.bytes, "{} differs", f.path.display());
    }
    let images = std::fs::read_dir(dir.join("images")).unwrap().count();
    assert_eq!(images, 250, "no stray images");
    let total: usize = files.iter().map(|f| f.bytes.len()).sum();
    assert!(total < 1 << 20, "generated files take {total} bytes");
}

/// The committed manifests are what `prepare_data` makes of the committed configs.
#[test]
fn committed_manifests_are_reproducible() {
    let dir = sample_dir();
    for split in ["train", "heldout"] {
        let config = PrepareConfig::from_file(&dir.join(format!("prepare_{split}.toml"))).unwrap();
        let folder = config.output.parent().unwrap().to_path_buf();
        let mut writer = ManifestWriter::new(Vec::new(), ImagePaths::RelativeTo(folder)).unwrap();
        for spec in &config.sources {
            read_source(spec, &ReadOptions::default(), &mut writer).unwrap();
        }
        let committed = std::fs::read(&config.output).unwrap();
        assert!(committed == writer.into_inner(), "{split}");
    }
}
