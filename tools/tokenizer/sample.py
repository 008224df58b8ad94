"""Builds data/tokenizer/parity_sample.txt: mixed English / Chinese / code /
emoji / whitespace edge cases / ChatML, all written for this project or
generated here from a fixed seed (no third-party text), so the file can be
committed under the project's license.

The result is deterministic: the same code always yields the same bytes.
"""

from __future__ import annotations

import random
import unicodedata

ENGLISH = """\
The vlm workspace builds LLaVA-style vision-language models on Burn. A vision
tower turns an image into patch features; a small projector maps them into the
language model's embedding space; and the Qwen LLM reads them as if they were
ordinary tokens. It's simple, isn't it? We'd rather keep it that way: you'll
find no hidden state, they're all plain tensors, and I'm sure we've tested it.

Tokenization matters more than it looks. If the Rust tokenizer and the Python
one disagree on a single id, the model sees text it was never trained on, and
its answers degrade quietly -- no panic, no error, just worse output. That's
why this file exists: every line below was encoded by the reference tiktoken
tokenizer, and the Rust test asserts the exact same ids.

Edge cases we care about: "quotes", 'single quotes', `backticks`, (parens),
[brackets], {braces}, <angles>, e-mail like someone@example.com, a URL like
https://example.com/path/to/page?query=1&lang=en#anchor, a Windows path like
C:\\Users\\Public\\Documents\\report.txt, and an ellipsis... or three... dots.
Numbers: 0, 7, 42, 1999, 2024-05-17, 3.14159, 6.022e23, -273.15, 1,000,000,
0x7fff_ffff, 0b1010, 1e-9, v1.2.3-rc.4, 99.9%, $12.50, €9,99, ¥100, £7.
SHOUTING TEXT'S CONTRACTIONS: IT'S, WE'RE, THEY'VE, I'M, YOU'LL, HE'D, DON'T.
Mixed Case'S 'S 'T 'Re 'vE 'M 'lL 'D and trailing apostrophes' and ''double''.
"""

CHINESE = """\
视觉语言模型由三部分组成：视觉编码器、投影层和大语言模型。图像先被切成小块，
每一块经过编码器得到一个特征向量；投影层把这些向量映射到语言模型的词嵌入空间，
然后与文字的词元拼接在一起，送入 Qwen 模型进行自回归生成。

分词器的一致性非常重要。如果 Rust 版本和 Python 版本对同一段文字给出不同的编号，
模型看到的就是它从未见过的输入，回答的质量会悄悄下降——既不会报错，也不会崩溃。
所以我们用参考实现（tiktoken）逐行生成编号，再在 Rust 测试里逐一比对。

常见的标点符号：逗号，句号。问号？感叹号！冒号：分号；引号“双引号”‘单引号’，
书名号《三体》〈短篇〉，括号（全角）【方括号】〔龟甲〕「直角引号」『双直角』，
省略号……破折号——间隔号·波浪号～顿号、百分号％。
数字混排：第1章、第２章、共3,000字、二〇二四年五月十七日、价格¥128.00元、约50%的人。
繁體中文：這是一段繁體字的測試文字，包含「引號」與標點符號。臺灣、香港、澳門。
中英混排：我们使用 Burn 框架和 tokenizers 库（版本 0.22），在 CPU 和 GPU 上都能运行。
Qwen2.5-VL 的上下文长度是 32K tokens，图像会被缩放到 448×448 像素。
日本語も少し：これはテストです。カタカナとひらがな、そして漢字。
한국어도 조금: 이것은 토크나이저 테스트입니다. 감사합니다!
"""

CODE_RUST = """\
use std::collections::HashMap;

/// Counts how often each token id occurs.
pub fn histogram(ids: &[u32]) -> HashMap<u32, usize> {
    let mut counts = HashMap::new();
    for &id in ids {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repeats() {
        let h = histogram(&[1, 2, 2, 3, 3, 3]);
        assert_eq!(h[&3], 3, "three threes");
        assert!(h.get(&4).is_none());
    }
}

impl<'a, T: Clone + Send + 'static> Iterator for Windows<'a, T> where T: Default {
    type Item = &'a [T];
    fn next(&mut self) -> Option<Self::Item> { self.pos += 1; todo!() }
}
let s = r#"raw "string" with \\n escapes"#; let c = b'\\x7f'; let x = 1_000u64 >> 3;
"""

