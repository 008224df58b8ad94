"""Shared definitions for convert.py and check.py.

Everything that decides how a Qwen tokenizer behaves lives here, so that the
Hugging Face files written by convert.py and the tiktoken reference used by
check.py (and for the parity sample ids) cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import unicodedata
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOLS_DIR.parent.parent
DATA_DIR = REPO_ROOT / "data" / "tokenizer"

# The pre-tokenisation regex of Qwen-7B v1 (tokenization_qwen.py PAT_STR), kept
# verbatim by Qwen2, Qwen2.5 and Qwen3 (their tokenizer.json Split pattern).
PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

N_BPE = 151643  # ranks 0..151642 in qwen.tiktoken

# (id, content, special) -- Qwen2 / Qwen2.5 added tokens, as in Qwen2.5's
# tokenizer_config.json "added_tokens_decoder". 151657.. are "special": false
# there (they are still matched atomically in text).
QWEN2_ADDED: list[tuple[int, str, bool]] = [
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
]

# Qwen-7B v1 (tokenization_qwen.py SPECIAL_TOKENS): endoftext, im_start,
# im_end, then <|extra_0|>..<|extra_204|>, numbered from 151643.
QWEN_V1_ADDED: list[tuple[int, str, bool]] = [
    (151643 + i, tok, True)
    for i, tok in enumerate(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        + [f"<|extra_{i}|>" for i in range(205)]
    )
]

# Qwen2.5-Instruct's chat template (ChatML, with the tools branch).
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    "{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

# Qwen-7B-Chat's prompt format (qwen_generation_utils.make_context, chatml):
# default system prompt "You are a helpful assistant.".
QWEN_V1_CHAT_TEMPLATE = (
    "{%- for message in messages %}\n"
    "    {%- if loop.first and message['role'] != 'system' %}\n"
    "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)


@dataclass(frozen=True)
class Flavour:
    name: str  # directory under data/tokenizer/
    added: list  # [(id, content, special)]
    nfc: bool  # NFC-normalise input text before BPE
    chat_template: str
    eos: str
    pad: str
    model_max_length: int
    tokenizer_class: str
    description: str


FLAVOURS = {
    "qwen2": Flavour(
        name="qwen2",
        added=QWEN2_ADDED,
        nfc=True,
        chat_template=QWEN25_CHAT_TEMPLATE,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        model_max_length=131072,
        tokenizer_class="Qwen2Tokenizer",
        description="Qwen2 / Qwen2.5 (-Instruct) layout",
    ),
    # Qwen-7B v1's QWenTokenizer.tokenize() calls unicodedata.normalize("NFC", text)
    # before tiktoken, so the faithful HF equivalent has an NFC normalizer too.
    "qwen_v1": Flavour(
        name="qwen_v1",
        added=QWEN_V1_ADDED,
        nfc=True,
        chat_template=QWEN_V1_CHAT_TEMPLATE,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        model_max_length=8192,
        tokenizer_class="PreTrainedTokenizerFast",
        description="Qwen-7B / Qwen-VL v1 layout (tiktoken QWenTokenizer ids)",
    ),
}


def dashscope_tiktoken_path() -> Path:
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("dashscope is not installed: pip install -r tools/tokenizer/requirements.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise SystemExit(f"{path} missing from the dashscope package")
    return path


def dashscope_version() -> str:
    return importlib.metadata.version("dashscope")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if not line:
            continue
        tok, rank = line.split()
        ranks[base64.b64decode(tok)] = int(rank)
    if sorted(ranks.values()) != list(range(N_BPE)):
        raise SystemExit(f"{path}: expected ranks 0..{N_BPE - 1} without gaps")
    return ranks


def tiktoken_encoding(flavour: Flavour, ranks: dict[bytes, int]):
    import tiktoken

    return tiktoken.Encoding(
        f"qwen-{flavour.name}",
        pat_str=PAT_STR,
        mergeable_ranks=ranks,
        special_tokens={content: i for i, content, _ in flavour.added},
    )


def reference_encode(enc, flavour: Flavour, text: str) -> list[int]:
    """What the original (tiktoken-based) Qwen tokenizer produces.

    Qwen's Python tokenizers NFC-normalise and then run tiktoken with every
    special token allowed in the text.
    """
    if flavour.nfc:
        text = unicodedata.normalize("NFC", text)
    return enc.encode(text, allowed_special="all", disallowed_special=())


def split_units(text: str) -> list[str]:
    """Split after every "\\n\\n", exactly like Rust's str::split_inclusive("\\n\\n")."""
    units = []
    start = 0
    while True:
        j = text.find("\n\n", start)
        if j < 0:
            break
        units.append(text[start : j + 2])
        start = j + 2
    if start < len(text):
        units.append(text[start:])
    return units
