//! The committed Qwen `tokenizer.json` files (data/tokenizer/, converted from
//! dashscope's `qwen.tiktoken` by tools/tokenizer/convert.py) must give exactly
//! the ids of the reference tiktoken tokenizer on the committed parity sample.
//!
//! data/tokenizer/parity_sample.<flavour>.json holds those reference ids: the
//! sample is split after every "\n\n" (`str::split_inclusive("\n\n")`) and each
//! unit was encoded on its own by tiktoken (NFC-normalised first, every special
//! token allowed, as Qwen's own Python tokenizers do). Regenerate everything with
//! tools/tokenizer/regenerate.sh.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::{NormalizedString, Normalizer, Tokenizer};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tokenizer")
}

#[derive(Deserialize)]
struct Reference {
    flavour: String,
    tokenizer: String,
    sample: String,
    nfc: bool,
    n_units: usize,
    n_tokens: usize,
    ids: Vec<Vec<u32>>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (regenerate with tools/tokenizer/regenerate.sh)",
            path.display()
        )
    })
}

fn load(flavour: &str) -> (Tokenizer, Reference, String) {
    let dir = data_dir();
    let reference: Reference =
        serde_json::from_str(&read(&dir.join(format!("parity_sample.{flavour}.json"))))
            .expect("parse parity ids");
    assert_eq!(reference.flavour, flavour);
    let tok_path = dir.join(&reference.tokenizer);
    let tokenizer = Tokenizer::from_file(&tok_path)
        .unwrap_or_else(|e| panic!("load {}: {e}", tok_path.display()));
    let sample = read(&dir.join(&reference.sample));
    (tokenizer, reference, sample)
}

/// What the tokenizer's normalizer makes of `text` (the decode round trip can
/// only give back normalised text).
fn normalized(tokenizer: &Tokenizer, text: &str) -> String {
    match tokenizer.get_normalizer() {
        Some(n) => {
            let mut s = NormalizedString::from(text);
            n.normalize(&mut s).expect("normalize");
            s.get().to_owned()
        }
        None => text.to_owned(),
    }
}

fn show_ids(tokenizer: &Tokenizer, ids: &[u32], from: usize, to: usize) -> String {
    let mut out = String::new();
    for (i, id) in ids.iter().enumerate().take(to.min(ids.len())).skip(from) {
        let tok = tokenizer.id_to_token(*id).unwrap_or_else(|| "<?>".into());
        let _ = write!(out, "[{i}] {id} {tok:?}  ");
    }
    out
}

fn describe_mismatch(
    tokenizer: &Tokenizer,
    unit_index: usize,
    unit_line: usize,
    unit: &str,
    want: &[u32],
    got: &[u32],
) -> String {
    let k = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let prefix = tokenizer.decode(&want[..k], false).unwrap_or_default();
    let line_in_unit = prefix.matches('\n').count();
    let line_no = unit_line + line_in_unit;
    let line = unit.split_inclusive('\n').nth(line_in_unit).unwrap_or("");
    let lo = k.saturating_sub(4);
    let hi = k + 8;
    let full = |ids: &[u32]| -> String {
        if ids.len() <= 200 {
            format!("{ids:?}")
        } else {
            format!("{:?} ... ({} ids)", &ids[..200], ids.len())
        }
    };
    format!(
        "unit {unit_index} (sample line {unit_line}): first difference at token {k}, \
         sample line {line_no}: {line:?}\n  \
         tiktoken: {}\n  \
         rust:     {}\n  \
         tiktoken ids ({}): {}\n  \
         rust ids ({}):     {}",
        show_ids(tokenizer, want, lo, hi),
        show_ids(tokenizer, got, lo, hi),
        want.len(),
        full(want),
        got.len(),
        full(got),
    )
}

