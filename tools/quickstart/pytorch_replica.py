"""The quickstart's model and recipe in PyTorch (transformers' SiglipVisionModel and
Qwen2ForCausalLM), to tell whether a training result comes from the recipe or from Burn.

Same data (the bundled train split plus generated scenes), sizes, optimizer (AdamW, projector
at its own learning rate, warmup + cosine, clipping at 1.0) and held-out exact match, scored
by teacher forcing (every answer token, `<|im_end|>` included, must be the argmax: what greedy
decoding returns). `--pretrain N` first trains the tower for N steps to name what is at each
of the five places (the quickstart's stage 1) and then freezes it.

    cargo run --release --example make_sample_data -- --out /tmp/extra --seed 1 --train 16000 --heldout 0
    tools/reference/.venv/bin/python tools/quickstart/pytorch_replica.py --extra /tmp/extra
    tools/reference/.venv/bin/python tools/quickstart/pytorch_replica.py --extra /tmp/extra --pretrain 1000
"""
import argparse, json, math, random, time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from tokenizers import Tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

p = argparse.ArgumentParser()
p.add_argument("--data", default="data/sample")
p.add_argument("--extra", required=True, help="a make_sample_data folder of generated scenes")
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--pretrain", type=int, default=0)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--projector-lr", type=float, default=2e-3)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--init-std", type=float, default=128 ** -0.5)
a = p.parse_args()
torch.manual_seed(0)
random.seed(0)
torch.set_num_threads(2)
SIDE, PATCH, SHUFFLE, HIDDEN, VIT = 64, 8, 2, 128, 96
TOKENS = (SIDE // PATCH // SHUFFLE) ** 2
PLACES = ["top", "left", "center", "right", "bottom"]
COLORS = ["red", "green", "blue", "yellow"]
KINDS = ["circle", "square", "triangle"]
tok = Tokenizer.from_file("data/tokenizer/qwen2/tokenizer.json")
IMAGE, END = tok.token_to_id("<|image_pad|>"), tok.token_to_id("<|im_end|>")


def pixels(path):
    im = Image.open(path).convert("RGB").resize((SIDE, SIDE), Image.BICUBIC)
    x = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy((x - 0.5) / 0.5).permute(2, 0, 1).contiguous()


def enc(text):
    return tok.encode(text, add_special_tokens=False).ids


def encode(conv):
    """ChatML ids, labels (answers and <|im_end|>) and (kind, answer start, length)."""
    ids, labels, answers = [], [], []
    for q, ans in zip(conv[::2], conv[1::2]):
        text = q["value"].replace("<image>", "").strip()
        head = enc("<|im_start|>user\n")
        if "<image>" not in q["value"]:
            user = enc(text)
        elif q["value"].startswith("<image>"):
            user = [IMAGE] * TOKENS + enc("\n" + text)
        else:
            user = enc(text + "\n") + [IMAGE] * TOKENS
        prompt = head + user + enc("<|im_end|>\n<|im_start|>assistant\n")
        ids += prompt
        labels += [-100] * len(prompt)
        target = enc(ans["value"]) + [END]
        answers.append((" ".join(text.split()[:2]), len(ids), len(target)))
        ids += target
        labels += target
        ids += enc("\n")
        labels.append(-100)
    return ids, labels, answers


def places(scene_caption):
    """Place classes from the second Chinese caption: 0 empty, else 1 + colour * 3 + kind."""
    zh_places, zh_colors, zh_kinds = ["上边", "左边", "中间", "右边", "下边"], ["红色", "绿色", "蓝色", "黄色"], ["圆形", "正方形", "三角形"]
    out = [0] * 5
    for clause in scene_caption.rstrip("。").split("，"):
        place, rest = clause.split("有一个")
        color, kind = rest.split("的")
        out[zh_places.index(place)] = 1 + zh_colors.index(color) * 3 + zh_kinds.index(kind)
    return out


def read(folder, split, limit=None):
    records = json.load(open(f"{folder}/llava_{split}.json"))[:limit]
    captions = {r["image_id"]: r["caption"][1] for r in json.load(open(f"{folder}/aic_{split}.json"))}
    return [(*encode(r["conversations"]), pixels(f"{folder}/images/{r['image']}"), places(captions[r["image"]])) for r in records]


start = time.time()
held = read(a.data, "heldout")
# As the quickstart: no generated scene repeats a held-out layout.
held_layouts = {tuple(s[4]) for s in held}
train = [s for s in read(a.data, "train") + read(a.extra, "train") if tuple(s[4]) not in held_layouts]
used = sorted({i for s in train + held for i in s[0]} | {tok.token_to_id("<|endoftext|>")})
compact = {u: i for i, u in enumerate(used)}
PAD, IMG = compact[tok.token_to_id("<|endoftext|>")], compact[IMAGE]
train = [([compact[i] for i in s[0]], [compact[l] if l >= 0 else -100 for l in s[1]], *s[2:]) for s in train]
held = [([compact[i] for i in s[0]], [compact[l] if l >= 0 else -100 for l in s[1]], *s[2:]) for s in held]
print(f"{len(train)} train, {len(held)} held-out conversations, vocabulary {len(used)} ({time.time() - start:.0f} s)")


class Vlm(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision = SiglipVisionModel(SiglipVisionConfig(
            hidden_size=VIT, intermediate_size=4 * VIT, num_hidden_layers=2, num_attention_heads=4,
            image_size=SIDE, patch_size=PATCH, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6))
        self.llm = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=len(used), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
            num_attention_heads=a.heads, num_key_value_heads=a.heads // 2, max_position_embeddings=512,
            rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, initializer_range=a.init_std))
        self.projector = nn.Linear(VIT * SHUFFLE ** 2, HIDDEN, bias=False)
        nn.init.normal_(self.projector.weight, std=0.01)

    def features(self, pix):
        return self.vision(pixel_values=pix, output_hidden_states=True).hidden_states[-1]

    def forward(self, ids, mask, pix):
        f = self.features(pix)
        b, n, d = f.shape
        side = math.isqrt(n) // SHUFFLE
        f = f.reshape(b, side, SHUFFLE, side, SHUFFLE, d).permute(0, 1, 3, 2, 4, 5).reshape(b, side * side, -1)
        emb = self.llm.get_input_embeddings()(ids)
        emb = emb.masked_scatter((ids == IMG).unsqueeze(-1), self.projector(f).reshape(-1, HIDDEN))
        return self.llm(inputs_embeds=emb, attention_mask=mask).logits


