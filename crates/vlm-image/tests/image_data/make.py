"""Regenerates crates/vlm-image/tests/image_data/ (used by tests/decode_variants.rs).

Run with the reference environment (Pillow 13.0.0, numpy 2.4.6, see tools/reference/):

    tools/reference/.venv/bin/python crates/vlm-image/tests/image_data/make.py

Writes small JPEG / PNG files covering the decoder paths the fixture images in
data/fixtures/image_processor do not (progressive, restart markers, every chroma subsampling
libjpeg-turbo upsamples differently, odd sizes, RGB and CMYK JPEGs, quality extremes, EXIF and
XMP orientations, low / high bit-depth and transparent PNG layouts, Adam7 interlacing), with
the RGB pixels transformers' `load_image` gets from Pillow for each (open -> exif_transpose ->
convert("RGB"); raw [H, W, 3] uint8 arrays concatenated in pillow_decoded.rgb), plus Pillow
`Image.resize` outputs of resize_input.rgb for every filter on a few size pairs
(pillow_resized.rgb). manifest.json gives each array's size and byte offset. Deterministic: two
runs give identical bytes.
"""

import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(20240611)

MANIFEST = {"decode": [], "resize": []}
# Reference pixels, concatenated; the manifest gives each array's byte offset.
DECODED = bytearray()
RESIZED = bytearray()


def base_rgb(w, h):
    """Gradients, stripes, noise and a few PIL-drawn shapes."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = xx * 255 // max(w - 1, 1)
    g = yy * 255 // max(h - 1, 1)
    b = ((xx // 3 + yy // 2) % 2) * 200 + 20
    a = np.stack([r, g, b], -1).astype(np.int32)
    a += RNG.integers(-20, 21, a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    if w < 8 or h < 8:
        return im
    d = ImageDraw.Draw(im)
    d.ellipse((w // 5, h // 5, w // 2, h // 2), fill=(250, 30, 40))
    d.line((0, h - 1, w - 1, 0), fill=(10, 240, 60), width=2)
    d.rectangle((w * 2 // 3, h // 3, w - 2, h - 3), outline=(20, 20, 250))
    return im


def add_decode(name, data, note):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    im = Image.open(io.BytesIO(data))
    mode = im.mode
    rgb = ImageOps.exif_transpose(im).convert("RGB")
    offset = len(DECODED)
    DECODED.extend(np.asarray(rgb).tobytes())
    MANIFEST["decode"].append(
        {
            "file": name,
            "width": rgb.width,
            "height": rgb.height,
            "offset": offset,
            "pil_mode": mode,
            "note": note,
        }
    )


def jpeg(im, **kw):
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def patch_sof_sampling(data, component, factors):
    """Rewrites one component's sampling byte in the SOF0 header."""
    i = data.index(b"\xff\xc0")
    pos = i + 4 + 6 + 3 * component + 1
    return data[:pos] + bytes([factors]) + data[pos + 1 :]


# ----- JPEG -----------------------------------------------------------------------------------
rgb = base_rgb(37, 29)
add_decode("base420.jpg", jpeg(rgb, quality=90), "baseline 4:2:0, odd size")
add_decode("base422.jpg", jpeg(rgb, quality=90, subsampling=1), "baseline 4:2:2 (h2v1 fancy)")
add_decode("base444.jpg", jpeg(rgb, quality=90, subsampling=0), "baseline 4:4:4")
add_decode("prog420.jpg", jpeg(rgb, quality=85, progressive=True), "progressive 4:2:0")
add_decode(
    "prog444.jpg", jpeg(rgb, quality=85, progressive=True, subsampling=0), "progressive 4:4:4"
)
add_decode("optimized.jpg", jpeg(rgb, quality=75, optimize=True), "optimized Huffman tables")
add_decode("q100.jpg", jpeg(rgb, quality=100, subsampling=0), "quality 100")
add_decode("q5.jpg", jpeg(rgb, quality=5), "quality 5")
add_decode(
    "restart_blocks.jpg", jpeg(rgb, quality=90, restart_marker_blocks=3), "DRI every 3 MCUs"
)
add_decode(
    "restart_prog.jpg",
    jpeg(rgb, quality=90, progressive=True, restart_marker_rows=1),
    "progressive with restart markers",
)
add_decode("keep_rgb.jpg", jpeg(rgb, quality=90, keep_rgb=True), "RGB colour space (Adobe)")
add_decode("gray.jpg", jpeg(rgb.convert("L"), quality=90), "grayscale")
add_decode(
    "gray_prog.jpg", jpeg(rgb.convert("L"), quality=90, progressive=True), "grayscale progressive"
)
add_decode("tiny3x5.jpg", jpeg(base_rgb(3, 5), quality=90), "4:2:0 with 2-sample chroma rows")
add_decode("one_pixel.jpg", jpeg(base_rgb(1, 1), quality=90), "1x1")
sq = base_rgb(32, 32)
add_decode(
    "h1v2.jpg",
    patch_sof_sampling(jpeg(sq, quality=90, subsampling=1), 0, 0x12),
    "4:4:0 (h1v2 fancy): a 4:2:2 file with luma factors patched to 1x2",
)
add_decode(
    "h4v1.jpg",
    patch_sof_sampling(jpeg(sq, quality=90, subsampling=2), 0, 0x41),
    "4:1:1 (int_upsample): a 4:2:0 file with luma factors patched to 4x1",
)
add_decode("cmyk.jpg", jpeg(rgb.convert("CMYK"), quality=90), "CMYK (fallback decoder)")
for o in range(2, 9):
    exif = Image.Exif()
    exif[0x0112] = o
    add_decode(f"orient{o}.jpg", jpeg(rgb, quality=90, exif=exif), f"EXIF orientation {o}")
