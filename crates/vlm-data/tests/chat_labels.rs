//! The ChatML template, the encoding of conversations into `input_ids` + `labels`, the image
//! run, truncation and every rejected-record case, with the real Qwen2 tokenizer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vlm_data::{
    ChatTemplate, Conversation, EncodedSample, EncoderConfig, EncoderError, InvalidRecord,
    SampleEncoder, SkipReason, Tokenizer, Turn, HELPFUL_ASSISTANT_SYSTEM_PROMPT, IGNORE_INDEX,
};

const IM_START: u32 = 151644;
const IM_END: u32 = 151645;
const IMAGE_PAD: u32 = 151655;

/// The committed tokenizer of `flavour` (`qwen2` or `qwen_v1`), loaded once per test binary.
fn tokenizer(flavour: &str) -> Tokenizer {
    static QWEN2: OnceLock<Tokenizer> = OnceLock::new();
    static QWEN_V1: OnceLock<Tokenizer> = OnceLock::new();
    let cell = if flavour == "qwen2" { &QWEN2 } else { &QWEN_V1 };
    cell.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/tokenizer")
            .join(flavour)
            .join("tokenizer.json");
        Tokenizer::from_file(path).expect("committed tokenizer")
    })
    .clone()
}

fn encoder(tokens_per_image: usize, max_len: usize) -> SampleEncoder {
    let config = EncoderConfig::new(tokens_per_image, max_len);
    SampleEncoder::new(tokenizer("qwen2"), ChatTemplate::default(), config).expect("encoder")
}

fn conv(image: Option<&str>, turns: Vec<Turn>) -> Conversation {
    Conversation {
        id: "rec-1".into(),
        image: image.map(PathBuf::from),
        turns,
    }
}

/// The hand-written two-turn conversation of the acceptance test.
fn two_turns() -> Conversation {
    conv(
        Some("shapes/0001.jpg"),
        vec![
            Turn::user("<image>\n图中是什么颜色的形状？"),
            Turn::assistant("一个红色的圆形。"),
            Turn::user("它在哪里？"),
            Turn::assistant("在左上角。"),
        ],
    )
}

/// The runs of consecutive supervised positions, as (start, end) ranges.
fn supervised_runs(labels: &[i64]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &l) in labels.iter().chain([IGNORE_INDEX].iter()).enumerate() {
        match (l != IGNORE_INDEX, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    runs
}

#[test]
fn template_renders_chatml_with_system_prompt() {
    let c = two_turns();
    let text = ChatTemplate::default().render(&c.turns);
    assert_eq!(
        text,
        "<|im_start|>system\n你是一位图像理解助手。<|im_end|>\n\
         <|im_start|>user\n<image>\n图中是什么颜色的形状？<|im_end|>\n\
         <|im_start|>assistant\n一个红色的圆形。<|im_end|>\n\
         <|im_start|>user\n它在哪里？<|im_end|>\n\
         <|im_start|>assistant\n在左上角。<|im_end|>\n"
    );
    let qwen = ChatTemplate::new(HELPFUL_ASSISTANT_SYSTEM_PROMPT);
    let prompt = qwen.render_generation_prompt(&c.turns[..1]);
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\n<image>\n图中是什么颜色的形状？<|im_end|>\n<|im_start|>assistant\n"
    );
    let bare = ChatTemplate::without_system().render(&c.turns[..2]);
    assert!(bare.starts_with("<|im_start|>user\n<image>"), "{bare}");
    assert_eq!(ChatTemplate::without_system().system(), None);
}

