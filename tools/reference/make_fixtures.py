#!/usr/bin/env python3
"""Build tiny random Hugging Face models and their reference outputs.

Everything is written to data/fixtures/<name>/ (relative to the repository
root) when run with transformers 4.x (requirements.txt), and to
data/fixtures/v5/<name>/ when run with transformers 5.x (requirements5.txt):
same fixture names, file names, reference tensor names, inputs and (random)
weights, but every model directory is whatever that transformers version's
save_pretrained writes (config.json form, checkpoint key layout).  The output
is meant to be byte-identical across runs on the same platform with the
pinned versions:

* all random numbers come from numpy's PCG64 generator (platform independent),
  seeded per fixture and per tensor name;
* torch runs single-threaded with deterministic algorithms, float32, eager
  attention;
* JSON written by this script uses sort_keys; no timestamps or temp paths.

Run it through tools/reference/regenerate.sh.
"""

import json
import os
import shutil
import sys
import zlib

# Set-ordering inside peft's adapter_config.json depends on string hashing:
# pin the hash seed (re-exec once) so every run sees the same order.  We also
# rewrite that file with sorted lists, so this is belt and braces.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageOps  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipTextConfig,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.image_utils import load_image  # noqa: E402
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector  # noqa: E402

import peft  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402

from qwen_v1_lora import qwen2_targets, v1_adapter_to_qwen2  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)
transformers.logging.set_verbosity_error()

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# transformers 5 serialises differently (rope_parameters, vision towers without
# the `vision_model.` level, ...): its fixtures go to a separate tree.
V5 = int(transformers.__version__.split(".")[0]) >= 5
OUT = os.path.join(REPO, "data", "fixtures", "v5") if V5 else os.path.join(REPO, "data", "fixtures")

# Collected documentation, rendered into data/fixtures/README.md at the end.
DOCS = {}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def rng_for(seed, name=""):
    """A numpy Generator keyed by (fixture seed, crc32(name))."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def randn(seed, name, shape, std=1.0, mean=0.0):
    a = rng_for(seed, name).standard_normal(size=shape, dtype=np.float64)
    return torch.from_numpy(np.asarray(mean + std * a, dtype=np.float32))


def is_norm_module(m):
    return isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) or "Norm" in type(m).__name__


def legacy_param_name(model, name):
    """The transformers 4.x in-memory name of parameter `name` of `model`.

    Random values are keyed by parameter name; transformers 5 dropped the
    `vision_model.` level of CLIPVisionModel / SiglipVisionModel (also inside
    LLaVA's vision tower), so under 5.x those names are mapped back to the 4.x
    ones and both versions get exactly the same weights.
    """
    if not V5:
        return name
    if isinstance(model, (CLIPVisionModel, SiglipVisionModel)):
        return "vision_model." + name
    tower = "model.vision_tower."
    if isinstance(model, LlavaForConditionalGeneration) and name.startswith(tower):
        return tower + "vision_model." + name[len(tower):]
    return name


@torch.no_grad()
def randomize_(model, seed, std=0.1):
    """Overwrite every parameter with non-trivial random values.

    norm weights: 1 + 0.1*N(0,1); norm biases and every other bias: 0.1*N(0,1);
    everything else (linear/conv/embedding weights, CLIP class embedding,
    SigLIP probe, logit scale/bias...): std*N(0,1).  Tied parameters are
    visited once (first name in named_modules order).  Values are keyed by the
    transformers 4.x parameter name (see legacy_param_name).
    """
    seen = set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            full = legacy_param_name(model, f"{mname}.{pname}" if mname else pname)
            if is_norm_module(module) and pname == "weight":
                v = randn(seed, full, tuple(p.shape), std=0.1, mean=1.0)
            elif pname.endswith("bias"):
                v = randn(seed, full, tuple(p.shape), std=0.1)
            else:
                v = randn(seed, full, tuple(p.shape), std=std)
            p.copy_(v.to(p.dtype))


def fixture_dir(name):
    d = os.path.join(OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True))
        f.write("\n")


def save_tensors(path, tensors):
    out = {}
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            v = torch.tensor(v)
        out[k] = v.detach().cpu().contiguous().clone()
    save_file(out, path)


def padded_batch(seed, vocab, seq, pad, pad_id=0, low=3):
    """Batch of 2: sample 0 full length, sample 1 left-padded with `pad` pads.

    Token ids are drawn from [low, vocab) so they never collide with the pad id
    0 or the special ids 1/2.  position_ids follow HF generate():
    cumsum(mask) - 1, with padded positions set to 1.
    """
    r = rng_for(seed, "input_ids")
    ids = r.integers(low, vocab, size=(2, seq), dtype=np.int64)
    mask = np.ones((2, seq), dtype=np.int64)
    ids[1, :pad] = pad_id
    mask[1, :pad] = 0
    ids = torch.from_numpy(ids)
    mask = torch.from_numpy(mask)
    pos = position_ids_from_mask(mask)
    return ids, mask, pos


def position_ids_from_mask(mask):
    pos = mask.long().cumsum(-1) - 1
    pos.masked_fill_(mask == 0, 1)
    return pos


def assert_close(a, b, atol, what):
    diff = (a.float() - b.float()).abs().max().item()
    if not diff <= atol:
        raise SystemExit(f"check failed: {what}: max abs diff {diff} > {atol}")
    return diff


def key_prefixes(path, depth=2):
    """Distinct first `depth` dot-components of the tensor names in a safetensors file."""
    with safe_open(path, "pt") as f:
        keys = list(f.keys())
    return sorted({".".join(k.split(".")[:depth]) for k in keys})


def tower_keys_note(d, cls_name):
    """Doc fragment: where a stand-alone vision tower's weights live in model.safetensors."""
    if not V5:
        return f"{cls_name} (keys `vision_model.*`; "
    prefixes = key_prefixes(os.path.join(d, "model.safetensors"), 1)
    return (f"{cls_name} as transformers {transformers.__version__} saves it: keys WITHOUT the "
            "`vision_model.` level (transformers 4.x wrote `vision_model.embeddings...`; 5.x "
            "dropped that module level and loads either form), top-level prefixes "
            + ", ".join(f"`{x}.*`" for x in prefixes) + "; ")


def masked_close(a, b, mask, atol, what):
    m = mask.bool()
    return assert_close(a[m], b[m], atol, what)


def reload_check(cls, d, ref_logits, mask, **inputs):
    """Reload the saved directory with from_pretrained (local path) and compare."""
    m = cls.from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
    m.eval()
    with torch.no_grad():
        out = m(**inputs).logits
    masked_close(out, ref_logits, mask, 0.0, f"reload {os.path.basename(d)}")


def eager(cfg):
    cfg._attn_implementation = "eager"
    return cfg


# --------------------------------------------------------------------------
# Qwen2 / Qwen3 text models
# --------------------------------------------------------------------------

SEQ = 12
PAD = 4


def qwen2_tied_config():
    return eager(Qwen2Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
        attention_dropout=0.0,
        bos_token_id=1,
        eos_token_id=2,
        use_cache=True,
    ))


QWEN2_TIED_SEED = 1001


def build_qwen2_tied():
    model = Qwen2ForCausalLM(qwen2_tied_config())
    randomize_(model, QWEN2_TIED_SEED)
    model.eval()
    return model


def qwen2_tied_inputs():
    return padded_batch(QWEN2_TIED_SEED, 512, SEQ, PAD)


@torch.no_grad()
def causal_lm_reference(model, ids, mask, pos, hidden=True):
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                output_hidden_states=hidden, use_cache=False)
    ref = {"input_ids": ids, "attention_mask": mask, "position_ids": pos,
           "logits": out.logits.float()}
    if hidden:
        for i, h in enumerate(out.hidden_states):
            ref[f"hidden_states.{i}"] = h.float()
    # Sanity: sample 1's unmasked logits equal those of the unpadded sequence.
    n = int(mask[1].sum())
    alone = model(input_ids=ids[1:, -n:], attention_mask=mask[1:, -n:],
                  position_ids=pos[1:, -n:], use_cache=False).logits
    assert_close(out.logits[1, -n:], alone[0], 1e-4, "left padding invariance")
    return ref


def text_model_files(d, model, ids, mask, pos, cls, note, hidden=True):
    model.save_pretrained(d, safe_serialization=True)
    ref = causal_lm_reference(model, ids, mask, pos, hidden=hidden)
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    reload_check(cls, d, ref["logits"], mask, input_ids=ids, attention_mask=mask,
                 position_ids=pos)
    return ref


HIDDEN_NOTE = (
    "`hidden_states.0` is the token embedding output, `hidden_states.i` (1 <= i < L) the "
    "output of decoder layer i, and `hidden_states.L` (L = num_hidden_layers) is the "
    "output of the last layer AFTER the final RMSNorm (HF convention: it equals the "
    "model's last_hidden_state)."
)

PAD_NOTE = (
    "Batch of 2: sample 0 is full length, sample 1 is LEFT-padded (pad id 0, "
    "attention_mask 0). `position_ids` were passed explicitly: cumsum(attention_mask)-1 "
    "with padded positions set to 1 (what HF generate() does), so sample 1's unmasked "
    "logits equal those of the unpadded sequence (checked by the script, 1e-4). Values "
    "at padded positions (logits and hidden states) are whatever HF computes there "
    "(padded query rows attend to nothing but are not NaN with eager attention): "
    "tests must compare only positions where attention_mask == 1."
)


def make_qwen2_tied():
    d = fixture_dir("qwen2_tied")
    model = build_qwen2_tied()
    ids, mask, pos = qwen2_tied_inputs()
    text_model_files(d, model, ids, mask, pos, Qwen2ForCausalLM, "")
    DOCS["qwen2_tied"] = (
        "Qwen2ForCausalLM, tie_word_embeddings=true (no `lm_head.weight` in the file: "
        "the LM head is `model.embed_tokens.weight`), vocab 512, hidden 64, intermediate 128, "
        "2 layers, 4 attention heads / 2 KV heads (GQA, head_dim 16), qkv bias, rope_theta 1e6, "
        "rms_norm_eps 1e-6, use_sliding_window false. Every parameter is random "
        f"(seed {QWEN2_TIED_SEED}; norms 1+0.1*N, biases 0.1*N, weights 0.1*N). "
        + PAD_NOTE + " " + HIDDEN_NOTE
    )


