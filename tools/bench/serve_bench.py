"""Throughput of `serve` under concurrent clients: continuous batching against one request at
a time.

For each `--max-batch-size` given, starts the `serve` example on a free loopback port over
`--checkpoint`, lets `--clients` clients each send `--requests` streamed greedy questions (every
other one with an image) at once, and prints the aggregate tokens/s (completion tokens of all
answers over the wall time) and the time to first token (p50, p95). Also checks that every
configuration gave the same answers. Standard library only.

    cargo build --release --example serve
    python3 tools/bench/serve_bench.py --checkpoint target/quickstart/model/checkpoint
"""

import argparse
import base64
import json
import statistics
import struct
import subprocess
import threading
import time
import urllib.request
import zlib


def png(side, seed):
    """A `side` x `side` RGB PNG: a gradient with a square whose place depends on `seed`."""
    rows = b""
    for y in range(side):
        row = bytearray([0])
        for x in range(side):
            inside = (x + seed) % side < side // 2 and (y + 2 * seed) % side < side // 3
            value = x * 255 // side
            row += bytes([230, 40, 40]) if inside else bytes([value, 120, 255 - value])
        rows += bytes(row)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def request(index, max_tokens):
    text = f"Question {index}: what shape is in the picture, and where is it?"
    content = text
    if index % 2 == 1:
        url = "data:image/png;base64," + base64.b64encode(png(64, index)).decode()
        content = [{"type": "text", "text": text},
                   {"type": "image_url", "image_url": {"url": url}}]
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def ask(base, body):
    """Streams one answer: (text, completion tokens, seconds to the first chunk with text)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(base + "/v1/chat/completions", data=data,
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    first, text, tokens = None, "", 0
    with urllib.request.urlopen(req, timeout=600) as reply:
        for line in reply:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece:
                    first = first or time.perf_counter() - start
                    text += piece
    return text, tokens, first if first is not None else time.perf_counter() - start


def run(args, max_batch_size):
    command = [args.serve, "--checkpoint", args.checkpoint, "--port", "0",
               "--max-batch-size", str(max_batch_size), "--queue", "256"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in server.stdout:
            if line.startswith("listening on "):
                base = line.split()[-1]
                break
        else:
            raise SystemExit("serve did not start")
        ask(base, request(0, 4))  # warm-up
        results = {}

        def client(number):
            for turn in range(args.requests):
                index = number * args.requests + turn
                results[index] = ask(base, request(index, args.max_tokens))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()
    tokens = sum(r[1] for r in results.values())
    ttft = sorted(r[2] for r in results.values())
    quantiles = statistics.quantiles(ttft, n=20, method="inclusive")
    figures = {
        "max_batch_size": max_batch_size,
        "answers": len(results),
        "tokens": tokens,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_s": round(statistics.median(ttft), 3),
        "ttft_p95_s": round(quantiles[18], 3),
    }
    return figures, {index: r[0] for index, r in results.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", default="target/release/examples/serve")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2, help="per client, one after another")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", default="16,1", help="comma-separated --max-batch-size values")
    args = parser.parse_args()
    answers = None
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        figures, texts = run(args, size)
        print(json.dumps(figures), flush=True)
        if answers is not None and texts != answers:
            differ = [i for i in texts if texts[i] != answers.get(i)]
            print(f"answers differ from the first configuration's: {differ}")
        answers = answers or texts


if __name__ == "__main__":
    main()