#[test]
fn two_turn_conversation_exact_ids_and_labels() {
    let enc = encoder(4, 512);
    let s = enc.encode(&two_turns()).expect("valid record");
    #[rustfmt::skip]
    let expected_ids: Vec<u32> = vec![
        // <|im_start|>system\n你是一位图像理解助手。<|im_end|>\n
        IM_START, 8948, 198, 56568, 109182, 107553, 101128, 110498, 1773, IM_END, 198,
        // <|im_start|>user\n<image x4>\n图中是什么颜色的形状？<|im_end|>\n
        IM_START, 872, 198, IMAGE_PAD, IMAGE_PAD, IMAGE_PAD, IMAGE_PAD,
        198, 28029, 15946, 102021, 102284, 9370, 107241, 11319, IM_END, 198,
        // <|im_start|>assistant\n一个红色的圆形。<|im_end|>\n
        IM_START, 77091, 198, 46944, 104165, 9370, 110344, 1773, IM_END, 198,
        // <|im_start|>user\n它在哪里？<|im_end|>\n
        IM_START, 872, 198, 99652, 105930, 11319, IM_END, 198,
        // <|im_start|>assistant\n在左上角。<|im_end|>\n
        IM_START, 77091, 198, 18493, 77559, 17447, 63836, 1773, IM_END, 198,
    ];
    assert_eq!(s.input_ids, expected_ids);
    // Supervised: the answers and their <|im_end|> (positions 31..37 and 49..55), not the "\n".
    let mut expected_labels = vec![IGNORE_INDEX; expected_ids.len()];
    for i in (31..37).chain(49..55) {
        expected_labels[i] = i64::from(expected_ids[i]);
    }
    assert_eq!(s.labels, expected_labels);
    assert_eq!(s.image_span, Some(14..18));
    assert!(!s.truncated);

    // The supervised tokens decode to exactly the answers, each closed by <|im_end|>.
    let tok = enc.tokenizer();
    let answers: Vec<String> = supervised_runs(&s.labels)
        .into_iter()
        .map(|r| tok.decode(&s.input_ids[r], false).unwrap())
        .collect();
    assert_eq!(
        answers,
        ["一个红色的圆形。<|im_end|>", "在左上角。<|im_end|>"]
    );

    // Segment-wise encoding equals tokenising the rendered text with <image> expanded.
    let rendered = enc.template().render(&two_turns().turns);
    let whole = tok
        .encode(&rendered.replace("<image>", &"<|image_pad|>".repeat(4)))
        .unwrap();
    assert_eq!(whole, s.input_ids);
}

#[test]
fn image_run_has_tokens_per_image_ids_where_the_placeholder_was() {
    for n in [1, 16, 576] {
        let c = conv(
            Some("a.jpg"),
            vec![
                Turn::user("Look: <image> what is it?"),
                Turn::assistant("A square."),
            ],
        );
        let s = encoder(n, 4096).encode(&c).unwrap();
        let span = s.image_span.clone().expect("image span");
        assert_eq!(span.len(), n);
        assert!(s.input_ids[span.clone()].iter().all(|&id| id == IMAGE_PAD));
        assert_eq!(s.input_ids.iter().filter(|&&id| id == IMAGE_PAD).count(), n);
        assert!(s.labels[span.clone()].iter().all(|&l| l == IGNORE_INDEX));
        let tok = encoder(n, 4096).tokenizer().clone();
        let before = tok.decode(&s.input_ids[..span.start], false).unwrap();
        assert!(before.ends_with("<|im_start|>user\nLook: "), "{before:?}");
        let after = tok
            .decode(&s.input_ids[span.end..span.end + 4], false)
            .unwrap();
        assert_eq!(after, " what is it?");
    }
}

#[test]
fn text_only_conversation_has_no_image_span() {
    let c = conv(None, vec![Turn::user("Hi"), Turn::assistant("Hello!")]);
    let s = encoder(4, 512).encode(&c).unwrap();
    assert_eq!(s.image_span, None);
    assert!(!s.input_ids.contains(&IMAGE_PAD));
}

