"""Qwen v1 (QWenLMHeadModel) layouts as their Qwen2 equivalents, for peft.

trust_remote_code models cannot run here, so v1 checkpoints and v1 LoRA adapters are
checked through the Qwen2 model with the same weights (data/fixtures/qwen_v1 was made that
way):

* v1 `attn.c_attn` (fused, output rows [q; k; v]) = Qwen2 q_proj, k_proj, v_proj; a LoRA on
  c_attn (ONE A [r, h], B [3h, r]) equals LoRAs on q/k/v that share that A and take row
  slices B[0:h], B[h:2h], B[2h:3h] of B, because (B A)[rows] = B[rows] A;
* v1 `attn.c_proj` = o_proj, `mlp.w1` = up_proj, `mlp.w2` = gate_proj (the SiLU branch),
  `mlp.c_proj` = down_proj.

Used by make_fixtures.py (the lora_v1 fixture) and check_adapter.py.
"""

import re

import torch

# v1 module (under transformer.h.N.) -> Qwen2 module (under model.layers.N.)
V1_TO_QWEN2 = {
    "attn.c_proj": "self_attn.o_proj",
    "mlp.w1": "mlp.up_proj",
    "mlp.w2": "mlp.gate_proj",
    "mlp.c_proj": "mlp.down_proj",
}
QKV = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]

_KEY = re.compile(r"^base_model\.model\.transformer\.h\.(\d+)\.(.+)\.(lora_[AB])\.weight$")


def v1_adapter_to_qwen2(tensors):
    """PEFT adapter tensors in v1 names -> the equivalent Qwen2 adapter tensors."""
    out = {}
    for key, t in tensors.items():
        m = _KEY.match(key)
        if m is None:
            raise ValueError(f"not a v1 LoRA key: {key}")
        layer, module, part = m.groups()
        prefix = f"base_model.model.model.layers.{layer}."
        if module == "attn.c_attn":
            rows = t.shape[0] // 3
            for i, name in enumerate(QKV):
                part_t = t if part == "lora_A" else t[i * rows:(i + 1) * rows]
                out[f"{prefix}{name}.{part}.weight"] = part_t.contiguous().clone()
        elif module in V1_TO_QWEN2:
            out[f"{prefix}{V1_TO_QWEN2[module]}.{part}.weight"] = t.contiguous().clone()
        else:
            raise ValueError(f"unknown v1 module {module} in {key}")
    return out


def qwen2_targets(qwen2_tensors):
    """The exact module paths of a Qwen2 adapter (for LoraConfig.target_modules)."""
    names = {k[len("base_model.model."):-len(".lora_A.weight")]
             for k in qwen2_tensors if k.endswith(".lora_A.weight")}
    return sorted(names)


def v1_weights_to_qwen2(sd, layers):
    """A v1 checkpoint's state dict -> the Qwen2ForCausalLM state dict with the same weights."""
    out = {
        "model.embed_tokens.weight": sd["transformer.wte.weight"],
        "model.norm.weight": sd["transformer.ln_f.weight"],
        "lm_head.weight": sd["lm_head.weight"],
    }
    for i in range(layers):
        p, q = f"model.layers.{i}.", f"transformer.h.{i}."
        out[p + "input_layernorm.weight"] = sd[q + "ln_1.weight"]
        out[p + "post_attention_layernorm.weight"] = sd[q + "ln_2.weight"]
        for kind in ["weight", "bias"]:
            parts = torch.chunk(sd[q + f"attn.c_attn.{kind}"], 3, dim=0)
            for name, part in zip(QKV, parts):
                out[p + f"{name}.{kind}"] = part.contiguous()
        for v1, qwen2 in V1_TO_QWEN2.items():
            out[p + f"{qwen2}.weight"] = sd[q + f"{v1}.weight"]
    return out