xmp = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)
add_decode("xmp_orient6.jpg", jpeg(rgb, quality=90, xmp=xmp), "XMP tiff:Orientation 6, no EXIF")


# ----- PNG (hand-written chunks for layouts Pillow cannot save) --------------------------------
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(width, height, color_type, depth, samples, extra=b"", interlace=False):
    """samples: [H, W, C] integer array of raw sample values (or palette indices)."""

    def pack_rows(a):
        out = b""
        for row in a:
            flat = row.reshape(-1)
            if depth == 16:
                data = flat.astype(">u2").tobytes()
            elif depth == 8:
                data = flat.astype(np.uint8).tobytes()
            else:
                bits = "".join(format(int(v), f"0{depth}b") for v in flat)
                bits += "0" * (-len(bits) % 8)
                data = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
            out += b"\x00" + data
        return out

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += pack_rows(sub)
    else:
        raw = pack_rows(samples)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 1 if interlace else 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + extra
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


W, H = 23, 17
gray8 = np.asarray(base_rgb(W, H).convert("L")).astype(np.int64)[..., None]
rgb8 = np.asarray(base_rgb(W, H)).astype(np.int64)
alpha8 = np.tile(np.linspace(0, 255, W).astype(np.int64), (H, 1))[..., None]
noise16 = RNG.integers(0, 256, (H, W, 1))
add_decode("gray1.png", png(W, H, 0, 1, gray8 >> 7), "1-bit grayscale")
add_decode("gray2.png", png(W, H, 0, 2, gray8 >> 6), "2-bit grayscale")
add_decode("gray4.png", png(W, H, 0, 4, gray8 >> 4), "4-bit grayscale")
add_decode(
    "gray8_trns.png",
    png(W, H, 0, 8, gray8, chunk(b"tRNS", struct.pack(">H", int(gray8[0, 0, 0])))),
    "8-bit grayscale with tRNS",
)
g16 = gray8 * 257 + noise16
add_decode(
    "gray16_trns.png",
    png(W, H, 0, 16, g16, chunk(b"tRNS", struct.pack(">H", int(g16[0, 0, 0])))),
    "16-bit grayscale with tRNS (Pillow I;16: clipped to 255)",
)
gray16_low = gray8 + (np.arange(W)[None, :, None] % 2) * 300  # straddles 255
add_decode("gray16_low.png", png(W, H, 0, 16, gray16_low), "16-bit grayscale, values 0..555")
add_decode("la8.png", png(W, H, 4, 8, np.concatenate([gray8, alpha8], -1)), "8-bit gray+alpha")
add_decode(
    "la16.png",
    png(W, H, 4, 16, np.concatenate([g16, alpha8 * 257], -1)),
    "16-bit gray+alpha (Pillow LA;16B: high byte)",
)
rgb16 = rgb8 * 257 + RNG.integers(0, 256, rgb8.shape)
add_decode("rgb16.png", png(W, H, 2, 16, rgb16), "16-bit RGB (Pillow RGB;16B: high byte)")
add_decode(
    "rgba16.png",
    png(W, H, 6, 16, np.concatenate([rgb16, alpha8 * 257], -1)),
    "16-bit RGBA",
)
add_decode(
    "rgb8_trns.png",
    png(W, H, 2, 8, rgb8, chunk(b"tRNS", struct.pack(">HHH", *map(int, rgb8[0, 0])))),
    "8-bit RGB with tRNS",
)
quantized = base_rgb(W, H).quantize(16, dither=Image.Dither.NONE)
pal = np.asarray(quantized).astype(np.int64)[..., None]
palette = quantized.getpalette()[: 16 * 3]
add_decode(
    "pal4_trns.png",
    png(
        W,
        H,
        3,
        4,
        pal,
        chunk(b"PLTE", bytes(palette)) + chunk(b"tRNS", bytes(range(0, 256, 16))),
    ),
    "4-bit palette with tRNS",
)
add_decode(
    "pal1.png",
    png(W, H, 3, 1, pal % 2, chunk(b"PLTE", bytes([10, 20, 30, 200, 150, 100]))),
    "1-bit palette",
)
add_decode("rgb_adam7.png", png(W, H, 2, 8, rgb8, interlace=True), "Adam7-interlaced RGB")
exif = Image.Exif()
exif[0x0112] = 8
buf = io.BytesIO()
base_rgb(W, H).save(buf, "PNG", exif=exif)
add_decode("exif_orient8.png", buf.getvalue(), "PNG eXIf chunk, orientation 8")


# ----- Pillow resize -------------------------------------------------------------------------
src = base_rgb(37, 29)
with open(os.path.join(HERE, "resize_input.rgb"), "wb") as f:
    f.write(np.asarray(src).tobytes())
MANIFEST["resize_input"] = {"file": "resize_input.rgb", "width": 37, "height": 29}
for ow, oh in [(16, 12), (50, 40), (30, 8), (80, 7), (7, 80), (37, 10), (12, 29), (1, 1)]:
    for f in range(6):
        offset = len(RESIZED)
        RESIZED.extend(np.asarray(src.resize((ow, oh), f)).tobytes())
        MANIFEST["resize"].append({"width": ow, "height": oh, "filter": f, "offset": offset})

with open(os.path.join(HERE, "pillow_decoded.rgb"), "wb") as f:
    f.write(DECODED)
with open(os.path.join(HERE, "pillow_resized.rgb"), "wb") as f:
    f.write(RESIZED)
with open(os.path.join(HERE, "manifest.json"), "w") as f:
    json.dump(MANIFEST, f, indent=1, sort_keys=True)
    f.write("\n")
print(len(MANIFEST["decode"]), "decode cases,", len(MANIFEST["resize"]), "resize cases")