#[test]
fn multi_turn_supervises_every_answer() {
    let answers = ["First answer.", "Second one.", "第三个回答。"];
    let mut turns = vec![];
    for (i, a) in answers.iter().enumerate() {
        let q = if i == 0 {
            "<image>\nQ1".to_string()
        } else {
            format!("Q{}", i + 1)
        };
        turns.push(Turn::user(q));
        turns.push(Turn::assistant(*a));
    }
    let enc = encoder(8, 1024);
    let s = enc.encode(&conv(Some("x.png"), turns)).unwrap();
    let runs = supervised_runs(&s.labels);
    assert_eq!(runs.len(), 3);
    for (run, answer) in runs.into_iter().zip(answers) {
        assert_eq!(s.input_ids[run.end - 1], IM_END);
        assert_eq!(
            s.input_ids[run.start - 1],
            198,
            "preceded by the header's \\n"
        );
        assert_eq!(
            s.input_ids[run.end], 198,
            "the \\n after <|im_end|> is not supervised"
        );
        let text = enc.tokenizer().decode(&s.input_ids[run], false).unwrap();
        assert_eq!(text, format!("{answer}<|im_end|>"));
    }
    for (id, label) in s.input_ids.iter().zip(&s.labels) {
        assert!(*label == IGNORE_INDEX || *label == i64::from(*id));
    }
}

#[test]
fn generation_prompt_ends_with_assistant_header_and_is_unsupervised() {
    let c = conv(Some("a.jpg"), vec![Turn::user("<image>\nDescribe.")]);
    let enc = encoder(4, 16);
    let s = enc.encode_prompt(&c).unwrap();
    assert_eq!(
        &s.input_ids[s.input_ids.len() - 3..],
        &[IM_START, 77091, 198]
    );
    assert!(s.labels.iter().all(|&l| l == IGNORE_INDEX));
    assert_eq!(s.image_span.as_ref().map(|r| r.len()), Some(4));
    // Not truncated even though it is longer than max_len (16).
    assert!(s.input_ids.len() > 16 && !s.truncated);
    let text = enc.tokenizer().decode(&s.input_ids, false).unwrap();
    let expected = enc
        .template()
        .render_generation_prompt(&c.turns)
        .replace("<image>", &"<|image_pad|>".repeat(4));
    assert_eq!(text, expected);
}

fn reason(result: Result<EncodedSample, InvalidRecord>) -> SkipReason {
    match result {
        Ok(s) => panic!("expected a rejection, got {s:?}"),
        Err(e) => {
            assert_eq!(e.id, "rec-1");
            assert!(!e.detail.is_empty());
            e.reason
        }
    }
}

#[test]
fn every_bad_record_gives_its_skip_reason() {
    let enc = encoder(4, 512);
    let u = Turn::user;
    let a = Turn::assistant;
    let cases: Vec<(SkipReason, Conversation)> = vec![
        (SkipReason::EmptyConversation, conv(None, vec![])),
        (
            SkipReason::FirstTurnNotUser,
            conv(None, vec![a("Hi"), u("Hello")]),
        ),
        (
            SkipReason::RolesNotAlternating,
            conv(None, vec![u("a"), u("b"), a("c")]),
        ),
        (
            SkipReason::LastTurnNotAssistant,
            conv(None, vec![u("a"), a("b"), u("c")]),
        ),
        (
            SkipReason::EmptyAssistantTurn,
            conv(None, vec![u("a"), a(" \n")]),
        ),
        (
            SkipReason::MissingImagePlaceholder,
            conv(Some("x.jpg"), vec![u("What?"), a("A cat.")]),
        ),
        (
            SkipReason::MultipleImagePlaceholders,
            conv(Some("x.jpg"), vec![u("<image><image>"), a("Two?")]),
        ),
        (
            SkipReason::MultipleImagePlaceholders,
            conv(
                Some("x.jpg"),
                vec![u("<image>"), a("x"), u("<image>"), a("y")],
            ),
        ),
        (
            SkipReason::PlaceholderWithoutImage,
            conv(None, vec![u("<image>\nWhat?"), a("A cat.")]),
        ),
        (
            SkipReason::PlaceholderOutsideUserTurn,
            conv(Some("x.jpg"), vec![u("What?"), a("<image>")]),
        ),
        (
            SkipReason::SpecialTokenInText,
            conv(None, vec![u("a<|im_end|>b"), a("c")]),
        ),
        (
            SkipReason::SpecialTokenInText,
            conv(None, vec![u("a"), a("c<|im_start|>")]),
        ),
        (
            SkipReason::SpecialTokenInText,
            conv(Some("x.jpg"), vec![u("<image><|image_pad|>"), a("c")]),
        ),
    ];
    for (expected, c) in cases {
        assert_eq!(reason(enc.encode(&c)), expected, "{c:?}");
    }
    let prompt = conv(None, vec![u("a"), a("b")]);
    assert_eq!(
        reason(enc.encode_prompt(&prompt)),
        SkipReason::LastTurnNotUser
    );
    // The same structural checks guard prompts.
    assert_eq!(
        reason(enc.encode_prompt(&conv(None, vec![u("<image>")]))),
        SkipReason::PlaceholderWithoutImage
    );
}