CODE_PYTHON = """\
import json
from pathlib import Path


class Vocab:
    \"\"\"Maps tokens to ids and back.\"\"\"

    def __init__(self, path: Path) -> None:
        self.tok2id: dict[str, int] = json.loads(path.read_text("utf-8"))
        self.id2tok = {v: k for k, v in self.tok2id.items()}

    def __len__(self) -> int:
        return len(self.tok2id)

    def encode(self, words: list[str]) -> list[int]:
        return [self.tok2id.get(w, self.tok2id["<unk>"]) for w in words]


if __name__ == "__main__":
    v = Vocab(Path("vocab.json"))
    print(f"{len(v):,} tokens; first={v.id2tok[0]!r}")  # 中文注释：打印词表大小
\tprint('tab-indented line')\t# trailing tab\t
lambda x: x**2 if x>=0 else -x  ;  a[1:-1:2] != b[::3]  and  not c <= d
"""

CODE_MISC = """\
{"model": "qwen2", "hidden_size": 896, "layers": [1, 2, 3], "ok": true, "name": "视觉"}
#!/usr/bin/env bash
set -euo pipefail
for f in *.txt; do echo "${f%.txt}" | tr '[:lower:]' '[:upper:]' >> out.log 2>&1; done
[ -n "$HOME" ] && cd ~ || exit 1
int main(int argc, char **argv) { printf("%s\\n", argv[0]); return argc > 1 ? 0 : -1; }
<div class="card" data-id='42'><p>Hello&nbsp;world &amp; friends</p></div>
| col A | col B |
|-------|:-----:|
| 1     | 二    |
$$\\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}$$
SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%li%' ORDER BY id DESC;
"""

CHATML_QWEN2 = """\
<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|vision_end|>What is in this picture? 这张图片里有什么？<|im_end|>
<|im_start|>assistant
A cat sitting on a red chair. 一只猫坐在红色的椅子上。<|im_end|>
<|im_start|>user
Find the cat: <|object_ref_start|>the cat<|object_ref_end|><|box_start|>(120,45),(380,300)<|box_end|><|quad_start|>q<|quad_end|><|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_weather", "arguments": {"city": "北京"}}
</tool_call><|im_end|>
<|fim_prefix|>def add(a, b):<|fim_suffix|>    return c<|fim_middle|>    c = a + b
<|fim_pad|><|repo_name|>vlm-rs/vlm<|file_sep|>src/lib.rs<|video_pad|><|vision_pad|><|endoftext|>
<|im_start|><|im_end|><|im_start|>user<|im_end|>
<|extra_0|><|extra_204|><|extra_205|> <|im_start |> <|im_start|><|im_end| <im_start> <|IM_START|>
"""

EMOJI = """\
Emoji: 😀 😃 😄 😁 😆 🥹 🤖 🚀 🔥 ✨ ❤️ ❤ 👍 👍🏻 👍🏿 🙏🏽 👋🏼
ZWJ sequences: 👨‍👩‍👧‍👦 👩‍💻 🧑‍🔬 🏳️‍🌈 🏴‍☠️ 👁️‍🗨️ 🧔‍♀️
Flags: 🇨🇳 🇺🇸 🇯🇵 🇩🇪 🇬🇧 🏴󠁧󠁢󠁳󠁣󠁴󠁿  Keycaps: 1️⃣ 2️⃣ #️⃣ *️⃣
Text vs emoji presentation: ☺︎ ☺️ ✔︎ ✔️ ©️ ®️ ™️
中文和表情混排🎉你好👋世界🌏！Emoji在句中😀间。
Repeated: 😂😂😂😂😂😂😂😂 🤣🤣🤣 !!!!!! ?!?! ...... ------ ====== ______ ******
"""