def make_qwen2_untied():
    seed = 1002
    d = fixture_dir("qwen2_untied")
    cfg = eager(Qwen2Config(
        vocab_size=448,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        hidden_act="silu",
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        use_sliding_window=False,
        bos_token_id=1,
        eos_token_id=2,
    ))
    model = Qwen2ForCausalLM(cfg)
    randomize_(model, seed)
    model.eval()
    ids, mask, pos = padded_batch(seed, 448, SEQ, PAD)
    text_model_files(d, model, ids, mask, pos, Qwen2ForCausalLM, "")
    DOCS["qwen2_untied"] = (
        "Qwen2ForCausalLM, tie_word_embeddings=false (separate `lm_head.weight`), vocab 448, "
        "hidden 32, intermediate 64, 2 layers, 4 attention heads / 1 KV head (MQA, head_dim 8 = "
        "hidden/heads, no explicit head_dim in config), qkv bias, rope_theta 1e6. "
        f"Seed {seed}. " + PAD_NOTE + " " + HIDDEN_NOTE
    )


def make_qwen3():
    seed = 1003
    d = fixture_dir("qwen3")
    cfg = eager(Qwen3Config(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        hidden_act="silu",
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        attention_bias=False,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=1,
        eos_token_id=2,
    ))
    model = Qwen3ForCausalLM(cfg)
    randomize_(model, seed)
    model.eval()
    ids, mask, pos = padded_batch(seed, 512, SEQ, PAD)
    text_model_files(d, model, ids, mask, pos, Qwen3ForCausalLM, "")
    DOCS["qwen3"] = (
        "Qwen3ForCausalLM: vocab 512, hidden 32, intermediate 64, 2 layers, 4 heads / 2 KV heads, "
        "explicit head_dim 24 (!= hidden/heads = 8, so q_proj is [96, 32] and o_proj [32, 96]), "
        "per-head RMSNorm `q_norm`/`k_norm` (weight [24], applied before RoPE), no qkv bias "
        "(attention_bias false), tie_word_embeddings true, rope_theta 1e6. "
        f"Seed {seed}. " + PAD_NOTE + " " + HIDDEN_NOTE
    )


def rope_config_kw(theta, scaling):
    """Config kwargs for a scaled RoPE, the way each transformers version takes them.

    4.x: top-level `rope_theta` + `rope_scaling` with the legacy "type" key (as the
    Qwen2.5 model cards write it; 4.x adds "rope_type" next to it); 5.x: one
    `rope_parameters` dict holding rope_type, rope_theta and the scaling fields.
    """
    extra = {k: v for k, v in scaling.items() if k != "type"}
    if V5:
        return {"rope_parameters": dict(rope_type=scaling["type"], rope_theta=theta, **extra)}
    return {"rope_theta": theta, "rope_scaling": dict(scaling)}


