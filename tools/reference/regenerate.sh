#!/usr/bin/env bash
# Regenerate the reference fixtures from scratch: bash tools/reference/regenerate.sh
#   1. data/fixtures/     with transformers 4.x (.venv,  requirements.txt)
#   2. data/fixtures/v5/  with transformers 5.x (.venv5, requirements5.txt): the same fixtures as
#      transformers 5 save_pretrained writes them (needs the 4.x set, which it checks against).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
PYTHONHASHSEED=0 .venv/bin/python make_fixtures.py
[ -x .venv5/bin/python ] || python3 -m venv .venv5
.venv5/bin/pip install -q -r requirements5.txt
PYTHONHASHSEED=0 .venv5/bin/python make_fixtures.py
# 3. data/fixtures/llava_export/: transformers 5 on the folder `export` writes of the LoRA
#    checkpoint tests/export_llava.rs builds (needs cargo; the folder is ~80 MB, not kept).
EXPORTED="$(mktemp -d)"
trap 'rm -rf "$EXPORTED"' EXIT
(cd ../.. && VLM_EXPORT_DIR="$EXPORTED/llava" cargo test -q --test export_llava -- \
    --ignored --exact write_exported_folder)
PYTHONHASHSEED=0 .venv5/bin/python export_reference.py "$EXPORTED/llava" \
    ../../data/sample/images/train_0000.png ../../data/fixtures/llava_export/reference.safetensors
