//! `examples/chat.rs` on the tiny `llava` fixture. Its vocabulary (512) is smaller than the
//! Qwen tokenizer's, so a ChatML prompt (`<|im_start|>` = 151644) is refused with a typed
//! error, and generation is driven by `--prompt-ids` (ids < 512, with the image's run of
//! placeholders); the Qwen tokenizer still decodes the generated ids (all < 512), which is
//! what the streamed text is checked against.

#[allow(dead_code)] // the example's `main`: these tests call `run`
#[path = "../examples/chat.rs"]
mod chat;
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use chat::{run, run_batch, Args, ChatError, Reply, HELP, PROMPT_MARKER};
use clap::Parser;
use vlm::cli::LoadError;
use vlm::data::Tokenizer;
use vlm_testkit::fixture;

fn tokenizer() -> std::path::PathBuf {
    fixture("..").join("tokenizer/qwen2/tokenizer.json")
}

fn chat(flags: &[&str], stdin: &str) -> Result<(Vec<Reply>, String), ChatError> {
    chat_with(&tokenizer(), flags, stdin)
}

/// Runs chat on the llava fixture with `--tokenizer tokenizer` and `flags`.
fn chat_with(
    tokenizer: &std::path::Path,
    flags: &[&str],
    stdin: &str,
) -> Result<(Vec<Reply>, String), ChatError> {
    let llava = fixture("llava");
    let mut argv = vec![
        "chat".to_string(),
        "--llava".into(),
        llava.display().to_string(),
        "--tokenizer".into(),
        tokenizer.display().to_string(),
    ];
    argv.extend(flags.iter().map(|f| f.to_string()));
    let args = Args::try_parse_from(argv).expect("valid flags");
    let mut out = Vec::new();
    let replies = run(&args, stdin.as_bytes(), &mut out)?;
    Ok((replies, String::from_utf8(out).expect("utf-8 output")))
}

/// Prompt ids: a few tokens, the image's 16 placeholders (id 511), a few more.
fn prompt_ids() -> String {
    let mut ids = vec!["3".to_string(), "17".into()];
    ids.extend(std::iter::repeat_n("511".to_string(), 16));
    ids.extend(["42".to_string(), "7".into()]);
    ids.join(",")
}

/// The flags of a greedy answer of `max_new_tokens` about a small image, from fixed ids.
fn greedy_flags(max_new_tokens: usize) -> Vec<String> {
    let image = fixture("image_processor").join("small_rgb.jpg");
    let image = image.display().to_string();
    let max_new_tokens = max_new_tokens.to_string();
    [
        "--image",
        &image,
        "--prompt-ids",
        &prompt_ids(),
        "--max-new-tokens",
        &max_new_tokens,
    ]
    .map(str::to_string)
    .to_vec()
}

#[test]
fn greedy_answers_stream_their_decoded_ids_and_repeat() {
    let image = fixture("image_processor").join("small_rgb.jpg");
    let image = image.display().to_string();
    let ids = prompt_ids();
    let flags = greedy_flags(12);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (replies, out) = chat(&flags, "").expect("chat");
    let tokenizer = Tokenizer::from_file(tokenizer()).expect("tokenizer");
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    assert_eq!(reply.ids.len(), 12);
    assert_eq!(
        reply.text,
        tokenizer.decode(&reply.ids, true).expect("decode")
    );
    assert_eq!(out, format!("{}\n", reply.text));

    let (again, _) = chat(&flags, "").expect("chat again");
    assert_eq!(again, replies, "greedy decoding is deterministic");

    let sampled = [
        "--prompt-ids",
        &ids,
        "--image",
        &image,
        "--temperature",
        "0.9",
    ];
    let sampled: Vec<&str> = sampled
        .into_iter()
        .chain(["--seed", "5", "--max-new-tokens", "6"])
        .collect();
    let (a, _) = chat(&sampled, "").expect("sampled");
    let (b, _) = chat(&sampled, "").expect("sampled again");
    assert_eq!(a, b, "equal seeds give equal answers");
}

#[test]
fn the_tokenizer_flag_takes_a_tokenizer_json_or_its_folder() {
    let flags = greedy_flags(4);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (from_file, _) = chat(&flags, "").expect("chat");
    let folder = tokenizer().parent().expect("folder").to_path_buf();
    let (from_folder, _) = chat_with(&folder, &flags, "").expect("chat, tokenizer folder");
    assert_eq!(from_folder, from_file);

    let empty = tempfile::tempdir().expect("tempdir");
    let err = chat_with(empty.path(), &flags, "").expect_err("no tokenizer.json");
    assert!(
        matches!(err, ChatError::Load(LoadError::Tokenizer(_))),
        "{err}"
    );
    assert!(err.to_string().contains("has no tokenizer.json"), "{err}");
}

