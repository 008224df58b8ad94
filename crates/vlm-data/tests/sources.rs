//! LLaVA-Instruct and AI Challenger sources: records to conversations, skip counts and
//! strict-mode errors, caption modes, image checks, and manifest preparation.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;
use vlm_data::skip::SkipReason as Invalid;
use vlm_data::source::{
    prepare, read_source, CaptionMode, ImageCheck, PathStyle, PrepareConfig, PrepareError,
    ReadOptions, SkipReason, SourceError, SourceKind, SourceSpec, SourceStats, AIC_PROMPT,
};
use vlm_data::{Conversation, Turn};

/// A folder with `images/a.jpg`, `images/b.jpg` (empty files: enough for existence checks) and
/// the annotation file `ann.json` holding `records`.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(records: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        for name in ["a.jpg", "b.jpg"] {
            std::fs::write(dir.path().join("images").join(name), b"").unwrap();
        }
        std::fs::write(dir.path().join("ann.json"), records.to_string()).unwrap();
        Self { dir }
    }

    fn image(&self, name: &str) -> PathBuf {
        self.dir.path().join("images").join(name)
    }

    fn spec(&self, kind: SourceKind) -> SourceSpec {
        SourceSpec {
            name: "test".into(),
            kind,
            annotations: self.dir.path().join("ann.json"),
            images: self.dir.path().join("images"),
            captions: CaptionMode::Each,
            seed: 0,
        }
    }

    fn read(&self, spec: &SourceSpec, options: &ReadOptions) -> (Vec<Conversation>, SourceStats) {
        let mut out = Vec::new();
        let stats = read_source(spec, options, &mut out).unwrap();
        (out, stats)
    }

    fn llava(&self) -> (Vec<Conversation>, SourceStats) {
        self.read(&self.spec(SourceKind::Llava), &ReadOptions::default())
    }

    fn aic(&self, captions: CaptionMode, seed: u64) -> (Vec<Conversation>, SourceStats) {
        let spec = SourceSpec {
            captions,
            seed,
            ..self.spec(SourceKind::AiChallenger)
        };
        self.read(&spec, &ReadOptions::default())
    }
}

fn turns(pairs: &[(&str, &str)]) -> Value {
    let messages: Vec<Value> = pairs
        .iter()
        .map(|(from, value)| json!({"from": from, "value": value}))
        .collect();
    Value::Array(messages)
}

#[test]
fn llava_records_become_conversations_with_every_turn() {
    let f = Fixture::new(json!([
        {"id": "000000033471", "image": "a.jpg", "conversations": turns(&[
            ("human", "<image>\nWhat are the colors of the bus in the image?"),
            ("gpt", "The bus in the image is white and red."),
            ("human", "What feature can be seen on the back of the bus?"),
            ("gpt", "The back of the bus features an advertisement."),
        ])},
        {"id": 42, "image": "b.jpg", "conversations": turns(&[
            ("human", "Describe the image.\n<image>"), ("gpt", "Two cats."),
        ])},
        {"id": "text-only", "conversations": turns(&[("human", "Hi"), ("gpt", "Hello!")])},
    ]));
    let (samples, stats) = f.llava();
    let expected = vec![
        Conversation {
            id: "000000033471".into(),
            image: Some(f.image("a.jpg")),
            turns: vec![
                Turn::user("<image>\nWhat are the colors of the bus in the image?"),
                Turn::assistant("The bus in the image is white and red."),
                Turn::user("What feature can be seen on the back of the bus?"),
                Turn::assistant("The back of the bus features an advertisement."),
            ],
        },
        Conversation {
            id: "42".into(),
            image: Some(f.image("b.jpg")),
            turns: vec![
                Turn::user("Describe the image.\n<image>"),
                Turn::assistant("Two cats."),
            ],
        },
        Conversation {
            id: "text-only".into(),
            image: None,
            turns: vec![Turn::user("Hi"), Turn::assistant("Hello!")],
        },
    ];
    assert_eq!(samples, expected);
    assert_eq!(
        (stats.records, stats.written, stats.skipped_total()),
        (3, 3, 0)
    );
}

#[test]
fn three_conversations_on_one_image_give_three_samples() {
    let record = |q: &str| {
        json!({"id": "000000000001", "image": "a.jpg",
               "conversations": turns(&[("human", q), ("gpt", "Yes.")])})
    };
    let f = Fixture::new(json!([
        record("<image>\nIs it red?"),
        record("<image>\nIs it big?"),
        record("Is it round?\n<image>"),
    ]));
    let (samples, stats) = f.llava();
    assert_eq!(samples.len(), 3);
    assert_eq!(stats.written, 3);
    let questions: Vec<&str> = samples.iter().map(|c| c.turns[0].text.as_str()).collect();
    assert_eq!(
        questions,
        [
            "<image>\nIs it red?",
            "<image>\nIs it big?",
            "Is it round?\n<image>"
        ]
    );
}

