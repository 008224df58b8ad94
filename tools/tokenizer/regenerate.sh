#!/bin/sh
cd "$(dirname "$0")" && python3 -m venv .venv && .venv/bin/pip install -q --no-deps -r requirements.txt && .venv/bin/python convert.py && .venv/bin/python check.py