fn check_flavour(flavour: &str, vocab_with_added: usize) {
    let (tokenizer, reference, sample) = load(flavour);
    assert_eq!(
        tokenizer.get_vocab_size(true),
        vocab_with_added,
        "{flavour}: vocab size"
    );
    assert_eq!(
        tokenizer.get_normalizer().is_some(),
        reference.nfc,
        "{flavour}: NFC normalizer presence"
    );

    let units: Vec<&str> = sample.split_inclusive("\n\n").collect();
    assert_eq!(
        units.len(),
        reference.ids.len(),
        "{flavour}: {} has {} units but the reference has {} (stale files? run tools/tokenizer/regenerate.sh)",
        reference.sample,
        units.len(),
        reference.ids.len()
    );
    assert_eq!(reference.n_units, units.len());
    assert_eq!(
        reference.n_tokens,
        reference.ids.iter().map(Vec::len).sum::<usize>()
    );

    let mut mismatches = Vec::new();
    let mut round_trip = Vec::new();
    let mut line = 1;
    for (i, (unit, want)) in units.iter().zip(&reference.ids).enumerate() {
        let enc = tokenizer.encode(*unit, false).expect("encode");
        let got = enc.get_ids();
        if got != want.as_slice() {
            mismatches.push(describe_mismatch(&tokenizer, i, line, unit, want, got));
        }
        let decoded = tokenizer.decode(got, false).expect("decode");
        if decoded != normalized(&tokenizer, unit) {
            round_trip.push(format!(
                "unit {i} (sample line {line}): decoded {decoded:?}"
            ));
        }
        line += unit.matches('\n').count();
    }
    assert!(
        mismatches.is_empty(),
        "{flavour}: {} of {} units differ from the tiktoken ids; first:\n{}",
        mismatches.len(),
        units.len(),
        mismatches[0]
    );
    assert!(
        round_trip.is_empty(),
        "{flavour}: decode(encode(x)) != x for {} units; first: {}",
        round_trip.len(),
        round_trip[0]
    );
}

/// ChatML markers written in text map to their single ids (add_special_tokens
/// = false: nothing is added, but added tokens in the text are recognised).
fn check_chatml(flavour: &str) {
    let (tokenizer, _, _) = load(flavour);
    let text = "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n";
    let ids = tokenizer
        .encode(text, false)
        .expect("encode")
        .get_ids()
        .to_vec();
    assert_eq!(ids.first(), Some(&151644), "{flavour}: {ids:?}");
    assert_eq!(
        ids.iter().filter(|&&i| i == 151644).count(),
        2,
        "{flavour}: {ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|&&i| i == 151645).count(),
        1,
        "{flavour}: {ids:?}"
    );
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    assert_eq!(tokenizer.token_to_id("<|endoftext|>"), Some(151643));
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(151644));
    assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(151645));
}

#[test]
fn qwen2_tokenizer_matches_tiktoken_ids() {
    check_flavour("qwen2", 151_665);
}

#[test]
fn qwen_v1_tokenizer_matches_tiktoken_ids() {
    check_flavour("qwen_v1", 151_851);
}

#[test]
fn chatml_special_tokens_map_to_ids() {
    check_chatml("qwen2");
    check_chatml("qwen_v1");
    let (qwen2, _, _) = load("qwen2");
    for (id, tok) in [
        (151652, "<|vision_start|>"),
        (151653, "<|vision_end|>"),
        (151655, "<|image_pad|>"),
        (151657, "<tool_call>"),
        (151664, "<|file_sep|>"),
    ] {
        assert_eq!(qwen2.token_to_id(tok), Some(id), "qwen2 {tok}");
        let ids = qwen2
            .encode(format!("a{tok}b"), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert!(ids.contains(&id), "qwen2 {tok} in text: {ids:?}");
    }
    let (v1, _, _) = load("qwen_v1");
    assert_eq!(v1.token_to_id("<|extra_0|>"), Some(151646));
    assert_eq!(v1.token_to_id("<|extra_204|>"), Some(151850));
    assert_eq!(v1.token_to_id("<|vision_start|>"), None);
}
