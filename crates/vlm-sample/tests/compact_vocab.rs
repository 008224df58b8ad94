//! The compact tokenizer against the full Qwen2 one over the bundled sample data: the same
//! texts give the same token strings, and the ids map both ways.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vlm_data::{ChatTemplate, Conversation, Tokenizer, IMAGE_PLACEHOLDER};
use vlm_sample::{CompactVocab, CompactVocabError};

const SPECIALS: [&str; 4] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|image_pad|>",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn qwen2_file() -> PathBuf {
    repo("data/tokenizer/qwen2/tokenizer.json")
}

/// Every conversation of the sample manifests as ChatML text (image as `<|image_pad|>`), and
/// every Chinese caption of the AI Challenger-style files.
fn sample_texts() -> Vec<String> {
    let template = ChatTemplate::default();
    let mut texts = Vec::new();
    for manifest in ["train.jsonl", "heldout.jsonl"] {
        let lines = fs::read_to_string(repo("data/sample").join(manifest)).expect("manifest");
        for line in lines.lines() {
            let conversation: Conversation = serde_json::from_str(line).expect("conversation");
            let text = template.render(&conversation.turns);
            texts.push(text.replace(IMAGE_PLACEHOLDER, "<|image_pad|>"));
        }
    }
    for captions in ["aic_train.json", "aic_heldout.json"] {
        let text = fs::read_to_string(repo("data/sample").join(captions)).expect("captions");
        let records: Vec<Value> = serde_json::from_str(&text).expect("caption JSON");
        for record in records {
            let captions = record["caption"].as_array().expect("caption list");
            texts.extend(captions.iter().filter_map(|c| c.as_str().map(String::from)));
        }
    }
    texts
}

fn tokens(tokenizer: &Tokenizer, text: &str) -> Vec<String> {
    let encoding = tokenizer.inner().encode_fast(text, false).expect("encode");
    encoding.get_tokens().to_vec()
}

#[test]
fn sample_data_tokenizes_the_same_with_the_compact_tokenizer() {
    let full = Tokenizer::from_file(qwen2_file()).expect("qwen2 tokenizer");
    let texts = sample_texts();
    assert!(texts.len() > 1000, "{} texts", texts.len());
    let mut used = BTreeSet::new();
    for text in &texts {
        used.extend(full.encode(text).expect("encode"));
    }
    for special in SPECIALS {
        used.insert(full.token_id(special).expect("special token"));
    }
    let vocab = CompactVocab::from_file(qwen2_file(), used.iter().copied()).expect("compact");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokenizer.json");
    vocab.write(&path).expect("write");
    let compact = Tokenizer::from_file(&path).expect("load compact tokenizer");

    eprintln!(
        "{} ids used, compact vocabulary {} tokens, full {}",
        used.len(),
        vocab.len(),
        full.vocab_size()
    );
    assert_eq!(compact.vocab_size(), vocab.len());
    assert!(vocab.len() >= 256 + SPECIALS.len() && vocab.len() < 2000);
    for text in &texts {
        assert_eq!(tokens(&compact, text), tokens(&full, text), "{text}");
        let ids = full.encode(text).expect("encode");
        let mapped: Vec<u32> = ids.iter().filter_map(|&id| vocab.new_id(id)).collect();
        assert_eq!(compact.encode(text).expect("encode"), mapped, "{text}");
        let back: Vec<u32> = mapped.iter().filter_map(|&id| vocab.old_id(id)).collect();
        assert_eq!(back, ids);
    }
    for special in SPECIALS {
        let id = compact.token_id(special).expect("kept special token");
        assert!(compact.is_special(id), "{special}");
        assert_eq!(vocab.old_id(id), full.token_id(special).ok());
    }
    assert!(
        compact.token_id("<|vision_start|>").is_err(),
        "unused special token dropped"
    );
}

#[test]
fn other_text_still_round_trips_through_byte_tokens() {
    let full = Tokenizer::from_file(qwen2_file()).expect("qwen2 tokenizer");
    let used = full.encode("How many shapes are there?").expect("encode");
    let vocab = CompactVocab::from_file(qwen2_file(), used).expect("compact");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokenizer.json");
    vocab.write(&path).expect("write");
    let compact = Tokenizer::from_file(&path).expect("load compact tokenizer");

    let text = "Zebras jump quickly; 斑马 🦓 ok?";
    let ids = compact.encode(text).expect("encode");
    assert_eq!(compact.decode(&ids, false).expect("decode"), text);
    assert!(ids.len() > full.encode(text).expect("encode").len());
    assert_eq!(vocab.id_map().len(), vocab.len());
}

#[test]
fn an_unknown_id_is_an_error_naming_it() {
    let err = CompactVocab::from_file(qwen2_file(), [7, 999_999]).expect_err("unknown id");
    assert!(
        matches!(err, CompactVocabError::UnknownId { id: 999_999 }),
        "{err}"
    );
}

#[test]
fn a_non_bpe_tokenizer_is_refused() {
    let tokenizer = serde_json::json!({"model": {"type": "WordPiece", "vocab": {}}});
    let err = CompactVocab::new(&tokenizer, [0]).expect_err("not BPE");
    assert!(
        matches!(err, CompactVocabError::Unsupported { .. }),
        "{err}"
    );
}
