#!/usr/bin/env bash
# Real-size check of our forward pass against transformers 4.x and 5.x (not run in CI).
#
#   bash tools/reference/real_size.sh                       # qwen, clip, siglip; v4 and v5
#   bash tools/reference/real_size.sh --models qwen --reuse # keep folders built before
#   bash tools/reference/real_size.sh --no-rust             # transformers side only
#
# Needs tools/reference/.venv (transformers 4.57.6) and tools/reference/.venv5
# (transformers 5.25.0), and target/release/examples/forward for the Rust side
# (cargo build --release --example forward). Each step runs in a child process of the
# venv of its style, so 4.x and 5.x each save (and run) their own serialisation.
# Writes target/real_size/<model>-<v4|v5>/, target/real_size/report.json and logs.
# All options: bash tools/reference/real_size.sh --help
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for venv in .venv .venv5; do
  if [ ! -x "$here/$venv/bin/python" ]; then
    echo "missing $here/$venv (python venv with transformers $([ $venv = .venv ] && echo 4.57.6 || echo 5.25.0))" >&2
    exit 1
  fi
done
exec "$here/.venv/bin/python" "$here/real_size.py" run "$@"