def yarn_inv_freq_expected(theta, dim, factor, orig_max, beta_fast=32.0, beta_slow=1.0):
    """YaRN inv_freq / attention factor written out independently (float64), for the docs."""
    import math
    i = np.arange(0, dim, 2, dtype=np.float64)
    pos_freqs = theta ** (i / dim)
    extra = 1.0 / pos_freqs
    inter = 1.0 / (factor * pos_freqs)

    def corr(rot):
        return dim * math.log(orig_max / (rot * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(corr(beta_fast)), 0)
    high = min(math.ceil(corr(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    ext_factor = 1.0 - ramp
    inv = inter * (1.0 - ext_factor) + extra * ext_factor
    mscale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv, mscale, low, high, ext_factor


def make_qwen2_rope(name, seed, z, seq, scaling, note):
    d = fixture_dir(name)
    theta = 1000000.0

    def config(scaled):
        kw = rope_config_kw(theta, scaling) if scaled else {"rope_theta": theta}
        return eager(Qwen2Config(
            vocab_size=z["vocab"], hidden_size=z["hidden"], intermediate_size=z["inter"],
            num_hidden_layers=2, num_attention_heads=z["heads"], num_key_value_heads=z["kv"],
            hidden_act="silu", max_position_embeddings=z["max_pos"], rms_norm_eps=1e-6,
            tie_word_embeddings=False, use_sliding_window=False, bos_token_id=1, eos_token_id=2,
            **kw))

    model = Qwen2ForCausalLM(config(True))
    randomize_(model, seed)
    model.eval()
    ids, mask, pos = padded_batch(seed, z["vocab"], seq, PAD)
    model.save_pretrained(d, safe_serialization=True)
    ref = causal_lm_reference(model, ids, mask, pos, hidden=True)
    rot = model.model.rotary_emb
    assert rot.rope_type == scaling["type"], rot.rope_type
    ref["rope.inv_freq"] = rot.inv_freq.float()
    ref["rope.attention_scaling"] = torch.tensor([float(rot.attention_scaling)], dtype=torch.float32)
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    reload_check(Qwen2ForCausalLM, d, ref["logits"], mask, input_ids=ids, attention_mask=mask,
                 position_ids=pos)

    # Independent check of the frequencies, and how much the scaling changes the logits.
    head_dim = z["hidden"] // z["heads"]
    base = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    factor = scaling["factor"]
    if scaling["type"] == "linear":
        expected, att = base / factor, 1.0
        detail = (f"inv_freq = theta^(-2i/d) / factor (d = head_dim = {head_dim}), "
                  "attention_scaling 1.0 (cos/sin unscaled).")
    else:
        expected, att, low, high, ext = yarn_inv_freq_expected(
            theta, head_dim, factor, scaling["original_max_position_embeddings"])
        detail = (
            f"d = head_dim = {head_dim}, beta_fast 32 / beta_slow 1 (defaults), truncate true "
            f"(default): correction range low = {low}, high = {high} (floor/ceil of "
            "d*ln(orig_max/(beta*2*pi))/(2*ln(theta)), clamped to [0, d-1]); ramp_j = "
            "clamp((j-low)/(high-low), 0, 1) for j = 0..d/2-1; extrapolation weight "
            f"e_j = 1 - ramp_j = {[round(float(x), 4) for x in ext]}; inv_freq_j = "
            "theta^(-2j/d) * e_j + theta^(-2j/d)/factor * (1 - e_j); attention_scaling = "
            f"0.1*ln(factor)+1 = {att:.7f}, multiplied into BOTH cos and sin (so q.k logits "
            f"scale by its square, {att * att:.6f}); no change to the 1/sqrt(head_dim) "
            "softmax scale.")
    got = ref["rope.inv_freq"].double().numpy()
    assert np.allclose(got, expected, rtol=1e-6, atol=0), (got, expected)
    assert abs(float(rot.attention_scaling) - att) < 1e-9, (rot.attention_scaling, att)
    plain = Qwen2ForCausalLM(config(False))
    randomize_(plain, seed)
    plain.eval()
    with torch.no_grad():
        plain_logits = plain(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    effect = (plain_logits - ref["logits"])[mask.bool()].abs().max().item()
    assert effect > 1e-2, f"{name}: rope scaling has no visible effect ({effect})"

    with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    rope_fields = {k: saved[k] for k in ("rope_theta", "rope_scaling", "rope_parameters",
                                         "max_position_embeddings") if k in saved}
    DOCS[name] = note + (
        f" Sizes: vocab {z['vocab']}, hidden {z['hidden']}, intermediate {z['inter']}, 2 layers, "
        f"{z['heads']} heads / {z['kv']} KV heads (head_dim {head_dim}), qkv bias, untied "
        f"lm_head, rms eps 1e-6, seed {seed}. config.json as transformers "
        f"{transformers.__version__} saves it; its RoPE fields: "
        f"`{json.dumps(rope_fields, sort_keys=True)}`. " + detail +
        " Extra reference tensors: `rope.inv_freq` [d/2] (the model's rotary inv_freq buffer) "
        "and `rope.attention_scaling` [1]. Max |logit| difference to the same weights with "
        f"unscaled RoPE (theta 1e6): {effect:.3f}. Inputs: batch 2, length {seq}, sample 1 "
        f"LEFT-padded with {PAD} pads (so sample 0's positions run 0..{seq - 1}). "
        + PAD_NOTE + " " + HIDDEN_NOTE
    )


def make_qwen2_ropes():
    make_qwen2_rope(
        "qwen2_rope_linear", 1005,
        dict(vocab=256, hidden=32, inter=64, heads=4, kv=2, max_pos=256), 40,
        {"type": "linear", "factor": 4.0},
        "Qwen2ForCausalLM with LINEAR RoPE scaling (position interpolation), factor 4.0, "
        "rope_theta 1e6.",
    )
    make_qwen2_rope(
        "qwen2_rope_yarn", 1006,
        dict(vocab=128, hidden=64, inter=64, heads=2, kv=1, max_pos=128), 60,
        {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
        "Qwen2ForCausalLM with YaRN RoPE scaling, factor 4.0, original_max_position_embeddings "
        "32, max_position_embeddings 128 (= 4 x 32, so the explicit and implied factors agree), "
        "rope_theta 1e6; sequence 60 > 32 pretraining positions.",
    )


QWEN_V1_SEED = 1004
QWEN_V1_SIZES = dict(hidden=32, heads=4, layers=2, inter=64, vocab=512)


def build_qwen_v1_equivalent():
    """The MHA Qwen2ForCausalLM whose weights qwen_v1 stores under v1 names."""
    z = QWEN_V1_SIZES
    cfg = eager(Qwen2Config(
        vocab_size=z["vocab"],
        hidden_size=z["hidden"],
        intermediate_size=z["inter"],
        num_hidden_layers=z["layers"],
        num_attention_heads=z["heads"],
        num_key_value_heads=z["heads"],
        hidden_act="silu",
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        use_sliding_window=False,
    ))
    model = Qwen2ForCausalLM(cfg)
    randomize_(model, QWEN_V1_SEED)
    model.eval()
    return model


def qwen_v1_inputs():
    return padded_batch(QWEN_V1_SEED, QWEN_V1_SIZES["vocab"], SEQ, PAD)


def make_qwen_v1():
    seed = QWEN_V1_SEED
    d = fixture_dir("qwen_v1")
    z = QWEN_V1_SIZES
    hidden, heads, layers, inter, vocab = z["hidden"], z["heads"], z["layers"], z["inter"], z["vocab"]
    head_dim = hidden // heads
    model = build_qwen_v1_equivalent()
    sd = model.state_dict()
    v1 = {
        "transformer.wte.weight": sd["model.embed_tokens.weight"],
        "transformer.ln_f.weight": sd["model.norm.weight"],
        "lm_head.weight": sd["lm_head.weight"],
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        q = f"transformer.h.{i}."
        v1[q + "ln_1.weight"] = sd[p + "input_layernorm.weight"]
        v1[q + "attn.c_attn.weight"] = torch.cat(
            [sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"],
             sd[p + "self_attn.v_proj.weight"]], dim=0)
        v1[q + "attn.c_attn.bias"] = torch.cat(
            [sd[p + "self_attn.q_proj.bias"], sd[p + "self_attn.k_proj.bias"],
             sd[p + "self_attn.v_proj.bias"]], dim=0)
        v1[q + "attn.c_proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        v1[q + "ln_2.weight"] = sd[p + "post_attention_layernorm.weight"]
        v1[q + "mlp.w1.weight"] = sd[p + "mlp.up_proj.weight"]
        v1[q + "mlp.w2.weight"] = sd[p + "mlp.gate_proj.weight"]
        v1[q + "mlp.c_proj.weight"] = sd[p + "mlp.down_proj.weight"]
    assert len(v1) == 3 + 8 * layers
    used = sum(t.numel() for t in v1.values())
    assert used == sum(t.numel() for t in sd.values()), "v1 conversion dropped weights"
    v1 = {k: v.contiguous().clone() for k, v in v1.items()}
    save_file(v1, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    # Hand-written config in the style of Qwen-7B-Chat's config.json.
    write_json(os.path.join(d, "config.json"), {
        "architectures": ["QWenLMHeadModel"],
        "auto_map": {
            "AutoConfig": "configuration_qwen.QWenConfig",
            "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel",
        },
        "attn_dropout_prob": 0.0,
        "bf16": False,
        "emb_dropout_prob": 0.0,
        "fp16": False,
        "fp32": True,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": 2 * inter,
        "kv_channels": head_dim,
        "layer_norm_epsilon": 1e-06,
        "max_position_embeddings": 2048,
        "model_type": "qwen",
        "no_bias": True,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "onnx_safe": None,
        "rotary_emb_base": 10000,
        "rotary_pct": 1.0,
        "scale_attn_weights": True,
        "seq_length": 2048,
        "tie_word_embeddings": False,
        "tokenizer_class": "QWenTokenizer",
        "transformers_version": "4.32.0",
        "use_cache": True,
        "use_cache_kernel": False,
        "use_cache_quantization": False,
        "use_dynamic_ntk": True,
        "use_flash_attn": "auto",
        "use_logn_attn": True,
        "vocab_size": vocab,
    })
    ids, mask, pos = qwen_v1_inputs()
    ref = causal_lm_reference(model, ids, mask, pos, hidden=True)
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    DOCS["qwen_v1"] = (
        "Qwen (v1, Qwen-7B/QWenLMHeadModel) checkpoint layout. trust_remote_code models cannot "
        "run here, so the numbers come from an MHA Qwen2ForCausalLM (num_key_value_heads == "
        "num_attention_heads = 4, hidden 32, head_dim 8, MLP width 64, vocab 512, 2 layers, "
        "qkv bias, untied lm_head, rope_theta 10000, rms eps 1e-6) and are saved under v1 "
        "names: `transformer.wte.weight` = embed_tokens; `transformer.h.N.ln_1.weight` = "
        "input_layernorm; `transformer.h.N.attn.c_attn.weight` = cat(q_proj, k_proj, v_proj) "
        "along the OUTPUT dim ([3*32, 32] = [96, 32]) and `.bias` = cat of the three biases ([96]); "
        "`transformer.h.N.attn.c_proj.weight` = o_proj (no bias); `transformer.h.N.ln_2.weight` "
        "= post_attention_layernorm; `mlp.w1.weight` = up_proj, `mlp.w2.weight` = gate_proj, "
        "`mlp.c_proj.weight` = down_proj (v1 MLP: c_proj(w1(x) * silu(w2(x))), identical to "
        "Qwen2's down(up(x) * silu(gate(x)))); `transformer.ln_f.weight` = model.norm; "
        "`lm_head.weight`. config.json is hand-written like Qwen-7B-Chat's: kv_channels = head "
        "dim, intermediate_size = 128 = 2 x the real MLP width (v1 builds w1/w2 with "
        "intermediate_size // 2 = 64), rotary_emb_base 10000, rotary_pct 1.0 (full-head rotary, "
        "rotate-half convention, same as Qwen2), layer_norm_epsilon 1e-6, seq_length 2048 "
        "(use_dynamic_ntk and use_logn_attn are true as in the real config, but both only act "
        "past seq_length, so they are no-ops at these lengths), no_bias true (c_attn still has "
        "a bias in v1). The v1 attention math (RMSNorm, full-head rotate-half RoPE with "
        "inv_freq = base^(-2i/d), softmax(QK^T/sqrt(d)) causal, SwiGLU MLP) is the same as "
        "Qwen2 MHA, so the reference logits/hidden states are those of the Qwen2 model "
        f"(seed {seed}). " + PAD_NOTE + " " + HIDDEN_NOTE
    )


def make_qwen2_lowp():
    base = build_qwen2_tied()
    ids, mask, pos = qwen2_tied_inputs()
    for name, dtype, shard in (("qwen2_bf16_sharded", torch.bfloat16, "100KB"),
                               ("qwen2_f16", torch.float16, None)):
        d = fixture_dir(name)
        model = build_qwen2_tied().to(dtype)
        kw = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(d, safe_serialization=True, **kw)
        files = sorted(os.listdir(d))
        if shard:
            shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
            assert len(shards) >= 2 and "model.safetensors.index.json" in files, files
        else:
            assert "model.safetensors" in files, files
        # Reference: f32 forward of the low-precision-rounded weights.  (Not
        # model.float(): .to(dtype) also rounded the rotary inv_freq buffer.)
        model32 = build_qwen2_tied()
        with torch.no_grad():
            for p in model32.parameters():
                p.copy_(p.to(dtype).float())
        ref = causal_lm_reference(model32, ids, mask, pos, hidden=False)
        save_tensors(os.path.join(d, "reference.safetensors"), ref)
        m2 = Qwen2ForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
        with torch.no_grad():
            out = m2(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        masked_close(out, ref["logits"], mask, 0.0, f"reload {name}")
        with torch.no_grad():
            full = base(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        diff = (full - ref["logits"]).abs().max().item()
        DOCS[name + "_diff"] = diff
    DOCS["qwen2_bf16_sharded"] = (
        "The qwen2_tied weights cast to bfloat16 (config `dtype`/torch_dtype bfloat16) and saved "
        "with save_pretrained(max_shard_size=\"100KB\"): several `model-0000K-of-0000N.safetensors` "
        "shards plus `model.safetensors.index.json` (weight_map: tensor name -> shard file). "
        "Reference logits were computed in float32 from the bf16-ROUNDED weights (upcast after "
        "rounding), same inputs as qwen2_tied (" + PAD_NOTE + "). Max |logit| difference to the "
        f"f32 qwen2_tied model at the same inputs: {DOCS['qwen2_bf16_sharded_diff']:.3e}."
    )
    DOCS["qwen2_f16"] = (
        "The qwen2_tied weights cast to float16, single `model.safetensors`. Reference logits in "
        "float32 from the f16-rounded weights, same inputs as qwen2_tied. Max |logit| difference "
        f"to the f32 qwen2_tied model: {DOCS['qwen2_f16_diff']:.3e}."
    )


def make_generation():
    d = fixture_dir("generation")
    model = build_qwen2_tied()
    vocab, prompt_len, pad, new = 512, 8, 3, 10
    pad_id = 0

    def run(ids, mask, eos):
        with torch.no_grad():
            out = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                max_new_tokens=new, min_new_tokens=0, eos_token_id=eos, pad_token_id=pad_id,
                bos_token_id=None, temperature=None, top_p=None, top_k=None,
                repetition_penalty=None, use_cache=True,
                output_scores=True, return_dict_in_generate=True)
        return out

    # Pick the prompt seed whose greedy path has a comfortable top-1/top-2 margin.
    best = None
    for s in range(2000, 2064):
        ids, mask, _ = padded_batch(s, vocab, prompt_len, pad)
        out = run(ids, mask, None)
        margins = []
        for sc in out.scores:
            top = sc.topk(2, dim=-1).values
            margins.append((top[:, 0] - top[:, 1]).min().item())
        m = min(margins)
        new1 = out.sequences[1, prompt_len:].tolist()
        new0 = out.sequences[0, prompt_len:].tolist()
        # eos candidate: sample 1's 5th new token, must not appear earlier in sample 1
        # nor anywhere in sample 0's continuation.
        cand = new1[4]
        ok = cand not in new1[:4] and cand not in new0 and len(set(new0)) > 2
        if ok and (best is None or m > best[0]):
            best = (m, s, cand)
        if best is not None and best[0] > 0.02:
            break
    assert best is not None
    margin, s, eos = best
    ids, mask, _ = padded_batch(s, vocab, prompt_len, pad)
    no_eos = run(ids, mask, None).sequences
    out = run(ids, mask, eos)
    seq = out.sequences
    assert seq.shape == (2, prompt_len + new), seq.shape
    # sample 1 stops at its 5th new token (eos kept), then pads.
    assert seq[1, prompt_len + 4].item() == eos
    assert (seq[1, prompt_len + 5:] == pad_id).all()
    assert torch.equal(seq[0], no_eos[0])
    assert torch.equal(seq[1, :prompt_len + 5], no_eos[1, :prompt_len + 5])
    save_tensors(os.path.join(d, "reference.safetensors"), {
        "input_ids": ids,
        "attention_mask": mask,
        "output_ids": seq,
        "output_ids_no_eos": no_eos,
        "eos_token_id": torch.tensor([eos], dtype=torch.int64),
        "pad_token_id": torch.tensor([pad_id], dtype=torch.int64),
        "max_new_tokens": torch.tensor([new], dtype=torch.int64),
    })
    write_json(os.path.join(d, "generation.json"), {
        "model": "../qwen2_tied",
        "do_sample": False,
        "num_beams": 1,
        "max_new_tokens": new,
        "eos_token_id": eos,
        "pad_token_id": pad_id,
        "use_cache": True,
        "min_top1_top2_logit_margin": round(margin, 6),
    })
    DOCS["generation"] = (
        "Greedy decoding with the `../qwen2_tied` model (weights not duplicated here), "
        "model.generate(do_sample=False, num_beams=1, max_new_tokens=10, use_cache=True, "
        f"pad_token_id=0, eos_token_id={eos}). Prompt: batch 2, length 8, sample 1 LEFT-padded "
        "with 3 pads (attention_mask 0). generate() derives position_ids = cumsum(mask)-1 (pads "
        "-> 1) and extends the mask with ones for generated tokens. `output_ids` = prompt + 10 "
        f"new tokens. EOS handling: eos_token_id ({eos}, also in `eos_token_id`) was chosen as "
        "sample 1's 5th greedy token, so sample 1 emits eos at new step 5 (the eos token is "
        "kept in the output) and every later position is `pad_token_id` (0), while sample 0 "
        "never produces it and runs to max_new_tokens. `output_ids_no_eos` is the same run "
        "without any eos (both samples run 10 steps). The prompt seed was picked so that the "
        f"smallest top-1 minus top-2 logit gap over all steps and samples is {margin:.4f}, "
        "so argmax ties cannot flip under small float differences. generation.json records the "
        "settings (json, sorted keys)."
    )


# --------------------------------------------------------------------------
# vision towers
# --------------------------------------------------------------------------

def clip_vision_config(**kw):
    c = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, intermediate_size=64,
             num_hidden_layers=3, num_attention_heads=4, hidden_act="quick_gelu",
             layer_norm_eps=1e-5, projection_dim=16, attention_dropout=0.0)
    c.update(kw)
    return eager(CLIPVisionConfig(**c))


def siglip_vision_config(**kw):
    c = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, intermediate_size=64,
             num_hidden_layers=3, num_attention_heads=4, hidden_act="gelu_pytorch_tanh",
             layer_norm_eps=1e-6, attention_dropout=0.0)
    c.update(kw)
    return eager(SiglipVisionConfig(**c))


def clip_small_processor(size=32, crop=32):
    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True,
        crop_size={"height": crop, "width": crop}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True)


def siglip_small_processor(size=32):
    return SiglipImageProcessor(
        do_resize=True, size={"height": size, "width": size}, resample=3, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5], do_convert_rgb=True)


def pixel_values(seed, n=2, size=32):
    return randn(seed, "pixel_values", (n, 3, size, size), std=1.0)


@torch.no_grad()
def vision_reference(tower, pv, prefix=""):
    out = tower(pixel_values=pv, output_hidden_states=True)
    ref = {}
    for i, h in enumerate(out.hidden_states):
        ref[f"{prefix}hidden_states.{i}"] = h
    ref[f"{prefix}last_hidden_state"] = out.last_hidden_state
    if getattr(out, "pooler_output", None) is not None:
        ref[f"{prefix}pooler_output"] = out.pooler_output
    return ref


CLIP_VISION_NOTE = (
    "CLIP vision tower: image 32, patch 8 (conv, no bias) -> 16 patches + CLS = 17 tokens, hidden "
    "32, intermediate 64, 3 layers, 4 heads, quick_gelu, layer_norm_eps 1e-5; class_embedding and "
    "position_embedding random too. Reference on random N(0,1) `pixel_values` [2,3,32,32] with "
    "output_hidden_states=True: `hidden_states.0` is the embedding output AFTER `pre_layrnorm` "
    "(sic, HF name), `hidden_states.i` the output of encoder layer i (i = 1..3), "
    "`last_hidden_state` == hidden_states.3 (NO post_layernorm), `pooler_output` = "
    "post_layernorm(last_hidden_state[:, 0]) (CLS token)."
)

SIGLIP_VISION_NOTE = (
    "SigLIP vision tower: image 32, patch 8 (conv with bias) -> 16 tokens (no CLS), hidden 32, "
    "intermediate 64, 3 layers, 4 heads, gelu_pytorch_tanh, layer_norm_eps 1e-6. Reference on random "
    "N(0,1) `pixel_values` [2,3,32,32] with output_hidden_states=True: `hidden_states.0` = patch "
    "embeddings + position embeddings (no pre-norm), `hidden_states.i` the output of encoder layer "
    "i (i = 1..3, no norm), `last_hidden_state` = post_layernorm(hidden_states.3)."
)


def make_clip():
    seed = 3001
    d = fixture_dir("clip_vision")
    model = CLIPVisionModel(clip_vision_config())
    randomize_(model, seed)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    clip_small_processor().save_pretrained(d)
    pv = pixel_values(seed)
    ref = {"pixel_values": pv}
    ref.update(vision_reference(model, pv))
    assert_close(ref["last_hidden_state"], ref["hidden_states.3"], 0.0, "clip last")
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    m2 = CLIPVisionModel.from_pretrained(d, attn_implementation="eager")
    with torch.no_grad():
        assert_close(m2(pixel_values=pv).pooler_output, ref["pooler_output"], 0.0, "clip reload")
    DOCS["clip_vision"] = (
        tower_keys_note(d, "CLIPVisionModel") + "config.json model_type clip_vision_model, flat). "
        + CLIP_VISION_NOTE + f" Seed {seed}. preprocessor_config.json: CLIPImageProcessor with "
        "shortest_edge 32, center crop 32x32, bicubic (resample 3), rescale 1/255, CLIP mean/std."
    )

    seed = 3002
    d = fixture_dir("clip_full")
    cfg = eager(CLIPConfig(
        text_config=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu",
                         projection_dim=16, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        vision_config=clip_vision_config().to_dict(),
        projection_dim=16,
    ))
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    model = CLIPModel(cfg)
    randomize_(model, seed)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    clip_small_processor().save_pretrained(d)
    pv = pixel_values(seed)
    ref = {"pixel_values": pv}
    ref.update(vision_reference(model.vision_model, pv))
    with torch.no_grad():
        ref["image_embeds"] = model.visual_projection(ref["pooler_output"])
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    DOCS["clip_full"] = (
        "CLIPModel (dual tower): config.json has nested `text_config` and `vision_config` "
        "(model_type clip); weights `vision_model.*` next to `text_model.*`, `visual_projection."
        "weight` [16,32], `text_projection.weight`, `logit_scale`. Tiny text tower: vocab 128, "
        "hidden 32, 2 layers, 16 positions. Vision tower as in clip_vision (different random "
        f"weights, seed {seed}). Vision reference only: " + CLIP_VISION_NOTE +
        " `image_embeds` = visual_projection(pooler_output) (no normalisation). "
        "preprocessor_config.json as in clip_vision."
    )


def make_siglip():
    seed = 3003
    d = fixture_dir("siglip_vision")
    model = SiglipVisionModel(siglip_vision_config(vision_use_head=True))
    randomize_(model, seed)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    siglip_small_processor().save_pretrained(d)
    pv = pixel_values(seed)
    ref = {"pixel_values": pv}
    ref.update(vision_reference(model, pv))
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    DOCS["siglip_vision"] = (
        tower_keys_note(d, "SiglipVisionModel").replace("; ", ", ") + "flat config model_type "
        "siglip_vision_model), vision_use_head TRUE (the multihead-attention pooling head "
        + ("`head.*`" if V5 else "`vision_model.head.*`") + " with "
        "`probe`, `attention.in_proj_weight/in_proj_bias` (packed q,k,v), `attention.out_proj.*`, "
        "`layernorm`, `mlp.fc1/fc2` is present). " + SIGLIP_VISION_NOTE + " `pooler_output` = "
        "head(last_hidden_state) [2,32]. LLaVA-style use ignores the head (see `llava`, which uses "
        f"vision_use_head false). Seed {seed}. preprocessor_config.json: SiglipImageProcessor "
        "32x32, bicubic, rescale 1/255, mean/std 0.5."
    )

    seed = 3004
    d = fixture_dir("siglip_full")
    cfg = eager(SiglipConfig(
        text_config=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16,
                         hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2),
        vision_config=siglip_vision_config().to_dict(),
    ))
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    model = SiglipModel(cfg)
    randomize_(model, seed)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    siglip_small_processor().save_pretrained(d)
    pv = pixel_values(seed)
    ref = {"pixel_values": pv}
    # SiglipVisionTransformer alone does not record hidden states in this
    # transformers version: run the same weights through SiglipVisionModel.
    tower = SiglipVisionModel(cfg.vision_config)
    (tower if V5 else tower.vision_model).load_state_dict(model.vision_model.state_dict())
    tower.eval()
    ref.update(vision_reference(tower, pv))
    with torch.no_grad():
        ref["image_embeds"] = model.get_image_features(pixel_values=pv)
        if V5:  # 5.x returns the vision tower's output (pooler_output = the embeddings)
            ref["image_embeds"] = ref["image_embeds"].pooler_output
        direct = model.vision_model(pixel_values=pv)
    assert_close(direct.last_hidden_state, ref["last_hidden_state"], 0.0, "siglip tower")
    assert_close(ref["image_embeds"], ref["pooler_output"], 0.0, "siglip image embeds")
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    DOCS["siglip_full"] = (
        "SiglipModel (dual tower): config.json has nested `text_config` and `vision_config` "
        "(model_type siglip); weights `vision_model.*` (vision_use_head default = true, so "
        "`vision_model.head.*` exists) next to `text_model.*`, plus `logit_scale` and `logit_bias`. "
        f"Tiny text tower: vocab 128, hidden 32, 2 layers. Seed {seed}. Vision reference only: "
        + SIGLIP_VISION_NOTE + " `pooler_output` = head(last_hidden_state); `image_embeds` = "
        "get_image_features()" + (".pooler_output" if V5 else "") + " = pooler_output. preprocessor_config.json as in siglip_vision."
    )


# --------------------------------------------------------------------------
# projector / LLaVA
# --------------------------------------------------------------------------

def make_projector():
    seed = 4001
    d = fixture_dir("projector")
    cfg = LlavaConfig(vision_config=siglip_vision_config().to_dict() | {"model_type": "siglip_vision_model"},
                      text_config=qwen2_tied_config().to_dict(), projector_hidden_act="gelu",
                      vision_feature_layer=-2, vision_feature_select_strategy="full",
                      multimodal_projector_bias=True)
    proj = LlavaMultiModalProjector(cfg)
    randomize_(proj, seed)
    proj.eval()
    weights = {f"multi_modal_projector.{k}": v for k, v in proj.state_dict().items()}
    save_file({k: v.contiguous().clone() for k, v in weights.items()},
              os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(d, "config.json"), {
        "projector_hidden_act": "gelu",
        "vision_hidden_size": 32,
        "text_hidden_size": 64,
        "multimodal_projector_bias": True,
    })
    x = randn(seed, "image_features", (2, 16, 32), std=1.0)
    with torch.no_grad():
        y = proj(x)
        manual = torch.nn.functional.linear(
            torch.nn.functional.gelu(torch.nn.functional.linear(
                x, weights["multi_modal_projector.linear_1.weight"],
                weights["multi_modal_projector.linear_1.bias"])),
            weights["multi_modal_projector.linear_2.weight"],
            weights["multi_modal_projector.linear_2.bias"])
    assert_close(y, manual, 1e-6, "projector manual")
    save_tensors(os.path.join(d, "reference.safetensors"), {"image_features": x, "projected": y})
    DOCS["projector"] = (
        "LLaVA 2-layer MLP projector (transformers LlavaMultiModalProjector) with llava-hf names: "
        "`multi_modal_projector.linear_1.{weight [64,32], bias [64]}` (vision_dim 32 -> llm_dim "
        "64), GELU (exact erf form, projector_hidden_act \"gelu\"), `multi_modal_projector."
        "linear_2.{weight [64,64], bias [64]}`. config.json is hand-written (sorted keys). "
        f"Reference: random N(0,1) `image_features` [2,16,32] -> `projected` [2,16,64]. Seed {seed}."
    )


def llava_batch(seed, vocab, n_img, image_token):
    """input_ids [2, 28] with the image run at different offsets, sample 1 left-padded.

    sample 0: 2 prompt | 16 image | 4 prompt | 6 answer          (no pad)
    sample 1: 5 pad | 4 prompt | 16 image | 1 prompt | 2 answer
    labels = input_ids on answer positions, -100 elsewhere.
    """
    r = rng_for(seed, "llava_ids")
    seq = 28
    layouts = [
        [("p", 2), ("i", n_img), ("p", 4), ("a", 6)],
        [("pad", 5), ("p", 4), ("i", n_img), ("p", 1), ("a", 2)],
    ]
    ids = np.zeros((2, seq), dtype=np.int64)
    mask = np.ones((2, seq), dtype=np.int64)
    labels = np.full((2, seq), -100, dtype=np.int64)
    for b, layout in enumerate(layouts):
        t = 0
        for kind, n in layout:
            for _ in range(n):
                if kind == "pad":
                    ids[b, t] = 0
                    mask[b, t] = 0
                elif kind == "i":
                    ids[b, t] = image_token
                else:
                    ids[b, t] = int(r.integers(3, vocab - 1))
                    if kind == "a":
                        labels[b, t] = ids[b, t]
                t += 1
        assert t == seq
    ids, mask, labels = map(torch.from_numpy, (ids, mask, labels))
    return ids, mask, labels, position_ids_from_mask(mask)


def make_llava(name, seed, vision_cfg, strategy, text_cfg, note):
    d = fixture_dir(name)
    n_img = 16
    IMAGE_TOKEN = text_cfg.vocab_size - 1  # last id of the text vocab
    cfg = LlavaConfig(
        vision_config=vision_cfg.to_dict(),
        text_config=text_cfg.to_dict(),
        image_token_index=IMAGE_TOKEN,
        projector_hidden_act="gelu",
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-2,
        image_seq_length=n_img,
        multimodal_projector_bias=True,
        tie_word_embeddings=text_cfg.tie_word_embeddings,
    )
    cfg._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    model = LlavaForConditionalGeneration(cfg)
    randomize_(model, seed)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    proc = siglip_small_processor() if "siglip" in vision_cfg.model_type else clip_small_processor()
    proc.save_pretrained(d)

    vocab = text_cfg.vocab_size
    ids, mask, labels, pos = llava_batch(seed, vocab, n_img, IMAGE_TOKEN)
    pv = pixel_values(seed)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, pixel_values=pv,
                    labels=labels, use_cache=False)
        vt = model.model.vision_tower(pixel_values=pv, output_hidden_states=True)
        sel = vt.hidden_states[-2]
        if strategy == "default":
            sel = sel[:, 1:]
        feats = model.model.multi_modal_projector(sel)
        emb = model.get_input_embeddings()(ids)
        m = ids == IMAGE_TOKEN
        assert int(m.sum()) == 2 * n_img
        spliced = emb.masked_scatter(m.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]))
        lm = model.model.language_model(inputs_embeds=spliced, attention_mask=mask,
                                        position_ids=pos, use_cache=False).last_hidden_state
        logits = model.lm_head(lm)
        masked_close(logits, out.logits, mask, 1e-5, f"{name} manual splice")
        # manual loss: shift, ignore -100, mean over counted tokens
        sl = logits[:, :-1].reshape(-1, logits.shape[-1])
        tl = labels[:, 1:].reshape(-1)
        loss = torch.nn.functional.cross_entropy(sl, tl, ignore_index=-100, reduction="mean")
        assert_close(loss, out.loss, 1e-5, f"{name} manual loss")
    proj = {k: v for k, v in model.state_dict().items() if "multi_modal_projector" in k}
    proj = {"multi_modal_projector." + k.split("multi_modal_projector.", 1)[1]: v.contiguous().clone()
            for k, v in proj.items()}
    save_file(proj, os.path.join(d, "projector.safetensors"), metadata={"format": "pt"})
    save_tensors(os.path.join(d, "reference.safetensors"), {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": pos,
        "labels": labels,
        "pixel_values": pv,
        "vision_features": sel,
        "image_features": feats,
        "inputs_embeds": spliced,
        "logits": out.logits,
        "loss": out.loss.reshape(1),
        "image_token_index": torch.tensor([IMAGE_TOKEN], dtype=torch.int64),
        "tokens_per_image": torch.tensor([n_img], dtype=torch.int64),
    })
    # reload check
    m2 = LlavaForConditionalGeneration.from_pretrained(d, attn_implementation="eager")
    m2.eval()
    with torch.no_grad():
        o2 = m2(input_ids=ids, attention_mask=mask, position_ids=pos, pixel_values=pv,
                labels=labels).loss
    assert_close(o2, out.loss, 0.0, f"{name} reload")
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    prefixes = sorted({".".join(k.split(".")[:2]) for k in keys})
    DOCS[name] = note + (
        f" image_token_index {IMAGE_TOKEN} (inside the text vocab, so its embedding row exists "
        f"but is replaced), {n_img} image tokens per image (32/8 = 4x4 patches"
        + (", CLS dropped by strategy \"default\"" if strategy == "default" else "") + "). "
        "vision_feature_layer -2 (hidden_states[-2] of the vision tower = output of encoder "
        f"layer 2 of 3, before any post-layernorm), vision_feature_select_strategy \"{strategy}\". "
        "input_ids [2,28]: sample 0 = 2 prompt | 16 image | 4 prompt | 6 answer (image at "
        "positions 2..17); sample 1 = 5 LEFT pads | 4 prompt | 16 image | 1 prompt | 2 answer "
        "(image at 9..24). `labels` = input_ids on answer positions, -100 on pad, prompt and "
        "image positions. `position_ids` = cumsum(mask)-1 (pads -> 1), passed explicitly. "
        "`vision_features` = selected vision hidden states [2,16,32], `image_features` = "
        "projector output [2,16,text_hidden], `inputs_embeds` = token embeddings with image-token rows "
        "replaced in order (masked_scatter), `logits` [2,28,V] (compare only attention_mask==1 "
        "positions), `loss` [1] = HF causal-LM loss: logits[:, :-1] vs labels[:, 1:], "
        "cross-entropy with ignore_index -100, MEAN over the non-ignored targets of the whole "
        "batch (checked against a manual computation). `projector.safetensors` holds the same "
        "projector weights as the full checkpoint under the plain `multi_modal_projector.*` "
        "names. model.safetensors is written by transformers "
        f"{transformers.__version__} save_pretrained, which stores the LEGACY llava-hf key layout "
        "(in memory the module tree is model.language_model / model.vision_tower / "
        "model.multi_modal_projector / lm_head; save_pretrained reverts that to the checkpoint "
        "names); the file's key prefixes are: "
        + ", ".join(f"`{p}`" for p in prefixes) + "."
        + (" Under transformers 5 the vision tower module has no `vision_model.` level, so "
           "the tower's keys are `vision_tower.embeddings.*`, `vision_tower.encoder.*`, ... "
           "(4.x: `vision_tower.vision_model.*`)." if V5 else "")
    )
    return model, dict(input_ids=ids, attention_mask=mask, position_ids=pos, pixel_values=pv,
                       labels=labels), out


def make_llava_state_dict(model, inputs, out, src):
    """`src`'s model saved as a raw state_dict (module-path keys), as training code does.

    config.json, preprocessor_config.json and reference.safetensors are copied from
    `src` (same model, same inputs); model.safetensors = save_file(model.state_dict()).
    """
    name = src + "_state_dict"
    d = fixture_dir(name)
    s = os.path.join(OUT, src)
    for fn in ("config.json", "preprocessor_config.json", "reference.safetensors"):
        shutil.copyfile(os.path.join(s, fn), os.path.join(d, fn))
    sd = model.state_dict()
    tied = [(k, k2) for k, v in sd.items() for k2, v2 in sd.items()
            if k < k2 and v.data_ptr() == v2.data_ptr()]
    assert tied, "llava is tied: lm_head.weight and embed_tokens share storage"
    # save_file refuses tensors that share storage (the tied lm_head / embed_tokens):
    # give every tensor its own copy, so both names are in the file.
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()},
              os.path.join(d, "model.safetensors"))
    m2 = LlavaForConditionalGeneration.from_pretrained(d, attn_implementation="eager")
    m2.eval()
    with torch.no_grad():
        o2 = m2(**inputs)
    assert_close(o2.loss, out.loss, 0.0, f"{name} reload loss")
    masked_close(o2.logits, out.logits, inputs["attention_mask"], 0.0, f"{name} reload logits")
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        meta = f.metadata()
    prefixes = key_prefixes(os.path.join(d, "model.safetensors"), 3)
    tower = "model.vision_tower." + ("" if V5 else "vision_model.")
    DOCS[name] = (
        f"The `{src}` model (same weights, same config.json and preprocessor_config.json, same "
        f"inputs; reference.safetensors is a copy of `{src}`'s) saved the way training scripts "
        "often do: `safetensors.torch.save_file(model.state_dict(), \"model.safetensors\")` "
        f"(metadata {meta!r}), i.e. with the IN-MEMORY module paths of transformers "
        f"{transformers.__version__} instead of the llava-hf checkpoint names "
        "save_pretrained writes: `model.language_model.*` (the Qwen2 base model: "
        "embed_tokens, layers, norm), `" + tower + "*` (the vision tower"
        + (": transformers 5's SiglipVisionModel has no `vision_model.` level" if V5 else "") +
        "), `model.multi_modal_projector.linear_{1,2}.*` and `lm_head.weight`. The embeddings are "
        "tied, yet `lm_head.weight` IS in the file (state_dict() lists both names of the tied "
        "tensor; save_file cannot store shared storage, so each name got its own copy: "
        + ", ".join(f"`{a}` = `{b}`" for a, b in tied) + "). Key prefixes (first three "
        "components): " + ", ".join(f"`{x}`" for x in prefixes) + f"; {len(keys)} tensors. "
        f"transformers {transformers.__version__} from_pretrained loads this directory and "
        "reproduces the reference loss and logits exactly (checked)."
    )