/// One good record, then one bad record per reason (in this order).
fn bad_llava_records() -> Value {
    let ok = turns(&[("human", "<image>\nQ?"), ("gpt", "A.")]);
    json!([
        {"id": "good", "image": "a.jpg", "conversations": ok},
        5,
        {"id": "no-conversations", "image": "a.jpg"},
        {"id": ["not", "a", "string"], "image": "a.jpg", "conversations": ok},
        {"id": "empty", "image": "a.jpg", "conversations": []},
        {"id": "role", "image": "a.jpg",
         "conversations": turns(&[("system", "<image>\nQ?"), ("gpt", "A.")])},
        {"id": "gpt-first", "image": "a.jpg",
         "conversations": turns(&[("gpt", "A."), ("human", "<image>\nQ?")])},
        {"id": "twice", "image": "a.jpg",
         "conversations": turns(&[("human", "<image>\nQ?"), ("human", "Q2?"), ("gpt", "A.")])},
        {"id": "unanswered", "image": "a.jpg",
         "conversations": turns(&[("human", "<image>\nQ?"), ("gpt", "A."), ("human", "Q2?")])},
        {"id": "no-placeholder", "image": "a.jpg",
         "conversations": turns(&[("human", "Q?"), ("gpt", "A.")])},
        {"id": "stray-placeholder",
         "conversations": turns(&[("human", "<image>\nQ?"), ("gpt", "A.")])},
        {"id": "missing-image", "image": "nope.jpg", "conversations": ok},
    ])
}

#[test]
fn malformed_llava_records_are_skipped_and_counted() {
    let f = Fixture::new(bad_llava_records());
    let (samples, stats) = f.llava();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].id, "good");
    assert_eq!((stats.records, stats.written), (12, 1));
    let expected = [
        (SkipReason::Malformed, 3),
        (SkipReason::UnknownRole, 1),
        (SkipReason::Invalid(Invalid::EmptyConversation), 1),
        (SkipReason::Invalid(Invalid::FirstTurnNotUser), 1),
        (SkipReason::Invalid(Invalid::RolesNotAlternating), 1),
        (SkipReason::Invalid(Invalid::LastTurnNotAssistant), 1),
        (SkipReason::Invalid(Invalid::MissingImagePlaceholder), 1),
        (SkipReason::Invalid(Invalid::PlaceholderWithoutImage), 1),
        (SkipReason::MissingImage, 1),
    ];
    for (reason, n) in expected {
        assert_eq!(stats.skipped_for(reason), n, "{reason}");
    }
    assert_eq!(stats.skipped_total(), 11);
    assert!(stats.reasons_line().contains("missing_image_file: 1"));
}

#[test]
fn strict_mode_names_the_file_and_the_record() {
    let f = Fixture::new(bad_llava_records());
    let strict = ReadOptions {
        strict: true,
        ..ReadOptions::default()
    };
    let spec = f.spec(SourceKind::Llava);
    let err = read_source(&spec, &strict, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, SourceError::Rejected { path, record: 1, reason: SkipReason::Malformed, .. }
            if *path == spec.annotations),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&spec.annotations.display().to_string()),
        "{message}"
    );
    assert!(message.contains("record 1"), "{message}");
}

