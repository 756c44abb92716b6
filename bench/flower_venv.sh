#!/usr/bin/env bash
# Builds bench/.venv-flower: Flower for bench/secagg_flower.py, apart from the fedbus workspace
# (Flower is never a fedbus dependency). Needs python3.11 and PyPI.
set -euo pipefail
cd "$(dirname "$0")"
python3.11 -m venv .venv-flower
.venv-flower/bin/pip install --quiet --upgrade pip
.venv-flower/bin/pip install --quiet -r requirements-flower.txt
.venv-flower/bin/python -c "import flwr; print('flwr', flwr.__version__)"