SPECIAL_UNICODE = """\
NBSP:[\u00a0] narrow NBSP:[\u202f] ideographic space:[\u3000] em space:[\u2003] thin:[\u2009]
zero-width space:[\u200b] ZWNJ:[\u200c] ZWJ:[\u200d] word joiner:[\u2060] BOM:[\ufeff]
soft hyphen:[\u00ad] LRM:[\u200e] RLM:[\u200f] RLO:[\u202e]reversed[\u202c]
Latin-1: àéîõü ÀÉÎÕÜ ñ ç ß ø å æ œ Æ Œ ÿ ð þ
Greek: Αλφάβητο ελληνικό, λόγος. Cyrillic: Привет, мир! Съешь же ещё этих мягких булок.
Arabic: مرحبا بالعالم ١٢٣٤٥ Hebrew: שלום עולם Hindi: नमस्ते दुनिया ०१२ Thai: สวัสดีชาวโลก
Math: ∀x∈ℝ, ∃y: x²+y²≤1 ⇒ ∑ᵢ aᵢ ≠ ∞; ½ ⅓ ¼ ⅛ ⁰¹²³ ₀₁₂ Ⅰ Ⅱ Ⅻ ① ⑳ ㊀
Box drawing: ┌─┬─┐ │ │ │ └─┴─┘ ░▒▓█ ←↑→↓ ★☆ ♠♣♥♦ ♩♪♫
Fullwidth: ＡＢＣ ａｂｃ １２３ ！？ Halfwidth katakana: ｶﾀｶﾅ
Supplementary CJK: 𠀀 𠀁 𪚥 𩸽 𠮷 Old Italic: 𐌀𐌁𐌂 Math bold: 𝐀𝐁𝐂 𝟎𝟏𝟐
"""

# Text that NFC normalisation changes (decomposed accents, Hangul jamo,
# CJK compatibility ideographs, Angstrom/Ohm signs).
NON_NFC = (
    "Decomposed: cafe\u0301 nai\u0308ve Zu\u0308rich re\u0301sume\u0301 A\u030a n\u0303\n"
    "Hangul jamo: \u1112\u1161\u11ab\u1100\u1173\u11af (한글) \u1100\u1161\u1102\u1161\n"
    "CJK compatibility: \uf900\uf901\uf902 \uf9dc\ufa0c \u2126 \u212b \u0041\u030a\n"
    "Stacked marks: a\u0301\u0302\u0303 e\u0323\u0302 o\u031b\u0301 \u0915\u093c\n"
)


def whitespace_matrix() -> str:
    """Every pairing of a few contexts with runs of different whitespace."""
    spaces = [" ", "  ", "   ", "\t", "\t\t", " \t", "\t ", "\u00a0", "\u3000", "\u2003", "\x0b", "\x0c", "\u0085", "\u2028", "\u2029"]
    breaks = ["\n", "\r\n", "\r", "\n\r", " \n", "\n ", "  \n  ", "\t\n", "\r\n\r\n", "\n\n\n"]
    left = ["word", "词", "42", "!", ")", "'s", "é"]
    right = ["word", "Word", "汉字", "7", "(", "'ll", "-x", "😀"]
    out = []
    for i, ws in enumerate(spaces):
        row = []
        for a in left:
            b = right[(i + len(row)) % len(right)]
            row.append(f"{a}{ws}{b}")
        out.append("|".join(row) + ws + "end" + ws + "\n")
    for i, br in enumerate(breaks):
        a = left[i % len(left)]
        b = right[i % len(right)]
        # Line breaks inside a line of the sample: keep them, but never "\n\n"
        # in the same unit for the last case (it just starts a new unit).
        out.append(f"before {a}{br}{b} after{br}x{br}\n")
    out.append("trailing spaces   \n")
    out.append("   leading spaces\n")
    out.append("\t\tleading tabs and trailing tab\t\n")
    out.append("mixed   \t  \t inner    runs\n")
    out.append(" \n  \n   \n")
    out.append("end of whitespace block\n\n")
    return "".join(out)


def contractions() -> str:
    suffixes = ["s", "t", "re", "ve", "m", "ll", "d", "S", "T", "RE", "VE", "M", "LL", "D", "Re", "vE", "x", "st", "lld"]
    stems = ["it", "don", "they", "I", "we", "she", "O", "rock'n", "", " ", "7", "中", "l'"]
    lines = []
    for stem in stems:
        lines.append(" ".join(f"{stem}'{suf}" for suf in suffixes) + "\n")
    lines.append("'s's's 's 's'''s ’s ‘t curly’ll ʼs\n\n")
    return "".join(lines)


