"""Side-by-side benchmark: vlm (Rust, Burn) against PyTorch + transformers + peft.

Both run the figures of benches/bench_config.json on the same random-weight Hugging Face
folders (written once by `bench_run write-models`), on the same machine with the same thread
count, alternating process by process (ours, PyTorch, PyTorch, ours, ...) so that load from
other work on the machine hits both alike. Prints, per figure, the medians and the ratio
ours/PyTorch of the time (min / median / max over the runs); decode is also shown as the
tokens/s speed-up (PyTorch's time / ours).

    tools/reference/.venv/bin/python tools/bench/compare.py --runs 5

Needs the release build of the `bench_run` example
(`cargo build --release --example bench_run`). See tools/bench/README.md.

`--torch-worker` runs the PyTorch side alone and prints its timings as one JSON line (what
compare() runs; tools/gpu/check.sh runs it with `--device cuda` on a GPU).
"""

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "benches" / "bench_config.json"
OURS = ROOT / "target" / "release" / "examples" / "bench_run"

# Targets of issue 19: ratio ours/PyTorch of the time per figure (decode: of the time per
# token, i.e. 1 / the tokens/s speed-up).
TARGETS = {"train_step": 0.7, "vision_forward": 0.8, "prefill": 0.8, "decode_b1": 1 / 3,
           "decode_b8": 2 / 3}


