#!/usr/bin/env python3
"""Write a random-weight LLaVA folder at a published size, for memory and load-time checks.

Not run in CI and never committed: a Qwen2.5-7B-size folder is ~16 GB. Usage:

    tools/reference/.venv5/bin/python tools/reference/large_llava.py --template DIR --out DIR \\
        [--text-config data/configs/Qwen--Qwen2.5-7B-Instruct/config.json] \\
        [--vision-config data/configs/google--siglip-so400m-patch14-384/config.json]

`--template` is a LLaVA folder that vlm's `export` wrote (e.g. the one
`VLM_EXPORT_DIR=DIR cargo test --test export_llava write_exported_folder -- --ignored` writes):
its tokenizer files, chat template and processor files are copied, and its config.json is
kept with `text_config` and `vision_config` replaced by the given published configs (the
template's tower must be a SigLIP one; its feature layer and strategy are kept). Weights:
every tensor `export` names for those configs, stored in bfloat16 (the published dtype),
values 0.02 * N(0, 1) (norm weights 1), written shard by shard (<= 5 GB each, with
`model.safetensors.index.json`) so the script never holds more than one tensor. Needs only
numpy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
from pathlib import Path

import numpy as np

SHARD_BYTES = 5 * 1024**3


def qwen_tensors(c: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a Qwen2 LLM as vlm's `export` writes them (`language_model.`)."""
    h, inter, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    heads, kv = c["num_attention_heads"], c["num_key_value_heads"]
    dim = c.get("head_dim") or h // heads
    p = "language_model.model."
    out = [(p + "embed_tokens.weight", (vocab, h))]
    for i in range(c["num_hidden_layers"]):
        layer = f"{p}layers.{i}."
        out += [
            (layer + "input_layernorm.weight", (h,)),
            (layer + "self_attn.q_proj.weight", (heads * dim, h)),
            (layer + "self_attn.q_proj.bias", (heads * dim,)),
            (layer + "self_attn.k_proj.weight", (kv * dim, h)),
            (layer + "self_attn.k_proj.bias", (kv * dim,)),
            (layer + "self_attn.v_proj.weight", (kv * dim, h)),
            (layer + "self_attn.v_proj.bias", (kv * dim,)),
            (layer + "self_attn.o_proj.weight", (h, heads * dim)),
            (layer + "post_attention_layernorm.weight", (h,)),
            (layer + "mlp.gate_proj.weight", (inter, h)),
            (layer + "mlp.up_proj.weight", (inter, h)),
            (layer + "mlp.down_proj.weight", (h, inter)),
        ]
    out.append((p + "norm.weight", (h,)))
    if not c.get("tie_word_embeddings", False):
        out.append(("language_model.lm_head.weight", (vocab, h)))
    return out


def siglip_tensors(c: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a SigLIP tower without its pooling head (`vision_tower.`)."""
    d, inter, patch = c["hidden_size"], c["intermediate_size"], c["patch_size"]
    positions = (c["image_size"] // patch) ** 2
    p = "vision_tower."
    out = [
        (p + "embeddings.patch_embedding.weight", (d, c.get("num_channels", 3), patch, patch)),
        (p + "embeddings.patch_embedding.bias", (d,)),
        (p + "embeddings.position_embedding.weight", (positions, d)),
    ]
    for i in range(c["num_hidden_layers"]):
        layer = f"{p}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += [(f"{layer}self_attn.{proj}.weight", (d, d)), (f"{layer}self_attn.{proj}.bias", (d,))]
        out += [
            (layer + "layer_norm1.weight", (d,)),
            (layer + "layer_norm1.bias", (d,)),
            (layer + "layer_norm2.weight", (d,)),
            (layer + "layer_norm2.bias", (d,)),
            (layer + "mlp.fc1.weight", (inter, d)),
            (layer + "mlp.fc1.bias", (inter,)),
            (layer + "mlp.fc2.weight", (d, inter)),
            (layer + "mlp.fc2.bias", (d,)),
        ]
    return out + [(p + "post_layernorm.weight", (d,)), (p + "post_layernorm.bias", (d,))]


def projector_tensors(vision: int, text: int) -> list[tuple[str, tuple[int, ...]]]:
    p = "multi_modal_projector."
    return [
        (p + "linear_1.weight", (text, vision)),
        (p + "linear_1.bias", (text,)),
        (p + "linear_2.weight", (text, text)),
        (p + "linear_2.bias", (text,)),
    ]


def bf16_bytes(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> bytes:
    """Random bfloat16 values (truncated from float32), little-endian."""
    if ("norm" in name) and name.endswith("weight"):
        values = np.ones(shape, dtype=np.float32)
    else:
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= 0.02
    return (values.view(np.uint32) >> 16).astype("<u2").tobytes()


def write_shard(path: Path, tensors: list[tuple[str, tuple[int, ...]]], rng) -> None:
    header, offset = {}, 0
    for name, shape in tensors:
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape in tensors:
            f.write(bf16_bytes(name, shape, rng))


def shards(tensors: list[tuple[str, tuple[int, ...]]]) -> list[list[tuple[str, tuple[int, ...]]]]:
    groups, current, size = [], [], 0
    for name, shape in tensors:
        bytes_ = 2 * int(np.prod(shape))
        if current and size + bytes_ > SHARD_BYTES:
            groups.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += bytes_
    groups.append(current)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--text-config", type=Path, default=Path("data/configs/Qwen--Qwen2.5-7B-Instruct/config.json"))
    parser.add_argument(
        "--vision-config", type=Path, default=Path("data/configs/google--siglip-so400m-patch14-384/config.json")
    )
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first")
    args.out.mkdir(parents=True)

    config = json.loads((args.template / "config.json").read_text())
    text = json.loads(args.text_config.read_text())
    vision = json.loads(args.vision_config.read_text())
    vision = vision.get("vision_config", vision)
    vision = {**config["vision_config"], **vision, "dtype": "bfloat16"}
    text = {**text, "dtype": "bfloat16"}
    text.pop("torch_dtype", None)
    text.pop("architectures", None)
    config.update(
        text_config=text,
        vision_config=vision,
        dtype="bfloat16",
        tie_word_embeddings=text.get("tie_word_embeddings", False),
        image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
    )
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    for file in args.template.iterdir():
        if file.name == "config.json" or file.suffix == ".safetensors" or file.name.endswith(".index.json"):
            continue
        shutil.copy(file, args.out / file.name)
    pre = args.out / "preprocessor_config.json"
    if pre.exists():
        processor = json.loads(pre.read_text())
        processor["size"] = {"height": vision["image_size"], "width": vision["image_size"]}
        pre.write_text(json.dumps(processor, indent=2))

    tensors = (
        qwen_tensors(text)
        + siglip_tensors(vision)
        + projector_tensors(vision["hidden_size"], text["hidden_size"])
    )
    groups = shards(tensors)
    rng = np.random.default_rng(0)
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        write_shard(args.out / name, group, rng)
        for tensor, shape in group:
            weight_map[tensor] = name
            total += 2 * int(np.prod(shape))
        print(f"wrote {name}", flush=True)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (args.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    params = total // 2
    print(f"{args.out}: {params / 1e9:.2f} B parameters, {total / 1e9:.2f} GB in bfloat16")


if __name__ == "__main__":
    main()