def make_llavas():
    text = eager(Qwen2Config(
        vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=1, eos_token_id=2))
    llava = make_llava(
        "llava", 5001,
        siglip_vision_config(vision_use_head=False), "full", text,
        "LlavaForConditionalGeneration = tiny SigLIP vision tower (as siglip_vision but "
        "vision_use_head FALSE, no `head.*` weights) + projector (gelu, with bias, 32 -> 48 -> 48) "
        "+ tiny Qwen2 text model (vocab 512, hidden 48, intermediate 96, 4 heads / 2 KV heads, "
        "TIED embeddings: no lm_head in the file, rope_theta 1e6; seed 5001). config.json has "
        "nested `vision_config` (siglip_vision_model) and `text_config` (qwen2). "
        "preprocessor_config.json: SiglipImageProcessor 32x32.",
    )
    make_llava_state_dict(*llava, "llava")
    text = eager(Qwen2Config(
        vocab_size=384, hidden_size=40, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
        use_sliding_window=False, bos_token_id=1, eos_token_id=2))
    make_llava(
        "llava_clip", 5002, clip_vision_config(), "default", text,
        "LlavaForConditionalGeneration = tiny CLIP vision tower (as clip_vision) + projector "
        "(32 -> 40 -> 40) + tiny UNTIED Qwen2 text model (vocab 384, hidden 40, intermediate 80, "
        "4 heads / 2 KV heads, head_dim 10, seed 5002); "
        "LLaVA-1.5 style \"default\" strategy drops the CLS token from hidden_states[-2]. "
        "preprocessor_config.json: CLIPImageProcessor 32.",
    )