def cpu_model():
    """The CPU's model name (Linux `/proc/cpuinfo`), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_env(threads):
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def load_average():
    return os.getloadavg()[0]


def compare(args):
    config = json.loads(Path(args.config).read_text())
    models = Path(args.models).resolve()
    env = thread_env(args.threads)
    ours = [str(args.ours), "--config", str(args.config)]
    if not (models / "llm" / "model.safetensors").is_file():
        subprocess.run(ours + ["write-models", "--out", str(models)], check=True)
    figures = ["--figures", args.figures] if args.figures else []
    ours_cmd = ours + ["run", "--models", str(models), "--iters", str(args.iters)] + figures
    theirs_cmd = [sys.executable, __file__, "--torch-worker", "--models", str(models),
                  "--iters", str(args.iters), "--threads", str(args.threads),
                  "--config", str(args.config)] + figures
    runs = []
    for run in range(args.runs):
        order = [("ours", ours_cmd), ("torch", theirs_cmd)]
        if run % 2:
            order.reverse()
        record = {"load_before": load_average()}
        for side, cmd in order:
            start = time.time()
            record[side] = run_json(cmd, env)
            print(f"run {run + 1}/{args.runs} {side}: {time.time() - start:.0f} s, "
                  f"load {load_average():.2f}", file=sys.stderr)
        record["load_after"] = load_average()
        runs.append(record)
    report(config, runs)
    if args.out:
        Path(args.out).write_text(json.dumps({"config": config, "runs": runs}, indent=1) + "\n")


def report(config, runs):
    names = [f for f in runs[0]["ours"] if f in runs[0]["torch"]]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"{'figure':16} {'ours (med)':>12} {'torch (med)':>12}  ratio ours/torch min / median / max"
          f"  target")
    for name in names:
        ours = [statistics.median(r["ours"][name]) for r in runs]
        theirs = [statistics.median(r["torch"][name]) for r in runs]
        ratios = sorted(o / t for o, t in zip(ours, theirs))
        target = TARGETS.get(name)
        verdict = "" if target is None else (
            f"<= {target:.2f} {'met' if statistics.median(ratios) <= target else 'MISSED'}")
        print(f"{name:16} {fmt(statistics.median(ours)):>12} {fmt(statistics.median(theirs)):>12}  "
              f"{ratios[0]:.3f} / {statistics.median(ratios):.3f} / {ratios[-1]:.3f}  {verdict}")
        if name.startswith("decode_b"):
            batch = int(name.removeprefix("decode_b"))
            speedups = sorted(1 / r for r in ratios)
            print(f"{'':16} tokens/s ours {batch / statistics.median(ours):.1f}, torch "
                  f"{batch / statistics.median(theirs):.1f}; speed-up min / median / max "
                  f"{speedups[0]:.2f} / {statistics.median(speedups):.2f} / {speedups[-1]:.2f}")
    loads = [r["load_before"] for r in runs] + [r["load_after"] for r in runs]
    print(f"1-minute load average during the runs: {min(loads):.2f} .. {max(loads):.2f}")


def fmt(seconds):
    return f"{seconds * 1e3:.2f} ms"


# ---------------------------------------------------------------------------------------------
# The PyTorch side (run in its own process by compare()).


def sample_ids(config, sample):
    """Same layout as benches/common/config.rs: 8 text ids, the image ids, the rest text."""
    vocab, image = config["llm"]["vocab_size"], config["train"]["image_tokens"]
    prefix = min(config["train"]["text_tokens"], 8)
    length = config["train"]["text_tokens"] + image
    return [vocab - 1 if prefix <= p < prefix + image else (sample * 131 + p * 17) % (vocab - 1)
            for p in range(length)]


def prompt_ids(config, batch, length):
    vocab = config["llm"]["vocab_size"]
    return [[(row * 131 + p * 17) % (vocab - 1) for p in range(length)] for row in range(batch)]


def timed(iters, work, sync):
    """Runs `work` once untimed, then `iters` timed times, each up to `sync()` (the device's
    queue drained)."""
    work()
    sync()
    values = []
    for _ in range(iters):
        start = time.perf_counter()
        work()
        sync()
        values.append(time.perf_counter() - start)
    return values


class TrainStep:
    """LoRA on the LLM + MLP projector, frozen tower, AdamW, clipping: the seed's recipe."""

    def __init__(self, torch, config, models, device, checkpointing=False):
        from peft import LoraConfig, get_peft_model
        from transformers import Qwen2ForCausalLM, SiglipVisionModel

        self.torch, train = torch, config["train"]
        self.vision = SiglipVisionModel.from_pretrained(models / "vision").eval().to(device)
        self.vision.requires_grad_(False)
        llm = Qwen2ForCausalLM.from_pretrained(models / "llm").to(device)
        if checkpointing:
            # transformers checkpoints the decoder layers only in training mode.
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            llm.train()
        lora = LoraConfig(r=train["lora_rank"], lora_alpha=train["lora_alpha"], lora_dropout=0.0,
                          target_modules=train["lora_targets"])
        self.llm = get_peft_model(llm, lora)
        width, hidden = config["vision"]["hidden_size"], config["llm"]["hidden_size"]
        nn = torch.nn
        self.projector = nn.Sequential(nn.Linear(width, hidden), nn.GELU(),
                                       nn.Linear(hidden, hidden)).to(device)
        adapters = [p for p in self.llm.parameters() if p.requires_grad]
        self.trainable = adapters + list(self.projector.parameters())
        self.optimizer = torch.optim.AdamW(
            [{"params": adapters, "lr": train["learning_rate"]},
             {"params": list(self.projector.parameters()), "lr": train["projector_lr"]}],
            weight_decay=train["weight_decay"])
        self.max_grad_norm = train["max_grad_norm"]
        batch, side = train["batch_size"], config["vision"]["image_size"]
        self.ids = torch.tensor([sample_ids(config, s) for s in range(batch)], device=device)
        self.image = self.ids == config["llm"]["vocab_size"] - 1
        supervised_from = self.ids.shape[1] - max(train["text_tokens"] - 8, 0)
        self.labels = self.ids.clone()
        self.labels[:, :supervised_from] = -100
        self.pixels = torch.randn(batch, 3, side, side, device=device)

    def step(self):
        torch = self.torch
        with torch.no_grad():
            features = self.vision(self.pixels, output_hidden_states=True).hidden_states[-1]
        projected = self.projector(features)
        embeds = self.llm.get_input_embeddings()(self.ids)
        embeds = embeds.masked_scatter(self.image.unsqueeze(-1), projected.to(embeds.dtype))
        loss = self.llm(inputs_embeds=embeds, labels=self.labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def torch_decode(torch, llm, prompt, steps, device):
    """Seconds of `steps` greedy decode steps after the first generated token, via generate()."""
    from transformers.generation.streamers import BaseStreamer

    class Stamps(BaseStreamer):
        def __init__(self):
            self.stamps = []

        def put(self, value):
            self.stamps.append(time.perf_counter())

        def end(self):
            pass

    ids = torch.tensor(prompt, device=device)
    stamps = Stamps()
    with torch.inference_mode():
        llm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps + 1,
                     min_new_tokens=steps + 1, do_sample=False, pad_token_id=0,
                     eos_token_id=None, streamer=stamps)
    new = stamps.stamps[1:]  # the first put() is the prompt
    assert len(new) == steps + 1, len(new)
    return new[-1] - new[0]


