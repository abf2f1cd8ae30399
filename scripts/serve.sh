#!/usr/bin/env bash
# Install the mirror on Debian 12 and run it with embedded defaults: filesystem cache and
# diskcache metadata under ./data, upstreams Docker Hub, ghcr.io, quay.io, registry.k8s.io.
# Runs as root or as a user: apt-get (python3-venv, when missing) goes through sudo only when
# not root (scripts/apt.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
python -m pip install -q --disable-pip-version-check -c constraints.txt -e .
exec mirror serve --listen "${MIRROR_LISTEN:-127.0.0.1:5016}" --data-dir "${MIRROR_DATA_DIR:-./data}" "$@"