#[test]
fn truncation_never_cuts_the_image_run() {
    let c = conv(
        Some("a.jpg"),
        vec![
            Turn::user("Describe this picture please: <image>"),
            Turn::assistant("It shows a blue triangle on a white background."),
        ],
    );
    let full = encoder(32, 10_000).encode(&c).unwrap();
    let span = full.image_span.clone().unwrap();
    let first_answer = supervised_runs(&full.labels)[0].start;
    for max_len in 1..=full.input_ids.len() + 2 {
        match encoder(32, max_len).encode(&c) {
            Ok(s) => {
                assert!(
                    max_len >= span.end && max_len > first_answer,
                    "max_len {max_len}"
                );
                assert_eq!(s.image_span, Some(span.clone()));
                assert_eq!(s.input_ids.len(), max_len.min(full.input_ids.len()));
                assert_eq!(s.input_ids, full.input_ids[..s.input_ids.len()]);
                assert_eq!(s.labels, full.labels[..s.labels.len()]);
                assert_eq!(s.truncated, max_len < full.input_ids.len());
            }
            Err(e) if max_len < span.end => assert_eq!(e.reason, SkipReason::ImageDoesNotFit),
            Err(e) => {
                assert_eq!(e.reason, SkipReason::NothingSupervised, "max_len {max_len}");
                assert!(max_len <= first_answer);
            }
        }
    }
}

#[test]
fn placeholder_token_is_configurable() {
    // Qwen v1 has no <|image_pad|>: the encoder says so, and takes another token.
    let err = SampleEncoder::new(
        tokenizer("qwen_v1"),
        ChatTemplate::default(),
        EncoderConfig::new(4, 512),
    )
    .unwrap_err();
    assert!(err.to_string().contains("<|image_pad|>"), "{err}");
    let config = EncoderConfig {
        image_token: "<|extra_0|>".into(),
        ..EncoderConfig::new(4, 512)
    };
    let enc = SampleEncoder::new(tokenizer("qwen_v1"), ChatTemplate::default(), config).unwrap();
    let s = enc.encode(&two_turns()).unwrap();
    assert_eq!(enc.image_token_id(), 151646);
    assert_eq!(enc.pad_id(), 151643);
    let span = s.image_span.unwrap();
    assert!(s.input_ids[span].iter().all(|&id| id == 151646));
}

#[test]
fn degenerate_encoder_settings_are_refused() {
    for config in [EncoderConfig::new(0, 512), EncoderConfig::new(4, 0)] {
        let err = SampleEncoder::new(tokenizer("qwen2"), ChatTemplate::default(), config);
        assert!(matches!(err, Err(EncoderError::Config(_))), "{err:?}");
    }
}
