#!/usr/bin/env bash
# The whole test command: install test dependencies, lint, type-check, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
. scripts/venv.sh
ruff check .
mypy
python -m pytest -q -p no:cacheprovider --cov=mirror "$@"