def numbers() -> str:
    rng = random.Random(20240517)
    lines = []
    for n in range(40):
        k = rng.randint(1, 18)
        digits = "".join(rng.choice("0123456789") for _ in range(k))
        lines.append(f"{digits} {digits[: k // 2]}.{digits[k // 2 :]} #{n} x{digits}y ({digits})\n")
    lines.append("Arabic-Indic ٠١٢٣٤٥٦٧٨٩ Devanagari ०१२३४५६७८९ Fullwidth ０１２３４５６７８９ Thai ๐๑๒๓\n")
    lines.append("Roman Ⅰ Ⅱ Ⅲ Ⅳ ⅰⅱⅲ superscript x²³ fractions ¾⅞ circled ①②③ ⑴⑵ Chinese 一二三 壹贰叁 〇\n\n")
    return "".join(lines)


# Pools for the seeded random strings (all from long-assigned Unicode blocks).
_POOLS = {
    "ascii_letters": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "latin1": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÉÑÖÜ¡¿«»°±·×÷",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΣΩ",
    "cyrillic": "абвгдежзийклмнопрстуфхцчшщыэюяАБВГДЖЯ",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴",
    "kana": "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネノ",
    "hangul": "가나다라마바사아자차카타파하한국어글말씀입니다",
    "symbols": "←↑→↓∀∃∈∉∑∏√∞≈≠≤≥⊂⊃∩∪★☆♠♣♥♦©®™§¶†‡•…‰′″€£¥₩",
    "emoji": ["😀", "😂", "🥲", "🤖", "🚀", "🔥", "✨", "❤️", "👍🏽", "👨‍👩‍👧", "🇨🇳", "🎉", "🌏", "🍜", "🐍", "🦀"],
    "cjk_punct": "，。、；：？！“”‘’（）《》【】—…·「」『』〈〉～",
    "marks": ["\u0301", "\u0308", "\u0323", "\u093c", "\u0e31"],
    "space": [" ", " ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", "\r\n", "    "],
}
_WEIGHTS = {
    "ascii_letters": 30, "digits": 6, "punct": 8, "latin1": 3, "greek": 2, "cyrillic": 3,
    "cjk": 25, "kana": 3, "hangul": 2, "symbols": 2, "emoji": 3, "cjk_punct": 5, "marks": 1, "space": 18,
}


def random_strings(n_lines: int, seed: int) -> str:
    rng = random.Random(seed)
    names = list(_WEIGHTS)
    weights = [_WEIGHTS[k] for k in names]
    out = []
    for _ in range(n_lines):
        pieces = []
        length = rng.randint(10, 120)
        while len(pieces) < length:
            pool = _POOLS[rng.choices(names, weights)[0]]
            run = rng.randint(1, 6)
            pieces.extend(rng.choice(pool) for _ in range(run))
        out.append("".join(pieces).replace("\n\n", "\n") + "\n")
        if len(out) % 10 == 0:
            out.append("\n")  # keep units (split at blank lines) small
    return "".join(out)


def build_sample() -> str:
    parts = [
        "# vlm tokenizer parity sample (generated by tools/tokenizer/sample.py; do not edit by hand)\n\n",
        ENGLISH,
        "\n",
        CHINESE,
        "\n",
        CODE_RUST,
        "\n",
        CODE_PYTHON,
        "\n",
        CODE_MISC,
        "\n",
        CHATML_QWEN2,
        "\n",
        EMOJI,
        "\n",
        SPECIAL_UNICODE,
        "\n",
        NON_NFC,
        "\n",
        whitespace_matrix(),
        contractions(),
        numbers(),
    ]
    # Repeat the prose sections in varied layouts (re-wrapped, no newlines,
    # upper-cased) so the sample is long enough to exercise many merges.
    for i, block in enumerate([ENGLISH, CHINESE, CODE_PYTHON, CODE_RUST]):
        parts.append(" ".join(block.split()) + "\n\n")
        parts.append(block.upper() + "\n")
        if i % 2 == 0:
            parts.append(block.replace("\n", "\r\n") + "\n")
    parts.append(random_strings(500, seed=7))
    text = "".join(parts)
    if not text.endswith("\n"):
        text += "\n"
    assert unicodedata.normalize("NFC", NON_NFC) != NON_NFC
    return text


if __name__ == "__main__":
    import sys

    t = build_sample()
    sys.stdout.write(t)
    sys.stderr.write(f"{len(t.encode('utf-8'))} bytes, {t.count(chr(10))} lines\n")