#[test]
fn bad_input_is_a_typed_error() {
    // The Qwen tokenizer's ChatML ids are outside the tiny model's vocabulary.
    let err = chat(&["--prompt", "hello"], "").expect_err("out of vocabulary");
    assert!(
        matches!(
            err,
            ChatError::TokenOutOfVocab {
                vocab_size: 512,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    // So is the REPL's first turn.
    let err = chat(&[], "hello\n").expect_err("out of vocabulary");
    assert!(matches!(err, ChatError::TokenOutOfVocab { .. }), "{err}");

    let err = chat(&["--prompt-ids", "1,2,600"], "").expect_err("id >= vocab");
    assert!(err.to_string().contains("600"), "{err}");
    let err = chat(&["--prompt-ids", "1", "--image", "nope.png"], "").expect_err("no image");
    assert!(matches!(err, ChatError::Image(_)), "{err}");
    let err = chat(
        &["--prompt-ids", "1", "--top-p", "2", "--temperature", "1"],
        "",
    )
    .expect_err("top-p");
    assert!(matches!(err, ChatError::Usage(_)), "{err}");
    let err = chat(&["--prompt-ids", "1", "--max-new-tokens", "0"], "").expect_err("zero");
    assert!(matches!(err, ChatError::Usage(_)), "{err}");

    let args = Args::try_parse_from(["chat", "--prompt-ids", "1", "--llm", "a"]).expect("flags");
    let err = run(&args, &b""[..], &mut Vec::new()).expect_err("no model");
    assert!(matches!(err, ChatError::Load(LoadError::Usage(_))), "{err}");
    assert!(Args::try_parse_from(["chat", "--llava", "a", "--checkpoint", "b"]).is_err());
}

#[test]
fn without_a_model_flag_the_quickstart_checkpoint_is_the_default() {
    let flags = ["chat", "--prompt-ids", "1", "--max-new-tokens", "1"];
    let args = Args::try_parse_from(flags).expect("flags");
    let result = run(&args, &b""[..], &mut Vec::new());
    let relative = std::path::Path::new(vlm::cli::QUICKSTART_CHECKPOINT);
    let trained = relative.is_dir() || fixture("../..").join(relative).is_dir();
    match result {
        Ok(replies) => assert!(trained && replies.len() == 1, "{replies:?}"),
        Err(err) => {
            assert!(!trained, "the quickstart checkpoint exists but: {err}");
            assert!(matches!(err, ChatError::Load(LoadError::Usage(_))), "{err}");
            assert!(err.to_string().contains("--example quickstart"), "{err}");
        }
    }
}

#[test]
fn repl_commands_never_reach_the_model() {
    // Any question fails on the fixture (its vocabulary lacks ChatML), so reaching the end
    // without an error shows that no command, nor the line after /quit, was sent.
    let stdin = "/help\n\n  /bogus now\n/clear\n/quit\nhello\n";
    let (replies, out) = chat(&[], stdin).expect("commands only");
    assert!(replies.is_empty(), "{replies:?}");
    assert_eq!(out.matches(PROMPT_MARKER).count(), 5, "{out}");
    assert!(
        out.starts_with(&format!("{PROMPT_MARKER}{HELP}\n")),
        "{out}"
    );
    assert!(
        out.contains("unknown command /bogus now: /help lists the commands"),
        "{out}"
    );
    assert!(out.contains("(conversation cleared)"), "{out}");

    let (replies, out) = chat(&[], "/help\n").expect("end of input");
    assert!(replies.is_empty());
    assert!(out.ends_with(&format!("{PROMPT_MARKER}\n")), "{out}");
}

#[test]
fn the_chat_program_prompts_on_piped_stdin_and_quits() {
    let mut child = Command::new(common::example("chat"))
        .arg("--llava")
        .arg(fixture("llava"))
        .arg("--tokenizer")
        .arg(tokenizer())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"/help\n/quit\nhello\n")
        .expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("chat output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, format!("{PROMPT_MARKER}{HELP}\n{PROMPT_MARKER}"));
}

#[test]
fn clear_forgets_the_conversation_and_shows_the_image_again() {
    let folder = tempfile::tempdir().expect("tempdir");
    let image = folder.path().join("square.png");
    std::fs::write(&image, common::png(64, 1)).expect("write png");
    let args = Args::try_parse_from([
        "chat".as_ref(),
        "--checkpoint".as_ref(),
        common::checkpoint().as_os_str(),
        "--image".as_ref(),
        image.as_os_str(),
        "--max-new-tokens".as_ref(),
        "5".as_ref(),
    ])
    .expect("flags");
    let stdin = "What is this?\nAnd now?\n/clear\nWhat is this?\n";
    let mut out = Vec::new();
    let replies = run(&args, stdin.as_bytes(), &mut out).expect("chat");
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[2], replies[0], "after /clear the first turn again");
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(out.matches(PROMPT_MARKER).count(), 5, "{out}");
}

/// `chat` over the test checkpoint (the Qwen2 tokenizer's whole vocabulary) with `flags`.
fn checkpoint_args(flags: &[&str]) -> Args {
    let checkpoint = common::checkpoint().display().to_string();
    let argv = ["chat", "--checkpoint", &checkpoint, "--max-new-tokens", "6"];
    Args::try_parse_from(argv.iter().chain(flags)).expect("flags")
}

#[test]
fn batch_answers_equal_the_one_at_a_time_answers_in_input_order() {
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(folder.path().join("a.png"), common::png(64, 1)).expect("png");
    std::fs::write(folder.path().join("b.png"), common::png(48, 5)).expect("png");
    let lines = [
        r#"{"id": 1, "image": "a.png", "question": "What is this?"}"#,
        "not json",
        r#"{"id": "b", "image": "b.png", "question": "Which colour is the square?"}"#,
        r#"{"id": "c", "image": "missing.png", "question": "Anything?"}"#,
        "",
        r#"{"id": "d", "question": "Say something."}"#,
        r#"{"id": "e", "image": "a.png", "question": "Where is the square?"}"#,
        r#"{"id": "f", "question": "<image> twice"}"#,
    ];
    let questions = folder.path().join("questions.jsonl");
    std::fs::write(&questions, lines.join("\n")).expect("questions");
    let output = folder.path().join("answers.jsonl");
    let batch = questions.display().to_string();
    let out = output.display().to_string();
    let flags = ["--batch", &batch, "--output", &out, "--batch-size", "3"];
    let summary = run_batch(&checkpoint_args(&flags), &mut Vec::new()).expect("batch");
    assert_eq!(summary.answered, 4, "{summary}");
    let skipped: Vec<usize> = summary.skipped.iter().map(|s| s.line).collect();
    assert_eq!(skipped, [2, 4, 8], "{:?}", summary.skipped);
    assert!(
        summary.skipped[1].to_string().contains("missing.png"),
        "{:?}",
        summary.skipped
    );

    let written = std::fs::read_to_string(&output).expect("answers");
    assert!(
        written.lines().all(|l| l.starts_with(r#"{"id":"#)),
        "{written}"
    );
    let answers: Vec<serde_json::Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    let ids: Vec<&serde_json::Value> = answers.iter().map(|a| &a["id"]).collect();
    assert_eq!(
        ids,
        [&serde_json::json!(1), &"b".into(), &"d".into(), &"e".into()]
    );
    let asked = [
        (Some("a.png"), "What is this?"),
        (Some("b.png"), "Which colour is the square?"),
        (None, "Say something."),
        (Some("a.png"), "Where is the square?"),
    ];
    let texts = answers.iter().filter_map(|a| a["answer"].as_str());
    assert!(
        texts.clone().count() == 4 && texts.clone().any(|t| !t.is_empty()),
        "{written}"
    );
    for ((image, question), answer) in asked.into_iter().zip(&answers) {
        let image = image.map(|name| folder.path().join(name).display().to_string());
        let mut flags = vec!["--prompt", question];
        flags.extend(image.iter().flat_map(|path| ["--image", path.as_str()]));
        let replies = run(&checkpoint_args(&flags), &b""[..], &mut Vec::new()).expect("one");
        assert_eq!(answer["answer"], replies[0].text.trim(), "{question}");
    }
}

#[test]
fn batch_answers_go_to_stdout_without_output_and_bad_sizes_are_refused() {
    let folder = tempfile::tempdir().expect("tempdir");
    let questions = folder.path().join("q.jsonl");
    std::fs::write(&questions, r#"{"id": 7, "question": "Hi?"}"#).expect("questions");
    let batch = questions.display().to_string();
    let mut out = Vec::new();
    let summary = run_batch(&checkpoint_args(&["--batch", &batch]), &mut out).expect("batch");
    assert_eq!((summary.answered, summary.skipped.len()), (1, 0));
    let line: serde_json::Value = serde_json::from_slice(&out).expect("one json line");
    assert_eq!(line["id"], 7);
    assert!(line["answer"].is_string(), "{line}");

    let zero = checkpoint_args(&["--batch", &batch, "--batch-size", "0"]);
    let err = run_batch(&zero, &mut Vec::new()).expect_err("batch size 0");
    assert!(matches!(err, ChatError::Usage(_)), "{err}");
    let missing = checkpoint_args(&["--batch", "no/such.jsonl"]);
    let err = run_batch(&missing, &mut Vec::new()).expect_err("no file");
    assert!(err.to_string().contains("no/such.jsonl"), "{err}");
    assert!(Args::try_parse_from(["chat", "--output", "x.jsonl"]).is_err());
    assert!(Args::try_parse_from(["chat", "--batch", "q", "--prompt", "p"]).is_err());
}
