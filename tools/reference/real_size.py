#!/usr/bin/env python3
"""Real-size check of the Rust forward pass against Hugging Face transformers.

Not run in CI: it needs a few GB of disk and RAM and minutes of CPU. Run it as

    bash tools/reference/real_size.sh [--models qwen,clip,siglip] [--reuse] [--no-rust] ...

For each model, at FULL size, built from the published configs committed under
data/configs/ (see data/configs/README.md):

    qwen    Qwen/Qwen2.5-0.5B-Instruct          Qwen2ForCausalLM
    clip    openai/clip-vit-large-patch14-336   CLIPVisionModel (vision tower only)
    siglip  google/siglip-so400m-patch14-384    SiglipVisionModel (vision tower only)

and for each serialisation style

    v4  written by transformers 4.x  (tools/reference/.venv,  transformers 4.57.6)
    v5  written by transformers 5.x  (tools/reference/.venv5, transformers 5.25.0)

the `run` command

1. builds target/real_size/<model>-<style>/ with random weights (numpy PCG64 seeded per
   tensor name, so both styles hold the SAME numbers: weights and biases 0.02*N(0,1), norm
   weights 1+0.02*N(0,1)) and saves it with that version's own save_pretrained (float32
   safetensors; the towers also get preprocessor_config.json from the image processor's
   save_pretrained). The v5 tower files name tensors without the `vision_model.` prefix:
   that difference is the point of having both styles. With --reuse, a folder that was
   completely built before (it holds real_size_build.json) is kept;
2. runs the transformers reference in a child process of that style's interpreter on fixed
   inputs (target/real_size/inputs/): Qwen, one sequence of 512 random token ids -> logits;
   towers, one image of random pixel_values of the processor's size -> hidden_states[-2]
   (LLaVA's vision_feature_layer) and hidden_states[-1], eager attention, float32;
3. runs our program (target/release/examples/forward, or --forward PATH) on the same inputs
   in a child process: `--llm DIR --ids FILE` (logits) or `--vision DIR --pixels FILE
   --feature-layer N --feature-strategy full` (image_features), once per layer;
4. prints one table (model, style, output, max |diff| vs transformers, wall s and peak RSS
   MB of each side) and writes it to target/real_size/report.json (the last run's models
   only), with the v4-vs-v5 difference of the transformers outputs (0: same weights).

Logs of every child are in target/real_size/logs/. The folders take ~9 GB in all; the
output tensors are deleted after comparison unless --keep-outputs. On a 2-core CPU a run
of the Python side (build + reference, 3 models x 2 styles) takes about 3 minutes.

Wall time and peak RSS are those of each child process (os.wait4's rusage of that child),
so they include interpreter start-up and model loading; the reference child also reports
its load and forward seconds separately. Only one model is in memory at a time; peak RSS
stays far under 16 GB (the largest step, building or running Qwen, is a few GB).

Internal sub-commands (run by `run` in the right interpreter): `build`, `reference`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIGS = REPO / "data" / "configs"
DEFAULT_OUT = REPO / "target" / "real_size"
DEFAULT_FORWARD = REPO / "target" / "release" / "examples" / "forward"
VENVS = {"v4": HERE / ".venv", "v5": HERE / ".venv5"}
MARKER = "real_size_build.json"

MODELS = {
    "qwen": {
        "hub_id": "Qwen/Qwen2.5-0.5B-Instruct",
        "config_dir": "Qwen--Qwen2.5-0.5B-Instruct",
        "kind": "llm",
    },
    "clip": {
        "hub_id": "openai/clip-vit-large-patch14-336",
        "config_dir": "openai--clip-vit-large-patch14-336",
        "kind": "clip",
    },
    "siglip": {
        "hub_id": "google/siglip-so400m-patch14-384",
        "config_dir": "google--siglip-so400m-patch14-384",
        "kind": "siglip",
    },
}
SEQ_LEN = 512
INPUT_SEED = 20240611
WEIGHT_STD = 0.02
# Token ids are drawn below the first special token of the Qwen2 vocabulary.
QWEN_MAX_ID = 151643

CHILD_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


# --------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_size(model: str) -> tuple[int, int]:
    """(height, width) of the pixel_values the model's image processor produces."""
    pre = json.loads((CONFIGS / MODELS[model]["config_dir"] / "preprocessor_config.json").read_text())
    size = pre.get("crop_size") if pre.get("do_center_crop") else pre.get("size")
    if isinstance(size, int):
        return size, size
    if "height" in size:
        return size["height"], size["width"]
    return size["shortest_edge"], size["shortest_edge"]


