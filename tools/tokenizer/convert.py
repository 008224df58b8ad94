#!/usr/bin/env python3
"""Convert dashscope's qwen.tiktoken into Hugging Face tokenizer.json files.

Writes, under data/tokenizer/:
  qwen2/tokenizer.json, qwen2/tokenizer_config.json      (Qwen2 / Qwen2.5 layout)
  qwen_v1/tokenizer.json, qwen_v1/tokenizer_config.json  (Qwen-7B v1 layout)
  parity_sample.txt, parity_sample.<flavour>.json        (reference ids for the Rust test)

The BPE merges are rebuilt from the ranks the standard way: for every token of
two or more bytes, run BPE on its bytes using only the ranks lower than its own;
the two parts left are its merge, and merges are listed in the token's rank order.

Usage: python convert.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import qwen_common as qc
import sample as sample_mod


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's byte-pair merge of `token`, allowing only ranks < max_rank."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_i, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best_i, best_rank = i, r
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def build_vocab_and_merges(ranks: dict[bytes, int]):
    b2u = bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    vocab = {to_str(tok): rank for tok, rank in by_rank}
    if len(vocab) != len(ranks):
        raise SystemExit("byte-level mapping collided")
    merges = []
    unreachable = []
    for tok, rank in by_rank:
        if len(tok) == 1:
            continue
        parts = bpe_parts(ranks, tok, rank)
        if len(parts) != 2:
            unreachable.append((rank, tok, len(parts)))
            continue
        merges.append(f"{to_str(parts[0])} {to_str(parts[1])}")
    return vocab, merges, unreachable


def added_token_entries(flavour: qc.Flavour) -> list[dict]:
    return [
        {
            "id": i,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for i, content, special in flavour.added
    ]


def tokenizer_json(flavour: qc.Flavour, vocab: dict, merges: list[str]) -> dict:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_token_entries(flavour),
        "normalizer": {"type": "NFC"} if flavour.nfc else None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": qc.PAT_STR},
                    "behavior": "Isolated",
                    "invert": False,
                },
                dict(byte_level),
            ],
        },
        "post_processor": dict(byte_level),
        "decoder": dict(byte_level),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def tokenizer_config(flavour: qc.Flavour) -> dict:
    specials = [c for _, c, s in flavour.added if s and c != "<|endoftext|>"]
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(e["id"]): {k: e[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for e in added_token_entries(flavour)
        },
        "additional_special_tokens": specials,
        "bos_token": None,
        "chat_template": flavour.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": flavour.eos,
        "errors": "replace",
        "model_max_length": flavour.model_max_length,
        "pad_token": flavour.pad,
        "split_special_tokens": False,
        "tokenizer_class": flavour.tokenizer_class,
        "unk_token": None,
    }
    return cfg


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def write_ids_json(path: Path, header: dict, units_ids: list[list[int]]) -> None:
    """Header fields, then "ids": one JSON array per unit, one unit per line."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("{\n")
        for k, v in header.items():
            f.write(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n")
        f.write('  "ids": [\n')
        for n, ids in enumerate(units_ids):
            sep = "," if n + 1 < len(units_ids) else ""
            f.write("    " + json.dumps(ids, separators=(",", ":")) + sep + "\n")
        f.write("  ]\n}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=qc.DATA_DIR)
    args = ap.parse_args()

    src = qc.dashscope_tiktoken_path()
    print(f"source: {src} (dashscope {qc.dashscope_version()}, sha256 {qc.sha256_file(src)})")
    ranks = qc.load_ranks(src)
    vocab, merges, unreachable = build_vocab_and_merges(ranks)
    print(f"vocab {len(vocab)}, merges {len(merges)}, multi-byte tokens without a 2-part split: {len(unreachable)}")
    for rank, tok, n in unreachable[:10]:
        print(f"  rank {rank} {tok!r}: BPE below its rank leaves {n} parts")

    from tokenizers import Tokenizer

    for flavour in qc.FLAVOURS.values():
        d = args.out / flavour.name
        tj = tokenizer_json(flavour, vocab, merges)
        write_json(d / "tokenizer.json", tj)
        write_json(d / "tokenizer_config.json", tokenizer_config(flavour))
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))  # must load
        print(f"wrote {d}/tokenizer.json ({tok.get_vocab_size(with_added_tokens=True)} ids incl. added tokens)")

    # Parity sample for crates/vlm-data/tests/tokenizer_parity.rs.
    text = sample_mod.build_sample()
    sample_path = args.out / "parity_sample.txt"
    with open(sample_path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    units = qc.split_units(text)
    for flavour in qc.FLAVOURS.values():
        enc = qc.tiktoken_encoding(flavour, ranks)
        ids = [qc.reference_encode(enc, flavour, u) for u in units]
        header = {
            "format": "vlm-tokenizer-parity/1",
            "flavour": flavour.name,
            "tokenizer": f"{flavour.name}/tokenizer.json",
            "sample": "parity_sample.txt",
            "units": 'the sample split after every "\\n\\n" (Rust: str::split_inclusive("\\n\\n")); each unit encoded on its own',
            "reference": "tiktoken with qwen.tiktoken ranks, the Qwen split regex and every special token allowed"
            + (", on NFC-normalised text" if flavour.nfc else ""),
            "nfc": flavour.nfc,
            "n_units": len(units),
            "n_tokens": sum(map(len, ids)),
        }
        write_ids_json(args.out / f"parity_sample.{flavour.name}.json", header, ids)
        print(f"wrote parity_sample.{flavour.name}.json: {len(units)} units, {sum(map(len, ids))} tokens")
    print(f"wrote {sample_path}: {len(text.encode('utf-8'))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
