#!/usr/bin/env python3
"""Check data/tokenizer/*/tokenizer.json against tiktoken on a few MB of text.

Reference: a tiktoken Encoding built from dashscope's qwen.tiktoken with the
Qwen split regex and the flavour's special tokens, all allowed in the text --
what Qwen's own Python tokenizers do. Both flavours NFC-normalise (Qwen's
tokenizers call unicodedata.normalize("NFC", ...) before tiktoken), so the HF
tokenizer is given the raw text (its NFC normalizer does the work) and tiktoken
the NFC-normalised text.

Text (all offline):
  * code + English: every *.py file of this Python's standard library (sorted
    by path, up to --code-mb MB) and pydoc_data/topics.py (the English text
    of the language reference / library docs that pydoc shows);
  * Chinese: Debian's manpages-zh (zh_CN and zh_TW man pages, UTF-8 roff),
    fetched with `apt-get download manpages-zh` into tools/tokenizer/.cache/.

Checks, per flavour:
  1. every vocab entry: HF token string == byte-level form of the tiktoken bytes;
  2. every vocab token's text (valid UTF-8 only) encodes identically;
  3. the corpus, in chunks of whole lines (<= --chunk chars), encodes
     identically; mismatching chunks are localised to the first differing
     token and printed;
  4. decode(encode(x)) == NFC(x) for every chunk (HF) ;
  5. special tokens written in text map to their ids;
  6. the committed parity sample ids (data/tokenizer/parity_sample.<flavour>.json)
     equal both tiktoken's and the HF tokenizer's ids;
  7. fuzz: seeded random lines of any assigned code point mixed with every
     kind of whitespace and contraction fragments, given to both tokenizers
     already NFC-normalised (must match), and raw (HF's NFC normalizer has
     older Unicode tables than Python's unicodedata: lines where the two
     normalisations differ are counted and reported, not failed).
Exit status 1 if anything mismatches.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
import sysconfig
import time
import unicodedata
from pathlib import Path

import qwen_common as qc
from convert import bytes_to_unicode

CACHE = qc.TOOLS_DIR / ".cache"


def stdlib_texts(max_bytes: int) -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    topics = root / "pydoc_data" / "topics.py"
    docs = topics.read_text("utf-8")
    out.append((str(topics), docs))
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts or p == topics:
            continue
        try:
            t = p.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        out.append((str(p), t))
        total += len(t.encode("utf-8"))
        if total >= max_bytes:
            break
    return out


def manpages_zh(max_bytes: int) -> list[tuple[str, str]]:
    root = CACHE / "manpages-zh"
    if not (root / "usr" / "share" / "man").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        debs = sorted(CACHE.glob("manpages-zh_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", "manpages-zh"], cwd=CACHE, check=True)
            debs = sorted(CACHE.glob("manpages-zh_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    out, total = [], 0
    # Interleave zh_CN and zh_TW so a size cap keeps both.
    cn = sorted((root / "usr/share/man/zh_CN").rglob("*.gz"))
    tw = sorted((root / "usr/share/man/zh_TW").rglob("*.gz"))
    files = [f for pair in zip(cn, tw) for f in pair] + cn[len(tw) :] + tw[len(cn) :]
    for p in files:
        try:
            t = gzip.decompress(p.read_bytes()).decode("utf-8")
        except (UnicodeDecodeError, OSError, EOFError):
            continue
        out.append((str(p.relative_to(root)), t))
        total += len(t.encode("utf-8"))
        if total >= max_bytes:
            break
    return out


def chunks_of(text: str, max_chars: int) -> list[tuple[int, str]]:
    """(first line number, chunk) pieces of whole lines, each <= max_chars where possible."""
    out, cur, cur_len, start, line_no = [], [], 0, 1, 1
    for line in text.splitlines(keepends=True):
        if cur and cur_len + len(line) > max_chars:
            out.append((start, "".join(cur)))
            cur, cur_len, start = [], 0, line_no
        cur.append(line)
        cur_len += len(line)
        line_no += 1
    if cur:
        out.append((start, "".join(cur)))
    return out


def describe_mismatch(hf, enc, name, line0, text, ref, got) -> str:
    k = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
    prefix = enc.decode(ref[:k])
    line = line0 + prefix.count("\n")
    lo = max(0, k - 3)

    def show(ids, dec):
        return " ".join(f"{i}:{dec(i)!r}" for i in ids[lo : k + 5])

    return (
        f"  {name}:{line}: first difference at token {k} (ref {len(ref)} / hf {len(got)} tokens)\n"
        f"    text: {text[len(prefix) - 40 if len(prefix) > 40 else 0: len(prefix) + 60]!r}\n"
        f"    tiktoken: {show(ref, lambda i: enc.decode_single_token_bytes(i))}\n"
        f"    hf:       {show(got, lambda i: hf.id_to_token(i))}"
    )


def check_flavour(flavour: qc.Flavour, ranks, corpus, chunk_chars: int, show: int, fuzz_n: int) -> int:
    from tokenizers import Tokenizer

    path = qc.DATA_DIR / flavour.name / "tokenizer.json"
    hf = Tokenizer.from_file(str(path))
    enc = qc.tiktoken_encoding(flavour, ranks)
    failures = 0
    print(f"== {flavour.name}: {path.relative_to(qc.REPO_ROOT)} (NFC normalizer: {flavour.nfc})")

    # 1. vocab identity
    b2u = bytes_to_unicode()
    bad = [r for tok, r in ranks.items() if hf.id_to_token(r) != "".join(b2u[b] for b in tok)]
    for i, content, _ in flavour.added:
        if hf.token_to_id(content) != i:
            bad.append(i)
    print(f"  vocab: {len(ranks)} BPE tokens + {len(flavour.added)} added tokens, id mismatches: {len(bad)}")
    failures += len(bad)

    # 2. every token's own text
    texts = []
    for tok in ranks:
        try:
            texts.append(tok.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    got = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    mism = 0
    for t, g in zip(texts, got):
        ref = qc.reference_encode(enc, flavour, t)
        if ref != g:
            if mism < show:
                print(describe_mismatch(hf, enc, "vocab-token", 1, t, ref, g))
            mism += 1
    print(f"  vocab tokens as text: {len(texts)} encoded, mismatches: {mism}")
    failures += mism

    # 3 + 4. corpus
    items = []
    for name, text in corpus:
        for line0, chunk in chunks_of(text, chunk_chars):
            items.append((name, line0, chunk))
    n_bytes = sum(len(c.encode("utf-8")) for _, _, c in items)
    n_nfc_changed = sum(1 for _, _, c in items if unicodedata.normalize("NFC", c) != c)
    t0 = time.time()
    hf_ids = [e.ids for e in hf.encode_batch([c for _, _, c in items], add_special_tokens=False)]
    t_hf = time.time() - t0
    t0 = time.time()
    ref_ids = [qc.reference_encode(enc, flavour, c) for _, _, c in items]
    t_tt = time.time() - t0
    mism = n_tokens = 0
    for (name, line0, chunk), ref, got in zip(items, ref_ids, hf_ids):
        n_tokens += len(ref)
        if ref != got:
            if mism < show:
                print(describe_mismatch(hf, enc, name, line0, chunk, ref, got))
            mism += 1
    print(
        f"  corpus: {n_bytes / 1e6:.2f} MB in {len(items)} chunks ({n_nfc_changed} changed by NFC), "
        f"{n_tokens} tokens; chunk mismatches: {mism}  [hf {t_hf:.1f}s, tiktoken {t_tt:.1f}s]"
    )
    failures += mism

    decoded = hf.decode_batch(hf_ids, skip_special_tokens=False)
    rt_bad = 0
    for (name, line0, chunk), d in zip(items, decoded):
        want = unicodedata.normalize("NFC", chunk) if flavour.nfc else chunk
        if d != want:
            if rt_bad < show:
                print(f"  round-trip failure in {name}:{line0}")
            rt_bad += 1
    print(f"  decode(encode(x)) == {'NFC(x)' if flavour.nfc else 'x'}: {len(items) - rt_bad}/{len(items)} chunks")
    failures += rt_bad

    # 5. special tokens in text
    added_ids = {c: i for i, c, _ in flavour.added}
    conv = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好，世界！<|im_end|>\n<|im_start|>assistant\n"
    ids = hf.encode(conv, add_special_tokens=False).ids
    ok = (
        ids == qc.reference_encode(enc, flavour, conv)
        and ids[0] == added_ids["<|im_start|>"]
        and ids.count(added_ids["<|im_start|>"]) == 3
        and ids.count(added_ids["<|im_end|>"]) == 2
        and hf.decode(ids, skip_special_tokens=False) == conv
    )
    sp_bad = 0 if ok else 1
    for i, content, _ in flavour.added:
        s = f"x {content}y"
        g = hf.encode(s, add_special_tokens=False).ids
        if i not in g or g != qc.reference_encode(enc, flavour, s):
            sp_bad += 1
    foreign = [c for f in qc.FLAVOURS.values() for _, c, _ in f.added if c not in added_ids]
    for c in foreign[:20]:  # other flavours' specials are plain text here
        g = hf.encode(c, add_special_tokens=False).ids
        if len(g) < 2 or g != qc.reference_encode(enc, flavour, c):
            sp_bad += 1
    print(f"  special tokens: ChatML ids {ids[:3]}..., all {len(flavour.added)} added tokens mapped; failures: {sp_bad}")
    failures += sp_bad

    # 6. committed parity sample
    sample = (qc.DATA_DIR / "parity_sample.txt").read_bytes().decode("utf-8")  # keep \r\n
    units = qc.split_units(sample)
    committed = json.loads((qc.DATA_DIR / f"parity_sample.{flavour.name}.json").read_text("utf-8"))["ids"]
    hf_units = [e.ids for e in hf.encode_batch(units, add_special_tokens=False)]
    ref_units = [qc.reference_encode(enc, flavour, u) for u in units]
    ps_bad = int(len(committed) != len(units))
    for n, (u, c, r, g) in enumerate(zip(units, committed, ref_units, hf_units)):
        if not (c == r == g):
            if ps_bad < show:
                print(describe_mismatch(hf, enc, f"parity_sample unit {n}", 1, u, r, g) if r != g else f"  parity_sample unit {n}: committed ids are stale (rerun convert.py)")
            ps_bad += 1
    print(f"  parity sample: {len(sample.encode('utf-8'))} bytes, {len(units)} units, {sum(map(len, ref_units))} tokens; mismatches: {ps_bad}")
    failures += ps_bad

    # 7. fuzz
    lines = fuzz_lines(fuzz_n)
    nfc_lines = [unicodedata.normalize("NFC", l) for l in lines]
    got = [e.ids for e in hf.encode_batch(nfc_lines, add_special_tokens=False)]
    fz_bad = 0
    for l, g in zip(nfc_lines, got):
        r = qc.reference_encode(enc, flavour, l)
        if r != g:
            if fz_bad < show:
                print(describe_mismatch(hf, enc, "fuzz", 1, l, r, g))
            fz_bad += 1
    drift = 0
    if flavour.nfc:
        hf_nfc = [hf.normalizer.normalize_str(l) for l in lines]
        drift = sum(1 for a, b in zip(hf_nfc, nfc_lines) if a != b)
    n_fz = sum(len(l.encode("utf-8")) for l in lines)
    print(
        f"  fuzz: {len(lines)} random lines ({n_fz / 1e6:.2f} MB, {sum(l != n for l, n in zip(lines, nfc_lines))} not NFC); "
        f"mismatches on NFC text: {fz_bad}; lines where HF's NFC != Python's NFC (reported only): {drift}"
    )
    failures += fz_bad
    return failures


_FUZZ_WS = [" ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2028", "\u2029",
            "\u202f", "\u205f", "\u3000", "\u180e", "\u200b", "\ufeff", "\x1c", "\x1d", "\x1e", "\x1f"]
_FUZZ_ASCII = ["'s", "'T", "'re", "'VE", "'m", "'ll", "'D", "'", "a", "Z", "0", "42", ".", "!?", "_", "-", "#", "中文"]


def fuzz_lines(n: int, seed: int = 20240517) -> list[str]:
    rng = random.Random(seed)
    cps = [c for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs", "Co")]
    out = []
    for _ in range(n):
        s = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.3:
                s.append(rng.choice(_FUZZ_WS))
            elif r < 0.5:
                s.append(rng.choice(_FUZZ_ASCII))
            else:
                s.append(chr(rng.choice(cps)))
        out.append("".join(s))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code-mb", type=float, default=5.0, help="MB of stdlib source (default 5)")
    ap.add_argument("--zh-mb", type=float, default=12.5, help="MB of Chinese man pages (default 12.5: all of zh_CN + zh_TW)")
    ap.add_argument("--chunk", type=int, default=2000, help="max chars per compared chunk")
    ap.add_argument("--fuzz", type=int, default=50000, help="random fuzz lines (default 50000)")
    ap.add_argument("--show", type=int, default=10, help="mismatches to print per check")
    ap.add_argument("--flavour", choices=sorted(qc.FLAVOURS), action="append")
    args = ap.parse_args()

    src = qc.dashscope_tiktoken_path()
    print(f"reference: {src.name} from dashscope {qc.dashscope_version()}, sha256 {qc.sha256_file(src)}")
    import tiktoken
    import tokenizers

    print(f"tiktoken {tiktoken.__version__}, tokenizers {tokenizers.__version__}, Python {sys.version.split()[0]}")
    ranks = qc.load_ranks(src)
    corpus = stdlib_texts(int(args.code_mb * 1e6)) + manpages_zh(int(args.zh_mb * 1e6))
    zh = sum(len(t.encode()) for n, t in corpus if "zh_" in n)
    total = sum(len(t.encode()) for _, t in corpus)
    print(f"corpus: {len(corpus)} files, {total / 1e6:.2f} MB ({(total - zh) / 1e6:.2f} MB Python stdlib code + docs, {zh / 1e6:.2f} MB Chinese man pages)")

    failures = 0
    for name in args.flavour or list(qc.FLAVOURS):
        failures += check_flavour(qc.FLAVOURS[name], ranks, corpus, args.chunk, args.show, args.fuzz)
    print("OK: 0 mismatches" if failures == 0 else f"FAILED: {failures} mismatches")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
