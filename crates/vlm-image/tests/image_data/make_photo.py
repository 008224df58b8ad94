"""Writes photo640.jpg and photo640.json (used by tests/decode_variants.rs and the preprocess bench).

Run with the reference environment (Pillow 13.0.0, numpy 2.4.6, see tools/reference/):

    tools/reference/.venv/bin/python crates/vlm-image/tests/image_data/make_photo.py

A 640 x 480 photo-like JPEG (the COCO case: baseline, 4:2:0, quality 85): blurred noise at a few
scales (textures, soft edges), shapes and fine grain. Its Pillow outputs are too big to commit
as raw pixels, so photo640.json holds their 64-bit FNV-1a hashes: the decoded RGB bytes
(open -> exif_transpose -> convert("RGB")) and `Image.resize` of them to CLIP's 298 x 224
(bicubic) and SigLIP's 224 x 224 (bicubic and bilinear). Deterministic.
"""

import io
import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 640, 480


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def photo():
    rng = np.random.default_rng(20261206)
    acc = np.zeros((H, W, 3), np.float64)
    for scale, amp in [(64, 90.0), (16, 40.0), (4, 20.0)]:
        small = rng.integers(0, 256, (H // scale + 1, W // scale + 1, 3)).astype(np.uint8)
        layer = Image.fromarray(small, "RGB").resize((W, H), Image.BICUBIC)
        layer = layer.filter(ImageFilter.GaussianBlur(scale / 4))
        acc += (np.asarray(layer, np.float64) - 128.0) * amp / 128.0
    acc += 128.0 + rng.normal(0.0, 4.0, acc.shape)
    im = Image.fromarray(np.clip(acc, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    d.ellipse((120, 90, 330, 300), fill=(220, 60, 40))
    d.rectangle((400, 250, 600, 440), fill=(30, 80, 200))
    d.line((0, 470, 639, 10), fill=(240, 240, 230), width=3)
    return im.filter(ImageFilter.SMOOTH)


def main():
    buf = io.BytesIO()
    photo().save(buf, "JPEG", quality=85)
    data = buf.getvalue()
    with open(os.path.join(HERE, "photo640.jpg"), "wb") as f:
        f.write(data)
    rgb = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    refs = {
        "file": "photo640.jpg",
        "width": rgb.width,
        "height": rgb.height,
        "decoded_fnv1a64": fnv1a64(rgb.tobytes()),
        "resized": [],
    }
    for w, h, f in [(298, 224, 3), (224, 224, 3), (224, 224, 2)]:
        out = rgb.resize((w, h), f)
        refs["resized"].append({"width": w, "height": h, "filter": f, "fnv1a64": fnv1a64(out.tobytes())})
    with open(os.path.join(HERE, "photo640.json"), "w") as f:
        json.dump(refs, f, indent=1, sort_keys=True)
        f.write("\n")


main()