# --------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def canonical_adapter_config(path, **overrides):
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.update(overrides)
    for k, v in list(cfg.items()):
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            cfg[k] = sorted(v)
    write_json(path, cfg)


def make_lora(name, seed, note, **lora_kw):
    d = fixture_dir(name)
    base = build_qwen2_tied()
    ids, mask, pos = qwen2_tied_inputs()
    with torch.no_grad():
        base_logits = base(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     init_lora_weights=False, **lora_kw)
    model = get_peft_model(base, cfg)
    n_b = 0
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_A" in pname or "lora_B" in pname:
                p.copy_(randn(seed, pname, tuple(p.shape), std=0.1))
                if "lora_B" in pname:
                    n_b += 1
                    assert p.abs().sum() > 0, pname
    assert n_b > 0
    model.eval()
    # peft would probe base_model_name_or_path relative to the cwd while saving:
    # save without it and write the fixed relative path afterwards.
    model.peft_config["default"].base_model_name_or_path = None
    adir = os.path.join(d, "adapter")
    model.save_pretrained(adir, safe_serialization=True)
    os.remove(os.path.join(adir, "README.md"))  # peft's boilerplate model card
    canonical_adapter_config(os.path.join(adir, "adapter_config.json"),
                             base_model_name_or_path="../qwen2_tied")
    with torch.no_grad():
        lora_logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    scaling = next(iter(m.scaling["default"] for m in model.modules()
                        if hasattr(m, "scaling") and isinstance(m.scaling, dict) and m.scaling))
    merged = model.merge_and_unload()
    with torch.no_grad():
        merged_logits = merged(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    md = masked_close(lora_logits, merged_logits, mask, 1e-4, f"{name} merge")
    effect = (lora_logits - base_logits).abs().max().item()
    assert effect > 1e-2, f"{name}: adapter has no visible effect ({effect})"
    with safe_open(os.path.join(adir, "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        for k in keys:
            if "lora_B" in k:
                assert f.get_tensor(k).abs().sum() > 0, k
    save_tensors(os.path.join(d, "reference.safetensors"), {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": pos,
        "logits": lora_logits,
        "logits_merged": merged_logits,
    })
    n_mod = sum(1 for k in keys if "lora_A" in k)
    DOCS[name] = note + (
        f" peft {peft.__version__} LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias=\"none\", "
        "task_type CAUSAL_LM, init_lora_weights=False"
        + "".join(f", {k}={v!r}" for k, v in sorted(lora_kw.items())) +
        f") over `../qwen2_tied` (same base weights and same inputs as qwen2_tied, so the base "
        f"logits are qwen2_tied's `logits`). Scaling = {scaling} "
        "(alpha/r, or alpha/sqrt(r) with use_rslora). After get_peft_model every lora_A/lora_B "
        f"was overwritten with 0.1*N(0,1) (seed {seed}), so B is non-zero (checked). "
        f"{n_mod} adapted Linear modules. `adapter/` is peft's save_pretrained output "
        "(adapter_config.json re-written with sorted keys and sorted string lists; "
        "base_model_name_or_path = \"../qwen2_tied\"; adapter_model.safetensors keys look like "
        "`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` [r, in] and "
        "`...lora_B.weight` [out, r], adapter name stripped). W_eff = W + scaling * B @ A. "
        "`logits` = forward with the adapter active, `logits_merged` = after merge_and_unload() "
        f"(max diff on unmasked positions {md:.2e}); max |logits - base logits| = {effect:.3f}. "
        "Same padding conventions as qwen2_tied."
    )


def make_loras():
    make_lora("lora", 6001, "LoRA on all 7 projection types of every layer.",
              target_modules=TARGETS)
    make_lora("lora_rslora", 6002, "rsLoRA variant (use_rslora=True).",
              target_modules=TARGETS, use_rslora=True)
    make_lora("lora_regex", 6003,
              "Regex-target variant: target_modules is ONE string, which peft matches with "
              "re.fullmatch against each module's full name (here: q_proj and v_proj of layer 1 "
              "only, plus down_proj of every layer).",
              target_modules=r".*\.layers\.1\.self_attn\.(q_proj|v_proj)|.*\.mlp\.down_proj")


V1_TARGETS = ["c_attn", "c_proj", "w1", "w2"]


def v1_adapter_tensors(seed, r):
    """Random (0.1*N) LoRA tensors for every v1 linear, keyed as peft saves them."""
    z = QWEN_V1_SIZES
    h, inter = z["hidden"], z["inter"]
    shapes = {"attn.c_attn": (h, 3 * h), "attn.c_proj": (h, h), "mlp.w1": (h, inter),
              "mlp.w2": (h, inter), "mlp.c_proj": (inter, h)}
    out = {}
    for i in range(z["layers"]):
        for module, (d_in, d_out) in shapes.items():
            prefix = f"base_model.model.transformer.h.{i}.{module}"
            for part, shape in [("lora_A", (r, d_in)), ("lora_B", (d_out, r))]:
                key = f"{prefix}.{part}.weight"
                out[key] = randn(seed, key, shape, std=0.1)
    return out


def make_lora_v1():
    """LoRA in the v1 layout, checked through the equivalent Qwen2 model (see qwen_v1_lora)."""
    seed, r, alpha = 6004, 4, 16
    d = fixture_dir("lora_v1")
    base = build_qwen_v1_equivalent()
    ids, mask, pos = qwen_v1_inputs()
    with torch.no_grad():
        base_logits = base(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    v1 = v1_adapter_tensors(seed, r)
    qwen2 = v1_adapter_to_qwen2(v1)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     init_lora_weights=False, target_modules=qwen2_targets(qwen2))
    model = get_peft_model(base, cfg)
    n_set = 0
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_A" in pname or "lora_B" in pname:
                p.copy_(qwen2[pname.replace(".default.", ".")])
                n_set += 1
    assert n_set == len(qwen2), (n_set, len(qwen2))
    model.eval()
    with torch.no_grad():
        lora_logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        # The fused view: c_attn's update B A equals the stacked q/k/v updates.
        layer0 = model.base_model.model.model.layers[0].self_attn
        stacked = torch.cat([m.lora_B["default"].weight @ m.lora_A["default"].weight
                             for m in [layer0.q_proj, layer0.k_proj, layer0.v_proj]])
        fused = (v1["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]
                 @ v1["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"])
        assert_close(stacked, fused, 1e-6, "fused c_attn update")
    merged = model.merge_and_unload()
    with torch.no_grad():
        merged_logits = merged(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    md = masked_close(lora_logits, merged_logits, mask, 1e-4, "lora_v1 merge")
    effect = (lora_logits - base_logits).abs().max().item()
    assert effect > 1e-2, f"lora_v1: adapter has no visible effect ({effect})"
    adir = os.path.join(d, "adapter")
    os.makedirs(adir)
    save_file(v1, os.path.join(adir, "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg.base_model_name_or_path = None
    cfg.save_pretrained(adir)
    canonical_adapter_config(os.path.join(adir, "adapter_config.json"),
                             base_model_name_or_path="../qwen_v1", inference_mode=True,
                             target_modules=V1_TARGETS)
    save_tensors(os.path.join(d, "reference.safetensors"), {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": pos,
        "logits": lora_logits,
        "logits_merged": merged_logits,
    })
    DOCS["lora_v1"] = (
        "LoRA in the Qwen v1 layout over `../qwen_v1`: adapter_config.json as peft "
        f"{peft.__version__} writes it (r={r}, lora_alpha={alpha}, lora_dropout=0.0, bias none, "
        f"target_modules={V1_TARGETS}: `c_proj` matches both `attn.c_proj` and `mlp.c_proj` "
        f"by suffix; scaling {alpha / r}) and adapter_model.safetensors keyed as peft keys a "
        "QWenLMHeadModel: `base_model.model.transformer.h.N.attn.c_attn.lora_A.weight` [4, 32] "
        "(ONE A shared by query, key and value) and `...c_attn.lora_B.weight` [96, 4], plus "
        "attn.c_proj, mlp.w1, mlp.w2, mlp.c_proj; every tensor 0.1*N(0,1) "
        f"(seed {seed}). trust_remote_code models cannot run here, so the reference comes from "
        "peft over the equivalent Qwen2 model (the one qwen_v1 was converted from, same inputs "
        "as qwen_v1) with an adapter that makes every adapted weight identical "
        "(tools/reference/qwen_v1_lora.py): q_proj, k_proj and v_proj each get lora_A = "
        "c_attn's A and lora_B = rows [0:32], [32:64], [64:96] of c_attn's B, since c_attn "
        "stacks the q, k, v output rows and (B A)[rows] = B[rows] A (checked to 1e-6: the stacked "
        "q/k/v updates equal c_attn's B A); o_proj = attn.c_proj, up_proj = w1, "
        "gate_proj = w2, down_proj = mlp.c_proj, same scaling. With lora_dropout 0 the two "
        "forward passes are the same computation (with dropout, PEFT on v1 would draw one mask "
        "for c_attn where the split model draws three). `logits` = forward with the adapter, "
        "`logits_merged` = after merge_and_unload() (max diff on unmasked positions "
        f"{md:.2e}); max |logits - base logits| = {effect:.3f}. Same padding conventions as "
        "qwen_v1."
    )


# --------------------------------------------------------------------------
# image processor
# --------------------------------------------------------------------------

def synthetic_image(w=320, h=200, seed=7001):
    r = rng_for(seed, "image")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    red = 255.0 * xx / (w - 1)
    green = 255.0 * yy / (h - 1)
    blue = 127.5 + 127.5 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    img = np.stack([red, green, blue], axis=-1)
    # high-frequency checkerboard block and stripes
    checker = ((xx // 2 + yy // 2) % 2) * 255.0
    region = (xx > 200) & (yy < 80)
    img[region] = checker[region][:, None]
    stripes = (xx % 3 == 0) & (yy > 150)
    img[stripes] = [250.0, 10.0, 120.0]
    img += r.normal(0.0, 12.0, size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    im = Image.fromarray(img)
    dr = ImageDraw.Draw(im)
    dr.ellipse([30, 40, 130, 150], fill=(255, 240, 0), outline=(0, 0, 0), width=3)
    dr.rectangle([150, 100, 230, 180], fill=(0, 90, 200))
    dr.polygon([(250, 190), (310, 120), (290, 195)], fill=(20, 200, 60))
    for i in range(0, 320, 11):
        dr.line([(i, 0), (319 - i, 199)], fill=(255, 255, 255), width=1)
    return im


def make_image_processor():
    d = fixture_dir("image_processor")
    big = synthetic_image()
    png = os.path.join(d, "image.png")
    jpg = os.path.join(d, "image.jpg")
    big.save(png, format="PNG", optimize=False, compress_level=9)
    big.save(jpg, format="JPEG", quality=90, optimize=False, progressive=False)

    clip = CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": 224}, resample=3, do_center_crop=True,
        crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True)
    siglip = SiglipImageProcessor(
        do_resize=True, size={"height": 224, "width": 224}, resample=3, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5], do_convert_rgb=True)
    clip_s = clip_small_processor(size=40, crop=32)
    siglip_s = siglip_small_processor(size=32)
    procs = {"clip": clip, "siglip": siglip, "clip_small": clip_s, "siglip_small": siglip_s}
    for k, p in procs.items():
        p.save_pretrained(os.path.join(d, k))

    ref = {}
    for tag, path in (("png", png), ("jpg", jpg)):
        im = load_image(path)
        for pn in ("clip", "siglip"):
            pv = procs[pn](images=im, return_tensors="pt").pixel_values
            assert pv.shape == (1, 3, 224, 224)
            ref[f"{pn}.{tag}.pixel_values"] = pv

    # small variants, cut from the big image (60 wide x 44 high)
    crop = big.crop((180, 40, 240, 84))
    arr = np.asarray(crop, dtype=np.uint8)
    gray = crop.convert("L")
    variants = {}
    variants["gray.png"] = (gray, "PNG", {})
    alpha = Image.fromarray(
        np.tile(np.linspace(0, 255, 60).astype(np.uint8)[None, :], (44, 1)))
    rgba = crop.copy()
    rgba.putalpha(alpha)
    variants["rgba.png"] = (rgba, "PNG", {})
    variants["palette.png"] = (crop.quantize(colors=16, method=Image.Quantize.MEDIANCUT,
                                             dither=Image.Dither.NONE), "PNG", {})
    # left half: small values (< 256), right half: full 16-bit range.
    g8 = np.asarray(gray, dtype=np.uint32)
    noise = rng_for(7002, "g16").integers(0, 257, size=(44, 60)).astype(np.uint32)
    g16 = np.where(np.arange(60)[None, :] < 30, g8, g8 * 257 + noise)
    g16 = np.minimum(g16, 65535).astype(np.uint16)
    assert Image.fromarray(g16).mode == "I;16"
    variants["gray16.png"] = (Image.fromarray(g16), "PNG", {})
    variants["rgb.jpg"] = (crop, "JPEG", {"quality": 90})
    exif = Image.Exif()
    exif[0x0112] = 6
    variants["exif6.jpg"] = (crop, "JPEG", {"quality": 90, "exif": exif.tobytes()})
    modes = {}
    for fname, (im, fmt, kw) in variants.items():
        path = os.path.join(d, "small_" + fname)
        im.save(path, format=fmt, **kw)
        raw = Image.open(path)
        modes[fname] = (raw.mode, raw.size)
        dec = load_image(path)
        rgb = np.asarray(dec, dtype=np.uint8).copy()
        ref[f"small_{fname}.rgb"] = torch.from_numpy(rgb)
        ref[f"clip_small.small_{fname}.pixel_values"] = procs["clip_small"](
            images=dec, return_tensors="pt").pixel_values
        ref[f"siglip_small.small_{fname}.pixel_values"] = procs["siglip_small"](
            images=dec, return_tensors="pt").pixel_values
    assert ref["small_exif6.jpg.rgb"].shape == (60, 44, 3)
    assert torch.equal(ref["small_gray.png.rgb"][..., 0], torch.from_numpy(np.array(gray)))
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    g16_rgb = ref["small_gray16.png.rgb"]
    g16_note = (
        f"max decoded value {int(g16_rgb.max())}, "
        + ("equal to the top byte (v >> 8)" if torch.equal(
            g16_rgb[..., 0], torch.from_numpy((g16 >> 8).astype(np.uint8))) else
           "NOT scaled: Pillow's I;16 -> RGB conversion CLIPS each value to 0..255, so the "
           "left half survives and the right half is almost all 255"
           if torch.equal(g16_rgb[..., 0], torch.from_numpy(np.minimum(g16, 255).astype(np.uint8)))
           else "see the tensor")
    )
    DOCS["image_processor"] = (
        "Synthetic 320x200 (W x H) RGB image (gradients, sinusoid, checkerboard, stripes, noise, "
        "PIL-drawn shapes/lines) saved as `image.png` and `image.jpg` (Pillow, quality 90, "
        "baseline, default 4:2:0 chroma subsampling). Images are opened with "
        "transformers.image_utils.load_image (PIL open -> ImageOps.exif_transpose -> "
        "convert(\"RGB\")) and fed to the SLOW (PIL-based) processors CLIPImageProcessor and "
        "SiglipImageProcessor; their configs are saved as `<proc>/preprocessor_config.json`: "
        "`clip` = standard CLIP (resize shortest_edge 224 bicubic, keeping aspect: 320x200 -> "
        "358x224, center crop 224, rescale 1/255, CLIP mean/std), `siglip` = 224x224 bicubic "
        "(aspect not kept), mean/std 0.5; `clip_small` = shortest_edge 40, crop 32; "
        "`siglip_small` = 32x32. Pixel values are [1,3,H,W] float32, `<proc>.<png|jpg>."
        "pixel_values` for the big image with the 224 configs. Small variants are the 60x44 crop "
        "(x 180..240, y 40..84) of the big image, saved as: `small_gray.png` (mode L), "
        "`small_rgba.png` (RGBA, alpha ramp left->right; load_image's convert(\"RGB\") DROPS alpha, "
        "no compositing), `small_palette.png` (mode P, 16 colours, median cut, no dither), "
        "`small_gray16.png` (16-bit grayscale; columns 0..29 hold values 0..255, columns 30..59 "
        "full-range values gray*257+noise; " + g16_note + "), `small_rgb.jpg` (quality 90), "
        "`small_exif6.jpg` (same pixels as small_rgb.jpg but with EXIF Orientation = 6: stored "
        "60x44, after exif_transpose it is 44 wide x 60 high, i.e. rotated 90 degrees clockwise). "
        "For each: `small_<file>.rgb` = decoded RGB uint8 [H,W,3] after exif transpose/convert, "
        "and `clip_small.small_<file>.pixel_values` / `siglip_small.small_<file>.pixel_values` "
        "[1,3,32,32]. Raw modes/sizes as opened by Pillow: "
        + ", ".join(f"{k}: {m} {s[0]}x{s[1]}" for k, (m, s) in sorted(modes.items())) + ". "
        "JPEG decoders differ slightly (IDCT / chroma upsampling): compare decoded JPEG pixels "
        "with a small tolerance; PNG decodes must be exact."
    )


def check_image_processor_v5():
    """5.x: rebuild image_processor in a temporary directory and require the 4.x bytes.

    The fixture is not duplicated under v5/; the v5 README records the check.
    """
    global OUT
    import tempfile
    ref_dir = os.path.join(REPO, "data", "fixtures", "image_processor")
    if not os.path.isdir(ref_dir):
        raise SystemExit("check failed: data/fixtures/image_processor missing (run the 4.x set first)")
    saved = OUT
    with tempfile.TemporaryDirectory() as tmp:
        OUT = tmp
        try:
            make_image_processor()
        finally:
            OUT = saved
        new_dir = os.path.join(tmp, "image_processor")
        files = sorted(os.path.relpath(os.path.join(r, f), new_dir)
                       for r, _, fs in os.walk(new_dir) for f in fs)
        old = sorted(os.path.relpath(os.path.join(r, f), ref_dir)
                     for r, _, fs in os.walk(ref_dir) for f in fs)
        assert files == old, (files, old)
        for rel in files:
            with open(os.path.join(new_dir, rel), "rb") as a, open(os.path.join(ref_dir, rel), "rb") as b:
                if a.read() != b.read():
                    raise SystemExit(f"check failed: image_processor/{rel} differs under "
                                     f"transformers {transformers.__version__}")
    del DOCS["image_processor"]
    DOCS["image_processor_v5"] = (
        f"image_processor is not duplicated here: with transformers {transformers.__version__} "
        f"CLIPImageProcessor / SiglipImageProcessor resolve to "
        f"{type(CLIPImageProcessor()).__name__} / {type(SiglipImageProcessor()).__name__}, and "
        "rebuilding the fixture with them reproduces every file of `../image_processor/` "
        f"({len(files)} files: images, preprocessor configs, reference.safetensors) byte for "
        "byte (checked by the script on each regeneration)"
    )


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------

def collapse(key):
    parts = key.split(".")
    return ".".join("{N}" if p.isdigit() else p for p in parts)


def describe_safetensors(path):
    lines = []
    with safe_open(path, "pt") as f:
        keys = list(f.keys())
        groups = {}
        order = []
        for k in keys:
            sl = f.get_slice(k)
            dt = sl.get_dtype()
            shape = sl.get_shape()
            ck = collapse(k)
            if ck not in groups:
                groups[ck] = []
                order.append(ck)
            groups[ck].append((k, dt, tuple(shape)))
    for ck in sorted(order):
        entries = groups[ck]
        shapes = sorted({(dt, s) for _, dt, s in entries})
        desc = "; ".join(f"{dt} {list(s)}" for dt, s in shapes)
        if len(entries) == 1 and entries[0][0] == ck:
            lines.append(f"  - `{ck}`: {desc}")
        else:
            lines.append(f"  - `{ck}` (x{len(entries)}): {desc}")
    return lines


ORDER = ["qwen2_tied", "qwen2_untied", "qwen3", "qwen_v1", "qwen2_bf16_sharded", "qwen2_f16",
         "generation", "clip_vision", "clip_full", "siglip_vision", "siglip_full", "projector",
         "llava", "llava_clip", "lora", "lora_rslora", "lora_regex", "lora_v1",
         "image_processor", "qwen2_rope_linear", "qwen2_rope_yarn", "llava_state_dict"]
# Not made under transformers 5: qwen_v1 / lora_v1 are the Qwen v1 (remote code) layout,
# independent of the transformers version; image_processor covers the 4.x slow processors.
V4_ONLY = {"qwen_v1", "lora_v1", "image_processor"}


def compare_with_v4():
    """Doc sentence: which v5 files are byte-identical to their 4.x counterparts."""
    v4 = os.path.join(REPO, "data", "fixtures")
    same_ref, diff_ref, same_w, diff_w = [], [], [], []
    for name in ORDER:
        if name in V4_ONLY or not os.path.isdir(os.path.join(v4, name)):
            continue
        for fn in sorted(os.listdir(os.path.join(OUT, name))):
            if not fn.endswith(".safetensors") or not os.path.exists(os.path.join(v4, name, fn)):
                continue
            with open(os.path.join(OUT, name, fn), "rb") as a, open(os.path.join(v4, name, fn), "rb") as b:
                same = a.read() == b.read()
            if fn == "reference.safetensors":
                (same_ref if same else diff_ref).append(name)
            elif fn != "projector.safetensors":
                (same_w if same else diff_w).append(f"{name}/{fn}")
    text = (f"Byte-identical to the 4.x set: {len(same_ref)} of {len(same_ref) + len(diff_ref)} "
            "reference.safetensors files (transformers 5 computes the same numbers"
            + (f"; differing: {', '.join(diff_ref)}" if diff_ref else "") + ")")
    text += ("; weight files that differ from 4.x (key layout): "
             + ", ".join(f"`{x}`" for x in sorted(set(x.split('/')[0] for x in diff_w))) + ".")
    return text


def write_readme():
    lines = [
        "# Reference fixtures",
        "",
        "Generated by `tools/reference/make_fixtures.py` (run `bash tools/reference/regenerate.sh`); "
        "do not edit by hand. Versions: "
        f"torch {torch.__version__.split('+')[0]}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, numpy {np.__version__}, Pillow {Image.__version__}.",
        "",
        "All models are tiny and randomly initialised from fixed seeds (numpy PCG64, one stream per "
        "fixture seed and tensor name); nothing comes from the Hub. Every parameter, including "
        "norm weights (1+0.1*N(0,1)) and biases (0.1*N(0,1)), is random, so an implementation "
        "that ignores one of them fails. Model directories use the Hugging Face layout "
        "(`config.json` + `model.safetensors` from save_pretrained, eager attention, float32 "
        "unless stated). Reference outputs are in `reference.safetensors` (float32 activations, "
        "int64 ids/masks, uint8 images). Forward passes ran on CPU, single-threaded, float32; "
        "suggested tolerance for reimplementations ~1e-4 absolute on logits.",
        "",
        "Conventions shared by the text fixtures: batch 2, sequence length 12; sample 0 is full "
        "length, sample 1 is LEFT-padded with 4 pad tokens (id 0, attention_mask 0); "
        "`position_ids` = cumsum(attention_mask)-1 with pads set to 1 were passed explicitly. "
        "Compare logits / hidden states only where attention_mask == 1: values at padded "
        "positions are whatever HF computed there.",
        "",
        f"config.json files written by transformers {transformers.__version__} name the weight "
        "dtype `dtype` (older checkpoints on the Hub say `torch_dtype`; loaders should accept "
        "both). Model directories written by save_pretrained also contain a "
        "`generation_config.json` (bos/eos ids only). Hand-written JSON (qwen_v1/config.json, "
        "projector/config.json, generation/generation.json, lora*/adapter/adapter_config.json) "
        "uses sorted keys.",
        "",
        "Regenerate with `bash tools/reference/regenerate.sh` (creates tools/reference/.venv if "
        "missing, installs the pinned tools/reference/requirements.txt, runs the script). On the "
        "same platform two runs are byte-identical (every file's sha256). Weights and inputs "
        "come from numpy and are platform independent; float32 results of forward passes may "
        "differ in the last bits on a CPU with different SIMD kernels.",
        "",
    ]
    if V5:
        lines[2] = lines[2].replace("Generated by", "The transformers 5 set, generated by")
        lines[6] = lines[6].replace("sequence length 12;", "sequence length 12 (qwen2_rope_linear: 40, "
                                    "qwen2_rope_yarn: 60);")
        lines[8] = lines[8].replace("(bos/eos ids only)", "(bos/eos ids, and under 5.x also "
                                    "output_attentions / output_hidden_states false, use_cache "
                                    "true)").replace("(qwen_v1/config.json, ", "(")
        lines[-2] = (
            "Regenerate with `bash tools/reference/regenerate.sh` (it regenerates data/fixtures/ "
            "with tools/reference/.venv + requirements.txt (transformers 4.x), then this "
            "directory with tools/reference/.venv5 + requirements5.txt). On the same platform two "
            "runs are byte-identical (every file's sha256).")
        lines += [
            "This directory (`data/fixtures/v5/`) holds the same fixtures as `data/fixtures/` "
            "(same names, file names, reference tensor names, inputs AND weights: random values "
            "are keyed by the transformers 4.x parameter names), but every model directory is "
            f"what transformers {transformers.__version__} save_pretrained writes, i.e. real "
            "checkpoints as saved today. Differences from the 4.x set: config.json has "
            "`rope_parameters: {rope_theta, rope_type, ...}` instead of top-level `rope_theta` / "
            "`rope_scaling`, and `transformers_version` 5.x; CLIPVisionModel / "
            "SiglipVisionModel checkpoints have no `vision_model.` key prefix and LLaVA's vision "
            "tower keys are `vision_tower.embeddings.*` etc. (no `vision_model.` level). "
            "CLIPModel / SiglipModel (dual tower) weight files keep `vision_model.*` / "
            "`text_model.*`. " + compare_with_v4() + " "
            "Not generated here: qwen_v1 and lora_v1 (Qwen v1 remote-code layout, independent of "
            "the transformers version) and image_processor (" + DOCS["image_processor_v5"] + "); "
            "hand-written JSON (projector/config.json, generation/generation.json, "
            "lora*/adapter/adapter_config.json) is the same as in the 4.x set.",
            "",
        ]
    else:
        lines += [
            "`data/fixtures/v5/` holds the same fixtures written by transformers 5.x (see its "
            "README.md). The qwen2_rope_* fixtures use longer sequences (40 and 60 tokens, see "
            "their sections).",
            "",
        ]
    for name in ORDER:
        if V5 and name in V4_ONLY:
            continue
        d = os.path.join(OUT, name)
        lines.append(f"## `{name}/`")
        lines.append("")
        lines.append(DOCS[name])
        lines.append("")
        lines.append("Files:")
        lines.append("")
        for root, dirs, files in sorted(os.walk(d)):
            dirs.sort()
            for fn in sorted(files):
                p = os.path.join(root, fn)
                rel = os.path.relpath(p, d)
                lines.append(f"- `{rel}` ({os.path.getsize(p)} bytes)")
                if fn.endswith(".safetensors"):
                    lines.extend(describe_safetensors(p))
        lines.append("")
    with open(os.path.join(OUT, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    steps = [make_qwen2_tied, make_qwen2_untied, make_qwen3, make_qwen_v1, make_qwen2_lowp,
             make_generation, make_clip, make_siglip, make_projector, make_llavas, make_loras,
             make_lora_v1, make_image_processor, make_qwen2_ropes]
    if V5:
        steps = [s for s in steps if s not in (make_qwen_v1, make_lora_v1, make_image_processor)]
        steps.append(check_image_processor_v5)
    for step in steps:
        print(f"[make_fixtures] {step.__name__}", flush=True)
        step()
    write_readme()
    print("[make_fixtures] done", flush=True)


if __name__ == "__main__":
    main()