def batch(samples, blank=False):
    length = max(len(s[0]) for s in samples)
    ids = torch.full((len(samples), length), PAD)
    labels = torch.full((len(samples), length), -100)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    for i, s in enumerate(samples):
        ids[i, :len(s[0])], labels[i, :len(s[0])], mask[i, :len(s[0])] = torch.tensor(s[0]), torch.tensor(s[1]), 1
    pix = torch.stack([s[3] for s in samples])
    return ids, mask, torch.zeros_like(pix) if blank else pix, labels


def schedule(step, steps):
    warm = max(1, int(0.05 * steps))
    return (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def fit(params_by_lr, steps, loss_of):
    groups = [dict(params=ps, lr=lr, base=lr, weight_decay=wd) for ps, lr, wd in params_by_lr]
    opt = torch.optim.AdamW(groups, eps=1e-8)
    order = []
    for step in range(steps):
        if len(order) < a.batch:
            order += random.sample(range(len(train)), len(train))
        chosen, order = order[:a.batch], order[a.batch:]
        loss = loss_of([train[i] for i in chosen])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        for g in opt.param_groups:
            g["lr"] = g["base"] * schedule(step, steps)
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)


model = Vlm()
if a.pretrain:
    head = nn.Linear(VIT, 5 * 13)
    def place_loss(samples):
        logits = head(model.features(torch.stack([s[3] for s in samples])).mean(1)).view(-1, 13)
        return nn.functional.cross_entropy(logits, torch.tensor([s[4] for s in samples]).view(-1))
    fit([(list(model.vision.parameters()) + list(head.parameters()), a.lr, 0.01)], a.pretrain, place_loss)
    model.vision.requires_grad_(False)


def vlm_loss(samples):
    ids, mask, pix, labels = batch(samples)
    logits = model(ids, mask, pix)
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
fit([([q for n, q in named if n.startswith("projector")], a.projector_lr, 0.01),
     ([q for n, q in named if not n.startswith("projector") and q.ndim >= 2], a.lr, 0.01),
     ([q for n, q in named if not n.startswith("projector") and q.ndim < 2], a.lr, 0.0)], a.steps, vlm_loss)


@torch.no_grad()
def exact_match(samples, blank):
    model.eval()
    right = {}
    for i in range(0, len(samples), 32):
        chunk = samples[i:i + 32]
        ids, mask, pix, _ = batch(chunk, blank)
        predicted = model(ids, mask, pix).argmax(-1)
        for row, s in enumerate(chunk):
            for kind, begin, n in s[2]:
                ok = bool((predicted[row, begin - 1:begin - 1 + n] == ids[row, begin:begin + n]).all())
                counts = right.setdefault(kind, [0, 0])
                counts[0] += ok
                counts[1] += 1
    total = [sum(v[i] for v in right.values()) for i in (0, 1)]
    return f"{total[0]}/{total[1]} = {100 * total[0] / total[1]:.1f}% " + str({k: f"{v[0]}/{v[1]}" for k, v in right.items()})


print("held-out exact match:", exact_match(held, False))
print("with the image blanked:", exact_match(held, True))
