#!/usr/bin/env python3
"""bfloat16 references: transformers in bfloat16 on the committed fixtures.

    tools/reference/.venv5/bin/python tools/reference/bf16_fixture.py

Writes data/fixtures/bf16/reference.safetensors and its README.md. Every model is a
committed fixture folder loaded with from_pretrained(dtype=torch.bfloat16,
attn_implementation="eager") (weights rounded once from the stored float32), on that
fixture's own inputs; outputs are bf16 values stored as float32. CPU, one thread.
"""
import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "data" / "fixtures"
OUT = FIXTURES / "bf16"
DTYPE = torch.bfloat16
LOAD = {"dtype": DTYPE, "attn_implementation": "eager"}


def qwen_logits() -> dict:
    ref = load_file(FIXTURES / "qwen2_tied" / "reference.safetensors")
    model = transformers.Qwen2ForCausalLM.from_pretrained(FIXTURES / "qwen2_tied", **LOAD).eval()
    with torch.no_grad():
        out = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                    position_ids=ref["position_ids"])
    assert out.logits.dtype == DTYPE
    return {"qwen2_tied.logits": out.logits.float()}


def llava_outputs() -> dict:
    ref = load_file(FIXTURES / "llava" / "reference.safetensors")
    model = transformers.LlavaForConditionalGeneration.from_pretrained(FIXTURES / "llava", **LOAD).eval()
    with torch.no_grad():
        out = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                    position_ids=ref["position_ids"], pixel_values=ref["pixel_values"].to(DTYPE))
    features = out.image_hidden_states  # a list per image in transformers 5.x
    features = torch.stack(list(features)) if isinstance(features, (list, tuple)) else features
    features = features.reshape(ref["image_features"].shape)
    return {"llava.logits": out.logits.float(), "llava.image_features": features.float()}


def generation() -> dict:
    ref = load_file(FIXTURES / "generation" / "reference.safetensors")
    settings = json.loads((FIXTURES / "generation" / "generation.json").read_text())
    model = transformers.Qwen2ForCausalLM.from_pretrained(FIXTURES / "qwen2_tied", **LOAD).eval()
    outputs = {}
    for key, eos in [("output_ids", int(ref["eos_token_id"][0])), ("output_ids_no_eos", None)]:
        with torch.no_grad():
            out = model.generate(
                input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                do_sample=False, num_beams=1, max_new_tokens=settings["max_new_tokens"],
                min_new_tokens=0, eos_token_id=eos, pad_token_id=settings["pad_token_id"],
                bos_token_id=None, temperature=None, top_p=None, top_k=None,
                repetition_penalty=None, use_cache=True, output_scores=True,
                return_dict_in_generate=True)
        outputs[f"generation.{key}"] = out.sequences
        margins = [(s.topk(2, dim=-1).values[:, 0] - s.topk(2, dim=-1).values[:, 1]).min().item()
                   for s in out.scores]
        outputs[f"generation.{key}.min_margin"] = torch.tensor([min(margins)], dtype=torch.float32)
    return outputs


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tensors = {**qwen_logits(), **llava_outputs(), **generation()}
    tensors = {k: v.contiguous() for k, v in sorted(tensors.items())}
    OUT.mkdir(exist_ok=True)
    save_file(tensors, OUT / "reference.safetensors")
    lines = [
        "# `bf16/`", "",
        f"Written by `tools/reference/bf16_fixture.py` (transformers {transformers.__version__}, "
        f"torch {torch.__version__}); do not edit by hand. Each model is a committed fixture "
        "folder loaded with `from_pretrained(dtype=torch.bfloat16, attn_implementation=\"eager\")` "
        "(float32 weights rounded once to bfloat16) and run on CPU, one thread, on that "
        "fixture's own inputs (`../qwen2_tied`, `../llava` with its `pixel_values` cast to "
        "bfloat16, `../generation`'s prompt and settings). bf16 outputs are stored as float32.",
        "", "Files:", "", "- `reference.safetensors`",
    ]
    lines += [f"  - `{k}`: {str(v.dtype).removeprefix('torch.')} {list(v.shape)}" for k, v in tensors.items()]
    margins = {k: round(v.item(), 6) for k, v in tensors.items() if k.endswith("min_margin")}
    lines += ["", "`*.min_margin` is the smallest top-1 minus top-2 logit gap of a greedy run "
              f"(bf16): {margins}.", ""]
    (OUT / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
