#!/usr/bin/env bash
# Regenerate data/fixtures/ from scratch: bash tools/reference/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")" && { [ -x .venv/bin/python ] || python3 -m venv .venv; } && .venv/bin/pip install -q -r requirements.txt && PYTHONHASHSEED=0 .venv/bin/python make_fixtures.py