def torch_worker(args):
    import torch
    from PIL import Image
    from transformers import Qwen2ForCausalLM, SiglipImageProcessor, SiglipVisionModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = json.loads(Path(args.config).read_text())
    figures_cfg = config["figures"]
    models = Path(args.models)
    wanted = args.figures.split(",") if args.figures else (
        ["train_step", "vision_forward", "prefill"]
        + [f"decode_b{b}" for b in figures_cfg["decode_batches"]] + ["preprocess"])
    results = {}
    if "train_step" in wanted:
        step = TrainStep(torch, config, models, device, args.gradient_checkpointing).step
        results["train_step"] = timed(args.iters, step, sync)
    if all(name == "train_step" for name in wanted):
        print(json.dumps(results))
        return
    vision = SiglipVisionModel.from_pretrained(models / "vision").eval().to(device)
    llm = Qwen2ForCausalLM.from_pretrained(models / "llm").eval().to(device)
    llm.generation_config.eos_token_id = None
    side = config["vision"]["image_size"]
    for name in wanted:
        if name == "vision_forward":
            pixels = torch.randn(figures_cfg["vision_batch"], 3, side, side, device=device)
            with torch.inference_mode():
                results[name] = timed(args.iters, lambda: vision(pixels), sync)
        elif name == "prefill":
            ids = torch.tensor(prompt_ids(config, 1, figures_cfg["prefill_tokens"]), device=device)
            with torch.inference_mode():
                results[name] = timed(
                    args.iters, lambda: llm(ids, use_cache=True).logits[:, -1].argmax(-1), sync)
        elif name.startswith("decode_b"):
            prompt = prompt_ids(config, int(name.removeprefix("decode_b")),
                                figures_cfg["decode_prompt_tokens"])
            steps = figures_cfg["decode_new_tokens"]
            torch_decode(torch, llm, prompt, steps, device)
            results[name] = [torch_decode(torch, llm, prompt, steps, device) / steps
                             for _ in range(args.iters)]
        elif name == "preprocess":
            processor = SiglipImageProcessor.from_pretrained(models / "vision")
            images = [(ROOT / p).read_bytes() for p in figures_cfg["preprocess_images"]]
            repeats = figures_cfg["preprocess_repeats"]

            def work():
                for _ in range(repeats):
                    for data in images:
                        processor(images=Image.open(io.BytesIO(data)), return_tensors="pt")

            per_image = repeats * len(images)
            results[name] = [s / per_image for s in timed(args.iters, work, sync)]
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs of each side")
    parser.add_argument("--iters", type=int, default=3, help="timed repetitions per figure and run")
    parser.add_argument("--threads", type=int, default=2, help="threads of both sides")
    parser.add_argument("--models", default=str(ROOT / "target" / "bench" / "models"),
                        help="model folders (written by bench_run write-models when missing)")
    parser.add_argument("--figures", help="comma-separated subset of the figures")
    parser.add_argument("--ours", type=Path, default=OURS, help="the bench_run binary")
    parser.add_argument("--out", help="also write every timing to this JSON file")
    parser.add_argument("--config", default=str(CONFIG),
                        help="the bench config (bench_run show-config prints one)")
    parser.add_argument("--torch-worker", action="store_true",
                        help="run only the PyTorch side, print its timings as JSON")
    parser.add_argument("--device", default="cpu",
                        help="torch device of --torch-worker (cpu, cuda, cuda:N)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="--torch-worker's train_step recomputes the decoder layers' "
                             "activations in the backward pass")
    args = parser.parse_args()
    if args.torch_worker:
        torch_worker(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
