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
