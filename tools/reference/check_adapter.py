#!/usr/bin/env python3
"""Load a LoRA adapter folder written by vlm-lora into peft and compare logits.

    tools/reference/.venv/bin/python tools/reference/check_adapter.py DIR \\
        [--base MODEL_DIR] [--logits FILE] [--merged MODEL_DIR] [--tol 1e-4]

DIR is an adapter folder (adapter_config.json + adapter_model.safetensors). The base model
is --base, else the adapter's base_model_name_or_path (relative paths are taken from DIR); it
must be a fixture folder, whose reference.safetensors supplies input_ids, attention_mask and
position_ids. --logits (default: logits.safetensors next to DIR) holds our `logits` for those
inputs. A v1 base (model_type "qwen") runs as its Qwen2 equivalent, with the v1 adapter
converted (see qwen_v1_lora.py). Prints the max |peft - ours| over unmasked positions, with
the adapter active and after merge_and_unload() (and, for scale, how far the base model's
logits are from ours), and exits 1 if either difference exceeds --tol. If --merged (default:
`merged` next to DIR, when present) is a merged model folder we saved, transformers loads it
too and its logits are compared the same way.
"""

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from peft import LoraConfig, PeftModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from qwen_v1_lora import qwen2_targets, v1_adapter_to_qwen2, v1_weights_to_qwen2  # noqa: E402

torch.set_num_threads(1)


def v1_as_qwen2(base_dir):
    """The Qwen2ForCausalLM with the weights of the v1 checkpoint in base_dir."""
    with open(os.path.join(base_dir, "config.json"), encoding="utf-8") as f:
        v1 = json.load(f)
    heads = v1["num_attention_heads"]
    cfg = Qwen2Config(
        vocab_size=v1["vocab_size"], hidden_size=v1["hidden_size"],
        intermediate_size=v1["intermediate_size"] // 2,
        num_hidden_layers=v1["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=heads, hidden_act="silu", rms_norm_eps=v1["layer_norm_epsilon"],
        rope_theta=float(v1.get("rotary_emb_base", 10000)),
        max_position_embeddings=v1.get("seq_length", 2048),
        tie_word_embeddings=v1.get("tie_word_embeddings", False), use_sliding_window=False)
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg)
    sd = load_file(os.path.join(base_dir, "model.safetensors"))
    model.load_state_dict(v1_weights_to_qwen2(sd, v1["num_hidden_layers"]))
    return model


def v1_adapter_as_qwen2(adapter_dir, out_dir):
    """Writes the Qwen2 equivalent of a v1 adapter folder to out_dir."""
    tensors = v1_adapter_to_qwen2(load_file(os.path.join(adapter_dir, "adapter_model.safetensors")))
    config = LoraConfig.from_pretrained(adapter_dir)
    config.target_modules = qwen2_targets(tensors)
    config.save_pretrained(out_dir)
    save_file(tensors, os.path.join(out_dir, "adapter_model.safetensors"), metadata={"format": "pt"})
    return out_dir


def load_base(model_dir, is_v1):
    if is_v1:
        return v1_as_qwen2(model_dir)
    return AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="eager", dtype=torch.float32)


def masked_max_diff(a, b, mask):
    m = mask.bool()
    return (a[m].float() - b[m].float()).abs().max().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--base")
    ap.add_argument("--logits")
    ap.add_argument("--merged")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    adapter_dir = os.path.abspath(args.dir)
    config = LoraConfig.from_pretrained(adapter_dir)
    base_dir = args.base or os.path.join(adapter_dir, config.base_model_name_or_path)
    logits_path = args.logits or os.path.join(os.path.dirname(adapter_dir), "logits.safetensors")
    merged_dir = args.merged or os.path.join(os.path.dirname(adapter_dir), "merged")
    with open(os.path.join(base_dir, "config.json"), encoding="utf-8") as f:
        is_v1 = json.load(f)["model_type"] == "qwen"
    ref = load_file(os.path.join(base_dir, "reference.safetensors"))
    inputs = {k: ref[k] for k in ["input_ids", "attention_mask", "position_ids"]}
    ours = load_file(logits_path)["logits"]
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(base_dir, is_v1)
        if is_v1:
            adapter_dir = v1_adapter_as_qwen2(adapter_dir, tmp)
        model = PeftModel.from_pretrained(base.eval(), adapter_dir).eval()
        n_adapted = sum(1 for n, _ in model.named_modules() if n.endswith(".lora_A"))
        with torch.no_grad():
            peft_logits = model(**inputs).logits
            with model.disable_adapter():
                base_logits = model(**inputs).logits
            merged_logits = model.merge_and_unload()(**inputs).logits
    mask = inputs["attention_mask"]
    effect = masked_max_diff(base_logits, ours, mask)
    diff = masked_max_diff(peft_logits, ours, mask)
    merged = masked_max_diff(merged_logits, ours, mask)
    targets = config.target_modules
    targets = targets if isinstance(targets, str) else sorted(targets)
    print(f"{args.dir}: peft {config.peft_type} r={config.r} alpha={config.lora_alpha} "
          f"rslora={config.use_rslora} targets={targets} over {base_dir} "
          f"({'v1 as its Qwen2 equivalent, ' if is_v1 else ''}{n_adapted} adapted modules)")
    print(f"  max |base logits - ours|        = {effect:.3e} (the adapter's effect)")
    print(f"  max |peft logits - ours|        = {diff:.3e}")
    print(f"  max |peft merged logits - ours| = {merged:.3e}")
    worst = max(diff, merged)
    if os.path.isdir(merged_dir):
        with torch.no_grad():
            saved_logits = load_base(merged_dir, is_v1).eval()(**inputs).logits
        saved = masked_max_diff(saved_logits, ours, mask)
        via = "as its Qwen2 equivalent" if is_v1 else "from_pretrained"
        print(f"  max |our merged folder in transformers ({via}) - ours| = {saved:.3e}")
        worst = max(worst, saved)
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
