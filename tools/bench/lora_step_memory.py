"""Peak memory of a LoRA training step at real size: vlm against PyTorch + peft.

    tools/reference/.venv5/bin/python tools/bench/lora_step_memory.py --models DIR

The model is the bench's (frozen SigLIP tower, `mlp2x_gelu` projector, LoRA on every
projection of the Qwen2 language model, AdamW, clipping) at the sizes of the published
configs under data/configs/ (Qwen2.5-0.5B-Instruct, SigLIP so400m-patch14-384), with random
weights, in f32, trained on one sample of 1024 tokens (729 image tokens, then 295 text tokens
of which the last 287 are supervised).

1. writes DIR/bench_config.json (`bench_run show-config` at those sizes, batch 1, 1024
   tokens) and, once, the random-weight folders DIR/llm and DIR/vision (`bench_run
   write-models`, ~3.7 GB);
2. runs each variant in a fresh child process, one after the other: our `bench_run run
   --figures train_step --iters 1` (one warm-up step and one timed step, as the bench runs)
   with the chunked loss or the full-logits one, with or without `--gradient-checkpointing`,
   and `compare.py --torch-worker` the same way (PyTorch: transformers' full-logits loss;
   with `--gradient-checkpointing`, `gradient_checkpointing_enable()`);
3. prints one markdown table: the peak RSS of each child (os.wait4's ru_maxrss, which
   includes loading the models) and its wall time, and writes it as JSON with --out.

Needs the release build of the `bench_run` example (`cargo build --release --example
bench_run`, or --ours PATH).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / "target" / "release" / "examples" / "bench_run"
COMPARE = ROOT / "tools" / "bench" / "compare.py"
LLM_CONFIG = ROOT / "data" / "configs" / "Qwen--Qwen2.5-0.5B-Instruct" / "config.json"
VISION_CONFIG = ROOT / "data" / "configs" / "google--siglip-so400m-patch14-384" / "config.json"
SEQUENCE = 1024

VARIANTS = {
    "vlm chunked loss": ("ours", []),
    "vlm full-logits loss": ("ours", ["--full-logits-loss"]),
    "vlm chunked loss + checkpointing": ("ours", ["--gradient-checkpointing"]),
    "vlm full-logits loss + checkpointing": (
        "ours", ["--full-logits-loss", "--gradient-checkpointing"]),
    "PyTorch + peft": ("torch", []),
    "PyTorch + peft + checkpointing": ("torch", ["--gradient-checkpointing"]),
}


def bench_config(ours: Path, out: Path) -> Path:
    """The bench config at real size, batch 1 x SEQUENCE tokens, written to `out`."""
    shown = subprocess.run(
        [str(ours), "--llm-config", str(LLM_CONFIG), "--vision-config", str(VISION_CONFIG),
         "show-config"], check=True, capture_output=True, text=True).stdout
    config = json.loads(shown)
    train = config["train"]
    train["batch_size"] = 1
    train["text_tokens"] = SEQUENCE - train["image_tokens"]
    out.write_text(json.dumps(config, indent=2) + "\n")
    return out


def run_child(cmd: list, env: dict) -> dict:
    """`cmd` in a child process: its peak RSS in kB (os.wait4), wall time and JSON output."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = child.stdout.read().decode()
    stderr = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        why = f"killed by signal {-code} (out of memory?)" if code < 0 else f"status {code}"
        sys.exit(f"{' '.join(cmd)} failed ({why}):\n{stderr[-3000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return {"peak_rss_kb": usage.ru_maxrss, "wall_s": round(wall, 1),
            "step_s": json.loads(lines[-1])["train_step"] if lines else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, type=Path,
                        help="folder of the config and the random-weight models")
    parser.add_argument("--ours", type=Path, default=OURS, help="the bench_run binary")
    parser.add_argument("--threads", type=int, default=2, help="threads of both sides")
    parser.add_argument("--variants", help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--out", type=Path,
                        help="also write the results to this JSON file (kept between runs)")
    args = parser.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    config = bench_config(args.ours, args.models / "bench_config.json")
    ours = [str(args.ours), "--config", str(config)]
    if not (args.models / "llm" / "model.safetensors").is_file():
        subprocess.run(ours + ["write-models", "--out", str(args.models)], check=True)
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[name] = str(args.threads)
    step = ["--figures", "train_step", "--iters", "1"]
    wanted = args.variants.split(",") if args.variants else list(VARIANTS)
    # Variants measured before (--variants runs a subset) stay in the --out file.
    results = json.loads(args.out.read_text()) if args.out and args.out.is_file() else {}
    for name in wanted:
        side, flags = VARIANTS[name]
        if side == "ours":
            cmd = ours + ["run", "--models", str(args.models)] + step + flags
        else:
            cmd = [sys.executable, str(COMPARE), "--torch-worker", "--config", str(config),
                   "--models", str(args.models), "--threads", str(args.threads)] + step + flags
        results[name] = run_child(cmd, env)
        print(f"{name}: {results[name]}", file=sys.stderr)
    print("| run | peak RSS | wall time (load + 2 steps) | timed step |")
    print("|---|---|---|---|")
    for name, result in results.items():
        step_s = result["step_s"][0] if result["step_s"] else float("nan")
        print(f"| {name} | {result['peak_rss_kb']:,} kB | {result['wall_s']} s | {step_s:.1f} s |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
