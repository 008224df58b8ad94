//! Loading tokenizers (and the errors when that fails), special-token look-up, and printing
//! generated ids as text with [`TextStreamer`] through the real Qwen2 tokenizer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vlm_data::{TextStreamer, Tokenizer, TokenizerError};

fn tokenizer_dir(flavour: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/tokenizer")
        .join(flavour)
}

fn qwen2() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| Tokenizer::from_model_dir(tokenizer_dir("qwen2")).expect("qwen2"))
}

#[test]
fn special_tokens_by_name() {
    let tok = qwen2();
    assert_eq!(tok.token_id("<|endoftext|>").unwrap(), 151643);
    assert_eq!(tok.token_id("<|im_start|>").unwrap(), 151644);
    assert_eq!(tok.token_id("<|im_end|>").unwrap(), 151645);
    assert_eq!(tok.token_id("<|image_pad|>").unwrap(), 151655);
    assert!(tok.is_special(151655));
    assert!(
        !tok.is_special(151657),
        "<tool_call> is not special in Qwen2.5"
    );
    assert!(!tok.is_special(198));
    assert_eq!(tok.vocab_size(), 151_665);
    assert!(tok.path().ends_with("qwen2/tokenizer.json"));

    let err = tok.token_id("<|no_such_token|>").unwrap_err();
    assert!(matches!(err, TokenizerError::UnknownToken { .. }));
    let message = err.to_string();
    assert!(message.contains("<|no_such_token|>"), "{message}");
    assert!(message.contains("qwen2/tokenizer.json"), "{message}");
}

#[test]
fn qwen_v1_loads_from_the_committed_conversion() {
    let tok = Tokenizer::from_file(tokenizer_dir("qwen_v1").join("tokenizer.json")).unwrap();
    assert_eq!(tok.token_id("<|extra_0|>").unwrap(), 151646);
    assert_eq!(tok.token_id("<|im_end|>").unwrap(), 151645);
    assert!(tok.token_id("<|image_pad|>").is_err());
}

#[test]
fn a_path_is_a_tokenizer_file_or_a_folder_holding_one() {
    let dir = tokenizer_dir("qwen_v1");
    let from_dir = Tokenizer::from_path(&dir).unwrap();
    let from_file = Tokenizer::from_path(dir.join("tokenizer.json")).unwrap();
    assert_eq!(from_dir.path(), from_file.path());
    let empty = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_path(empty.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::NotFound { .. }), "{err:?}");
}

#[test]
fn model_dir_with_only_qwen_tiktoken_names_the_file_to_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qwen.tiktoken"), "IQ== 0\n").unwrap();
    let err = Tokenizer::from_model_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::TiktokenOnly { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("data/tokenizer/qwen_v1/tokenizer.json"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn missing_or_broken_tokenizer_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_model_dir(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::NotFound { .. }), "{err:?}");

    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let err = Tokenizer::from_model_dir(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::Load { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );

    let err = Tokenizer::from_file(dir.path().join("absent.json")).unwrap_err();
    assert!(err.to_string().contains("absent.json"), "{err}");
}

/// Feeds `ids` one at a time; returns the chunks the streamer printed (finish included).
fn stream(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut streamer = TextStreamer::new(tok, skip_special);
    let mut chunks: Vec<String> = ids
        .iter()
        .filter_map(|&id| streamer.push(id).expect("push"))
        .collect();
    chunks.extend(streamer.finish().expect("finish"));
    chunks
}

#[test]
fn streamer_never_prints_half_characters() {
    let tok = qwen2();
    let text = "你好，世界！图像理解助手。🌍 家庭：👨\u{200d}👩\u{200d}👧，旗帜 🇨🇳，\
                罕见字 𠀀𪚥，Ünïcödé, café 😀!";
    let ids = tok.encode(text).unwrap();
    // The test is only meaningful if some tokens are partial characters on their own.
    let partial = ids
        .iter()
        .filter(|&&id| tok.decode(&[id], false).unwrap().contains('\u{FFFD}'))
        .count();
    assert!(partial >= 4, "only {partial} partial tokens");

    let chunks = stream(tok, &ids, false);
    for chunk in &chunks {
        assert!(
            !chunk.contains('\u{FFFD}'),
            "printed garbage {chunk:?} in {chunks:?}"
        );
        assert!(!chunk.is_empty());
    }
    assert_eq!(chunks.concat(), text);
    assert!(
        chunks.len() > 10,
        "printed token by token, not at the end: {chunks:?}"
    );
}

#[test]
fn streamer_skips_special_tokens_on_request_and_flushes_broken_bytes() {
    let tok = qwen2();
    let mut ids = tok.encode("答案是🌍").unwrap();
    ids.push(tok.token_id("<|im_end|>").unwrap());
    assert_eq!(stream(tok, &ids, true).concat(), "答案是🌍");
    assert_eq!(stream(tok, &ids, false).concat(), "答案是🌍<|im_end|>");

    // A character cut by the end of generation comes out once, as U+FFFD, at finish.
    let zwj = tok.encode("\u{200d}").unwrap();
    assert!(zwj.len() > 1, "ZWJ is split into byte tokens: {zwj:?}");
    let mut streamer = TextStreamer::new(tok, false);
    assert_eq!(streamer.push(zwj[0]).unwrap(), None);
    assert_eq!(streamer.finish().unwrap().as_deref(), Some("\u{FFFD}"));
    assert_eq!(streamer.finish().unwrap(), None);
}

#[test]
fn an_endless_tokenizer_file_is_refused_at_the_size_limit() {
    let err = vlm_data::Tokenizer::from_file("/dev/zero").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/dev/zero") && text.contains("256 MiB limit"),
        "{text}"
    );
}