#[test]
fn broken_json_is_an_error_naming_the_record() {
    let f = Fixture::new(json!([]));
    let good = json!({"id": "1", "conversations": turns(&[("human", "Q"), ("gpt", "A")])});
    std::fs::write(
        f.dir.path().join("ann.json"),
        format!("[{good}, {{\"id\": ]"),
    )
    .unwrap();
    let spec = f.spec(SourceKind::Llava);
    let err = read_source(&spec, &ReadOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, SourceError::Json { record: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ann.json"), "{err}");

    std::fs::write(f.dir.path().join("ann.json"), "{\"id\": 1}").unwrap();
    let err = read_source(&spec, &ReadOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, SourceError::Json { record: 0, .. }),
        "{err:?}"
    );

    let missing = SourceSpec {
        annotations: f.dir.path().join("nope.json"),
        ..spec
    };
    let err = read_source(&missing, &ReadOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, SourceError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.json"), "{err}");
}

fn aic_records() -> Value {
    json!([
        {"url": "http://example.invalid/a.jpg", "image_id": "a.jpg",
         "caption": ["  一个穿着红色衣服的人在街上走\n", "街上有一个人", "b", "c", "d"]},
        {"image_id": "b.jpg", "caption": ["两只猫", "猫在睡觉", "沙发上的猫"]},
        {"image_id": "a.jpg", "caption": ["x", "y"]},
    ])
}

#[test]
fn ai_challenger_captions_answer_the_fixed_prompt() {
    let f = Fixture::new(aic_records());
    let (samples, _) = f.aic(CaptionMode::Each, 0);
    let first = &samples[0];
    assert_eq!(first.id, "a.jpg#0");
    assert_eq!(first.image.as_deref(), Some(f.image("a.jpg").as_path()));
    let before = Turn::user(format!("<image>\n{AIC_PROMPT}"));
    let after = Turn::user(format!("{AIC_PROMPT}\n<image>"));
    assert!(first.turns[0] == before || first.turns[0] == after);
    assert_eq!(
        first.turns[1],
        Turn::assistant("一个穿着红色衣服的人在街上走")
    );
    assert_eq!(AIC_PROMPT, "这幅图像描述了什么？");
}

#[test]
fn ai_challenger_one_sample_per_caption_or_one_per_image() {
    let f = Fixture::new(aic_records());
    let (each, stats) = f.aic(CaptionMode::Each, 0);
    assert_eq!((stats.records, stats.written, each.len()), (3, 10, 10));
    let (one, stats) = f.aic(CaptionMode::OneRandom, 0);
    assert_eq!((stats.records, stats.written, one.len()), (3, 3, 3));
    for (sample, image) in one.iter().zip(["a.jpg", "b.jpg", "a.jpg"]) {
        assert!(sample.id.starts_with(&format!("{image}#")));
        assert!(
            each.contains(sample),
            "one-random picks one of the per-caption samples"
        );
    }
    assert_eq!(
        f.aic(CaptionMode::OneRandom, 0).0,
        one,
        "same seed, same choice"
    );
}

#[test]
fn ai_challenger_random_choices_follow_the_seed() {
    let records: Vec<Value> = (0..64)
        .map(|_| json!({"image_id": "a.jpg", "caption": ["0", "1", "2", "3", "4"]}))
        .collect();
    let f = Fixture::new(Value::Array(records));
    let draw = |seed| {
        let (samples, _) = f.aic(CaptionMode::OneRandom, seed);
        samples
            .into_iter()
            .map(|c| {
                (
                    c.turns[0].text.starts_with("<image>"),
                    c.turns[1].text.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let a = draw(1);
    assert_eq!(a, draw(1));
    assert_ne!(a, draw(2));
    assert!(a.iter().any(|(before, _)| *before) && a.iter().any(|(before, _)| !*before));
    let captions: std::collections::BTreeSet<&str> = a.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(captions.len(), 5, "every caption gets picked somewhere");
}

#[test]
fn bad_ai_challenger_records_are_skipped_and_counted() {
    let f = Fixture::new(json!([
        {"image_id": "a.jpg", "caption": ["ok", "  ", "fine"]},
        {"image_id": "a.jpg"},
        {"image_id": "", "caption": ["x"]},
        {"image_id": "a.jpg", "caption": []},
        {"image_id": "gone.jpg", "caption": ["x", "y"]},
        "a string",
    ]));
    let (first, _) = f.aic(CaptionMode::First, 0);
    let f2 = Fixture::new(json!([{"image_id": "a.jpg", "caption": [" ", "second"]}]));
    assert_eq!(
        f2.aic(CaptionMode::First, 0).0[0].id,
        "a.jpg#1",
        "first non-empty caption"
    );
    assert_eq!(first.len(), 1);
    let (samples, stats) = f.aic(CaptionMode::Each, 0);
    assert_eq!(samples.len(), 2);
    assert_eq!((stats.records, stats.written), (6, 2));
    assert_eq!(stats.skipped_for(SkipReason::EmptyCaption), 1);
    assert_eq!(stats.skipped_for(SkipReason::Malformed), 3);
    let empty = SkipReason::Invalid(Invalid::EmptyConversation);
    assert_eq!(stats.skipped_for(empty), 1);
    assert_eq!(stats.skipped_for(SkipReason::MissingImage), 1);
}

#[test]
fn decode_check_skips_and_reports_bad_images() {
    let f = Fixture::new(json!([
        {"id": "1", "image": "good.png", "conversations": turns(&[("human", "<image>"), ("gpt", "A")])},
        {"id": "2", "image": "a.jpg", "conversations": turns(&[("human", "<image>"), ("gpt", "A")])},
        {"id": "3", "image": "a.jpg", "conversations": turns(&[("human", "<image>"), ("gpt", "B")])},
    ]));
    let png =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../vlm-image/tests/image_data/gray8_trns.png");
    std::fs::copy(png, f.image("good.png")).unwrap();
    let spec = f.spec(SourceKind::Llava);
    let (samples, stats) = f.read(&spec, &ReadOptions::default());
    assert_eq!(samples.len(), 3, "existence checks pass the empty a.jpg");

    let decode = ReadOptions {
        images: ImageCheck::Decode,
        ..ReadOptions::default()
    };
    let (samples, stats_decoded) = f.read(&spec, &decode);
    assert_eq!(samples.len(), 1);
    assert_eq!(stats_decoded.skipped_for(SkipReason::BadImage), 2);
    assert_eq!(
        stats_decoded.bad_images.len(),
        1,
        "each bad image reported once"
    );
    assert_eq!(stats_decoded.bad_images[0].0, f.image("a.jpg"));
    assert_eq!(stats.skipped_total(), 0);
}

#[test]
fn prepare_writes_one_manifest_with_relative_or_absolute_paths() {
    let f = Fixture::new(json!([
        {"id": "1", "image": "a.jpg", "conversations": turns(&[("human", "<image>\nQ"), ("gpt", "A")])},
    ]));
    let config = json!({
        "output": "out/manifest.jsonl",
        "image_paths": "relative",
        "sources": [{"kind": "llava", "annotations": "ann.json", "images": "images"}],
    });
    let config_path = f.dir.path().join("prepare.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let config = PrepareConfig::from_file(&config_path).unwrap();
    assert_eq!(
        config.sources[0].name, "ann",
        "named after the annotation file"
    );
    let reports = prepare(&config, &mut |_, _| {}).unwrap();
    assert_eq!(reports[0].stats.written, 1);
    let manifest = std::fs::read_to_string(f.dir.path().join("out/manifest.jsonl")).unwrap();
    let line: Conversation = serde_json::from_str(manifest.trim_end()).unwrap();
    assert_eq!(line.image, Some(PathBuf::from("../images/a.jpg")));
    assert!(!f.dir.path().join("out/manifest.jsonl.part").exists());

    let absolute = PrepareConfig {
        image_paths: PathStyle::Absolute,
        ..config
    };
    prepare(&absolute, &mut |_, _| {}).unwrap();
    let manifest = std::fs::read_to_string(&absolute.output).unwrap();
    let line: Conversation = serde_json::from_str(manifest.trim_end()).unwrap();
    let expected = std::path::absolute(f.image("a.jpg")).unwrap();
    assert_eq!(line.image, Some(expected));
}

#[test]
fn prepare_in_strict_mode_leaves_no_manifest() {
    let f = Fixture::new(bad_llava_records());
    let config = PrepareConfig {
        output: f.dir.path().join("m.jsonl"),
        image_paths: PathStyle::Absolute,
        image_check: ImageCheck::Exists,
        strict: true,
        images_outside_root: false,
        sources: vec![f.spec(SourceKind::Llava)],
    };
    let err = prepare(&config, &mut |_, _| {}).unwrap_err();
    assert!(matches!(
        err,
        PrepareError::Source(SourceError::Rejected { record: 1, .. })
    ));
    assert!(!config.output.exists());
    assert!(!f.dir.path().join("m.jsonl.part").exists());
    let empty = PrepareConfig {
        sources: Vec::new(),
        ..config
    };
    assert!(matches!(
        prepare(&empty, &mut |_, _| {}),
        Err(PrepareError::NoSources)
    ));
}

#[test]
fn toml_configs_and_inline_specs_parse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let toml = "output = \"m.jsonl\"\nimage_check = \"decode\"\n\n[[source]]\nkind = \"ai_challenger\"\n\
                annotations = \"caps.json\"\nimages = \"imgs\"\ncaptions = \"one_random\"\nseed = 9\n";
    std::fs::write(&path, toml).unwrap();
    let config = PrepareConfig::from_file(&path).unwrap();
    assert_eq!(config.output, dir.path().join("m.jsonl"));
    assert_eq!(config.image_check, ImageCheck::Decode);
    let inline: SourceSpec =
        "kind=ai_challenger,annotations=caps.json,images=imgs,captions=one_random,seed=9"
            .parse()
            .unwrap();
    assert_eq!(config.sources[0], inline.relative_to(dir.path()));

    std::fs::write(&path, "output = \"m.jsonl\"\nbogus = 1\n").unwrap();
    let err = PrepareConfig::from_file(&path).unwrap_err();
    assert!(
        err.to_string().contains("c.toml") && err.to_string().contains("bogus"),
        "{err}"
    );
    assert!("kind=llava,annotations".parse::<SourceSpec>().is_err());
    assert!("kind=nope,annotations=a,images=b"
        .parse::<SourceSpec>()
        .is_err());
}

fn qa() -> Value {
    turns(&[("human", "<image>\nQ"), ("gpt", "A")])
}

#[test]
fn image_names_leaving_the_image_folder_are_skipped_unless_allowed() {
    let f = Fixture::new(Value::Null);
    std::fs::write(f.dir.path().join("secret.png"), b"").unwrap();
    let secret = f.dir.path().join("secret.png");
    std::os::unix::fs::symlink(&secret, f.image("link.png")).unwrap();
    let records = json!([
        {"id": "up", "image": "../secret.png", "conversations": qa()},
        {"id": "abs", "image": secret.to_str().unwrap(), "conversations": qa()},
        {"id": "proc", "image": "/proc/self/mem", "conversations": qa()},
        {"id": "link", "image": "link.png", "conversations": qa()},
        {"id": "ok", "image": "a.jpg", "conversations": qa()},
    ]);
    std::fs::write(f.dir.path().join("ann.json"), records.to_string()).unwrap();
    let (samples, stats) = f.llava();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].id, "ok");
    assert_eq!(
        stats.skipped_for(SkipReason::ImageOutsideRoot),
        4,
        "{stats:?}"
    );

    let aic = json!([{"image_id": "../secret.png", "caption": ["x"]}]);
    std::fs::write(f.dir.path().join("ann.json"), aic.to_string()).unwrap();
    let (samples, stats) = f.aic(CaptionMode::Each, 0);
    assert!(samples.is_empty());
    assert_eq!(stats.skipped_for(SkipReason::ImageOutsideRoot), 1);

    std::fs::write(f.dir.path().join("ann.json"), records.to_string()).unwrap();
    let allowed = ReadOptions {
        images: ImageCheck::None,
        images_outside_root: true,
        ..ReadOptions::default()
    };
    let (samples, _) = f.read(&f.spec(SourceKind::Llava), &allowed);
    assert_eq!(samples.len(), 5);
}

#[test]
fn duplicate_ids_are_counted_with_examples() {
    let f = Fixture::new(json!([
        {"id": "1", "image": "a.jpg", "conversations": qa()},
        {"id": "1", "image": "a.jpg", "conversations": qa()},
        {"id": "2", "image": "b.jpg", "conversations": qa()},
        {"id": "1", "image": "b.jpg", "conversations": qa()},
    ]));
    let (samples, stats) = f.llava();
    assert_eq!(samples.len(), 4, "duplicates are kept");
    assert_eq!(stats.duplicate_ids, 2);
    assert_eq!(stats.duplicate_examples, vec!["1".to_owned()]);
}

#[test]
fn a_missing_image_folder_is_an_error() {
    let f = Fixture::new(json!([{"id": "1", "image": "a.jpg", "conversations": qa()}]));
    let spec = SourceSpec {
        images: f.dir.path().join("no-such-folder"),
        ..f.spec(SourceKind::Llava)
    };
    let err = read_source(&spec, &ReadOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, SourceError::ImageFolder { .. }), "{err}");
    assert!(err.to_string().contains("no-such-folder"), "{err}");
}

#[test]
fn prepare_refuses_to_overwrite_an_input() {
    let f = Fixture::new(json!([{"id": "1", "image": "a.jpg", "conversations": qa()}]));
    let annotations = f.dir.path().join("ann.json");
    let before = std::fs::read(&annotations).unwrap();
    let link = f.dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&annotations, &link).unwrap();
    let spelled = f.dir.path().join("images/../ann.json");
    for output in [annotations.clone(), link, spelled] {
        let config = PrepareConfig {
            output,
            image_paths: PathStyle::Absolute,
            image_check: ImageCheck::Exists,
            strict: false,
            images_outside_root: false,
            sources: vec![f.spec(SourceKind::Llava)],
        };
        let err = prepare(&config, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, PrepareError::OutputIsInput { .. }), "{err}");
        assert_eq!(std::fs::read(&annotations).unwrap(), before);
    }
}