def run_measured(cmd: list[str], log_path: Path, env: dict | None = None) -> dict:
    """Runs cmd as a child, stdout+stderr to log_path; returns rc, wall s, peak RSS MB."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(os.environ)
    child_env.update(CHILD_ENV)
    if env:
        child_env.update(env)
    with log_path.open("w") as handle:
        handle.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        handle.flush()
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=handle, stderr=subprocess.STDOUT,
                                env=child_env, cwd=REPO)
        # wait4 gives the rusage of this child alone (RUSAGE_CHILDREN would be a running max).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux.
    return {"rc": proc.returncode, "wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "log": str(log_path.relative_to(REPO)) if log_path.is_relative_to(REPO) else str(log_path)}


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- build (child)


def transformers_bits():
    import transformers

    try:
        from transformers.modeling_utils import no_init_weights  # 4.x
    except ImportError:  # 5.x
        from transformers.initialization import no_init_weights
    return transformers, no_init_weights


def image_processor_class(kind: str):
    import transformers

    base = "CLIPImageProcessor" if kind == "clip" else "SiglipImageProcessor"
    # 5.x: the default class needs torchvision; the PIL one is the slow 4.x processor.
    return getattr(transformers, base + "Pil", None) or getattr(transformers, base)


def fill_random(model, model_key: str) -> dict:
    """Overwrites every parameter with seeded numbers; returns a summary."""
    import numpy as np
    import torch

    count = 0
    tensors = 0
    for name, param in model.named_parameters():  # tied parameters appear once
        # The seed ignores the 5.x/4.x `vision_model.` prefix: both styles get equal numbers.
        canonical = name.removeprefix("vision_model.")
        seed = zlib.crc32(f"{model_key}:{canonical}".encode())
        rng = np.random.Generator(np.random.PCG64(seed))
        values = rng.standard_normal(tuple(param.shape), dtype=np.float32)
        values *= WEIGHT_STD
        if param.dim() == 1 and name.endswith("weight") and "norm" in name:
            values += 1.0
        with torch.no_grad():
            param.copy_(torch.from_numpy(values))
        count += param.numel()
        tensors += 1
    return {"parameters": count, "tensors": tensors}


def cmd_build(args: argparse.Namespace) -> None:
    import torch

    transformers, no_init_weights = transformers_bits()
    spec = MODELS[args.model]
    config_dir = CONFIGS / spec["config_dir"]
    out = Path(args.out)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    started = time.perf_counter()
    if spec["kind"] == "llm":
        config = transformers.Qwen2Config.from_pretrained(config_dir)
        model_class = transformers.Qwen2ForCausalLM
    elif spec["kind"] == "clip":
        config = transformers.CLIPVisionConfig.from_pretrained(config_dir)
        model_class = transformers.CLIPVisionModel
    else:
        config = transformers.SiglipVisionConfig.from_pretrained(config_dir)
        model_class = transformers.SiglipVisionModel
    with no_init_weights():
        model = model_class(config)
    # no_init_weights also skips the tying that init_weights does: tie explicitly.
    model.tie_weights()
    model = model.to(torch.float32).eval()
    summary = fill_random(model, args.model)
    # Filled in float32, then rounded once: a bfloat16 folder holds the float32 one's values.
    model = model.to(getattr(torch, args.dtype))
    if spec["kind"] == "llm" and config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"
    built = time.perf_counter()
    model.save_pretrained(out)
    if spec["kind"] != "llm":
        processor = image_processor_class(spec["kind"]).from_pretrained(config_dir)
        processor.save_pretrained(out)
    saved = time.perf_counter()
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    marker = {
        "model": args.model,
        "hub_id": spec["hub_id"],
        "style": args.style,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "config_source": str((config_dir / "config.json").relative_to(REPO)),
        "config_source_sha256": sha256_file(config_dir / "config.json"),
        "weights": f"numpy PCG64 seeded by crc32('{args.model}:<name without vision_model.>'); "
                   f"{WEIGHT_STD}*N(0,1), norm weights 1+{WEIGHT_STD}*N(0,1); {args.dtype}",
        "build_s": round(built - started, 2),
        "save_s": round(saved - built, 2),
        "files": files,
        **summary,
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    print(json.dumps(marker, indent=2, sort_keys=True))


# --------------------------------------------------------------------------- reference (child)


def cmd_reference(args: argparse.Namespace) -> None:
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    spec = MODELS[args.model]
    inputs = load_file(args.inputs)
    started = time.perf_counter()
    model_class = {"llm": transformers.Qwen2ForCausalLM, "clip": transformers.CLIPVisionModel,
                   "siglip": transformers.SiglipVisionModel}[spec["kind"]]
    model = model_class.from_pretrained(args.dir, dtype=torch.float32, attn_implementation="eager").eval()
    loaded = time.perf_counter()
    with torch.inference_mode():
        if spec["kind"] == "llm":
            out = model(input_ids=inputs["input_ids"], use_cache=False)
            tensors = {"logits": out.logits}
        else:
            out = model(pixel_values=inputs["pixel_values"], output_hidden_states=True)
            hidden = out.hidden_states
            tensors = {"hidden_states.-2": hidden[-2], "hidden_states.-1": hidden[-1],
                       "last_hidden_state": out.last_hidden_state}
    done = time.perf_counter()
    # clone: CLIP's last_hidden_state IS hidden_states[-1] (safetensors refuses shared memory).
    tensors = {k: v.detach().to(torch.float32).clone().contiguous() for k, v in tensors.items()}
    save_file(tensors, args.out, metadata={"transformers": transformers.__version__, "model": args.model})
    timing = {"load_s": round(loaded - started, 3), "forward_s": round(done - loaded, 3),
              "transformers": transformers.__version__, "torch": torch.__version__,
              "threads": torch.get_num_threads(),
              "shapes": {k: list(v.shape) for k, v in tensors.items()}}
    Path(args.out + ".json").write_text(json.dumps(timing, indent=2, sort_keys=True) + "\n")
    print(json.dumps(timing, sort_keys=True))


# --------------------------------------------------------------------------- run (orchestrator)


def write_inputs(model: str, out_dir: Path) -> dict:
    """Fixed inputs of a model (the same for both styles); returns their paths."""
    import numpy as np
    from safetensors.numpy import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(INPUT_SEED + zlib.crc32(model.encode())))
    paths = {"safetensors": out_dir / f"{model}.safetensors"}
    if MODELS[model]["kind"] == "llm":
        ids = rng.integers(0, QWEN_MAX_ID, size=(1, SEQ_LEN), dtype=np.int64)
        save_file({"input_ids": ids}, str(paths["safetensors"]))
        paths["json"] = out_dir / f"{model}.ids.json"
        paths["json"].write_text(json.dumps({"input_ids": ids.tolist()}) + "\n")
    else:
        height, width = image_size(model)
        pixels = rng.standard_normal((1, 3, height, width), dtype=np.float32)
        save_file({"pixel_values": pixels}, str(paths["safetensors"]))
    return paths


def compare(ours: Path, ours_key: str, ref: Path, ref_key: str) -> dict:
    import numpy as np
    from safetensors.numpy import load_file

    a = load_file(str(ours))[ours_key].astype(np.float32)
    b = load_file(str(ref))[ref_key].astype(np.float32)
    if a.shape != b.shape:
        return {"error": f"shape {list(a.shape)} vs transformers {list(b.shape)}"}
    diff = np.abs(a - b)
    finite = bool(np.isfinite(a).all())
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "ref_max_abs": float(np.abs(b).max()), "finite": finite, "shape": list(a.shape)}


def reference_stats(path: Path) -> dict:
    """Shape, max |x| and finiteness of each transformers output."""
    import numpy as np
    from safetensors.numpy import load_file

    stats = {}
    for key, value in load_file(str(path)).items():
        stats[key] = {"shape": list(value.shape), "ref_max_abs": float(np.abs(value).max()),
                      "ref_finite": bool(np.isfinite(value).all())}
    return stats


def build_folder(model: str, style: str, folder: Path, args, logs: Path) -> dict:
    if (folder / MARKER).is_file() and args.reuse:
        log(f"{model}-{style}: reusing {folder.relative_to(REPO)}")
        return {"reused": True, **json.loads((folder / MARKER).read_text())}
    if folder.exists() and not (folder / MARKER).is_file():
        # Only ever replace folders this script wrote completely (they hold the marker).
        raise SystemExit(f"{folder} exists but was not written by this script (no {MARKER}): "
                         f"move it away first")
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    log(f"{model}-{style}: building {folder.relative_to(REPO)} with {VENVS[style].name}")
    cmd = [VENVS[style] / "bin" / "python", __file__, "build", "--model", model, "--style", style,
           "--out", tmp]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    measured = run_measured(cmd, logs / f"{model}-{style}-build.log")
    if measured["rc"] != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"build of {model}-{style} failed (rc {measured['rc']}):\n"
                         f"{tail(logs / f'{model}-{style}-build.log')}")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    info = json.loads((folder / MARKER).read_text())
    log(f"{model}-{style}: built in {measured['wall_s']} s, peak RSS {measured['peak_rss_mb']} MB")
    return {"reused": False, "wall_s": measured["wall_s"], "peak_rss_mb": measured["peak_rss_mb"], **info}


def cmd_run(args: argparse.Namespace) -> None:
    out_root = Path(args.out).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    logs = out_root / "logs"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    layers = [int(x) for x in args.layers.split(",")]
    for model in models:
        if model not in MODELS:
            raise SystemExit(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    for style in styles:
        if style not in VENVS:
            raise SystemExit(f"unknown style {style!r}; choose from v4, v5")
        if not (VENVS[style] / "bin" / "python").exists():
            raise SystemExit(f"missing interpreter {VENVS[style]}/bin/python for style {style}")
    forward = Path(args.forward).resolve() if args.forward else DEFAULT_FORWARD
    rust = not args.no_rust and forward.is_file() and os.access(forward, os.X_OK)
    if not args.no_rust and not rust:
        log(f"our program {forward} is missing: the Rust side is skipped "
            f"(build it with `cargo build --release --example forward`, or pass --forward PATH)")

    report = {
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "forward": str(forward) if rust else None,
        "inputs": {"qwen": f"1 x {SEQ_LEN} random token ids", "towers": "1 image of N(0,1) pixel_values"},
        "builds": [], "rows": [], "cross_style": [],
    }
    report_path = out_root / "report.json"

    def save_report() -> None:
        report_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    for model in models:
        spec = MODELS[model]
        inputs = write_inputs(model, out_root / "inputs")
        refs = {}
        for style in styles:
            folder = out_root / f"{model}-{style}"
            build = build_folder(model, style, folder, args, logs)
            report["builds"].append({"model": model, "style": style, "folder": str(folder.relative_to(REPO)
                                                                                   if folder.is_relative_to(REPO) else folder),
                                     **{k: build.get(k) for k in ("reused", "wall_s", "peak_rss_mb", "transformers",
                                                                  "parameters", "files")}})
            # (a) the transformers reference, in a child of this style's interpreter.
            ref_out = out_root / "outputs" / f"{model}-{style}.transformers.safetensors"
            ref_out.parent.mkdir(parents=True, exist_ok=True)
            log(f"{model}-{style}: transformers reference")
            cmd = [VENVS[style] / "bin" / "python", __file__, "reference", "--model", model, "--dir", folder,
                   "--inputs", inputs["safetensors"], "--out", ref_out]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            ref = run_measured(cmd, logs / f"{model}-{style}-reference.log")
            if ref["rc"] != 0:
                log(f"{model}-{style}: reference FAILED (rc {ref['rc']}):\n"
                    f"{tail(logs / f'{model}-{style}-reference.log')}")
                report["rows"].append({"model": model, "style": style, "output": "-",
                                       "error": f"transformers reference failed, see {ref['log']}",
                                       "transformers": ref})
                save_report()
                continue
            timing = json.loads(Path(str(ref_out) + ".json").read_text())
            ref.update({k: timing[k] for k in ("load_s", "forward_s", "transformers")})
            ref_stats = reference_stats(ref_out)
            refs[style] = ref_out
            log(f"{model}-{style}: reference {ref['wall_s']} s (load {timing['load_s']} s, forward "
                f"{timing['forward_s']} s), peak RSS {ref['peak_rss_mb']} MB")
            # (b) our program, once per output.
            if spec["kind"] == "llm":
                jobs = [("logits", "logits", "logits",
                         ["--llm", folder, "--ids", inputs["json"]])]
            else:
                jobs = [(f"layer {n}", "image_features", f"hidden_states.{n}",
                         ["--vision", folder, "--pixels", inputs["safetensors"], f"--feature-layer={n}",
                          "--feature-strategy", "full"]) for n in layers]
            for output, ours_key, ref_key, flags in jobs:
                row = {"model": model, "style": style, "output": output, "transformers": ref,
                       **ref_stats.get(ref_key, {})}
                if rust:
                    tag = output.replace(" ", "")
                    ours_out = out_root / "outputs" / f"{model}-{style}.{tag}.ours.safetensors"
                    log(f"{model}-{style}: our forward ({output})")
                    ours = run_measured([forward, *flags, "--out", ours_out],
                                        logs / f"{model}-{style}-{tag}-ours.log", env=args.rust_env)
                    row["ours"] = ours
                    if ours["rc"] != 0:
                        row["error"] = f"our forward failed (rc {ours['rc']}), see {ours['log']}"
                        log(f"{model}-{style}: our forward FAILED:\n{tail(logs / f'{model}-{style}-{tag}-ours.log')}")
                    else:
                        row.update(compare(ours_out, ours_key, ref_out, ref_key))
                        if not args.keep_outputs:
                            ours_out.unlink()
                report["rows"].append(row)
                save_report()
        # The two styles hold the same numbers: their transformers outputs must agree.
        if len(refs) == 2:
            keys = ["logits"] if spec["kind"] == "llm" else [f"hidden_states.{n}" for n in layers]
            for key in keys:
                result = compare(refs["v5"], key, refs["v4"], key)
                report["cross_style"].append({"model": model, "output": key, "what": "transformers v5 vs v4",
                                              **result})
        if not args.keep_outputs:
            for path in refs.values():
                path.unlink(missing_ok=True)
        save_report()

    print_table(report)
    save_report()
    log(f"wrote {report_path.relative_to(REPO) if report_path.is_relative_to(REPO) else report_path}")


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(report: dict) -> None:
    header = ("model", "style", "output", "max|diff|", "ref max|x|", "hf wall s", "hf RSS MB",
              "ours wall s", "ours RSS MB", "note")
    lines = []
    for row in report["rows"]:
        hf = row.get("transformers") or {}
        ours = row.get("ours") or {}
        note = row.get("error") or ("" if row.get("finite", True) else "non-finite output")
        if not ours and not row.get("error"):
            note = "rust side skipped"
        lines.append((row["model"], row["style"], row["output"], fmt(row.get("max_abs_diff"), ".3e"),
                      fmt(row.get("ref_max_abs"), ".3g"), fmt(hf.get("wall_s"), ".1f"),
                      fmt(hf.get("peak_rss_mb"), ".0f"), fmt(ours.get("wall_s"), ".1f"),
                      fmt(ours.get("peak_rss_mb"), ".0f"), note))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)] if lines else [len(h) for h in header]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    for cross in report["cross_style"]:
        print(f"{cross['model']}: transformers v5 vs v4 on {cross['output']}: "
              f"max|diff| {fmt(cross.get('max_abs_diff'), '.3e')}" + (f" ({cross['error']})" if "error" in cross else ""))
    for build in report["builds"]:
        how = "reused" if build.get("reused") else f"built in {fmt(build.get('wall_s'), '.1f')} s, peak RSS " \
                                                  f"{fmt(build.get('peak_rss_mb'), '.0f')} MB"
        print(f"{build['model']}-{build['style']}: {how} (transformers {build.get('transformers')}, "
              f"{build.get('parameters')} parameters)")
    print()


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build, run both sides, compare (the default of real_size.sh)")
    run.add_argument("--models", default="qwen,clip,siglip", help="comma list of qwen, clip, siglip")
    run.add_argument("--styles", default="v4,v5", help="comma list of v4 (transformers 4.x), v5 (5.x)")
    run.add_argument("--reuse", "--skip-existing", action="store_true",
                     help="keep model folders that a previous run built completely (no rebuild)")
    run.add_argument("--no-rust", action="store_true", help="only build and run the transformers side")
    run.add_argument("--forward", help=f"our program (default {DEFAULT_FORWARD.relative_to(REPO)})")
    run.add_argument("--layers", default="-2,-1", help="vision feature layers to compare (default -2,-1)")
    run.add_argument("--threads", type=int, default=0, help="torch threads (default: all CPUs)")
    run.add_argument("--out", default=str(DEFAULT_OUT), help="output root (default target/real_size)")
    run.add_argument("--keep-outputs", action="store_true",
                     help="keep the output safetensors (logits are ~300 MB each) under <out>/outputs")
    run.set_defaults(func=cmd_run, rust_env=None)

    build = sub.add_parser("build", help="(internal) write one model folder")
    build.add_argument("--model", required=True, choices=sorted(MODELS))
    build.add_argument("--style", required=True, choices=sorted(VENVS))
    build.add_argument("--out", required=True)
    build.add_argument("--threads", type=int, default=0)
    build.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                       help="dtype the weights are saved in (default float32)")
    build.set_defaults(func=cmd_build)

    reference = sub.add_parser("reference", help="(internal) run transformers on a model folder")
    reference.add_argument("--model", required=True, choices=sorted(MODELS))
    reference.add_argument("--dir", required=True)
    reference.add_argument("--inputs", required=True)
    reference.add_argument("--out", required=True)
    reference.add_argument("--threads", type=int, default=0)
    reference.set_defaults(func=cmd_reference)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
