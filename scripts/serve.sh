#!/usr/bin/env bash
# Install the mirror on Debian 12 and run it with embedded defaults: filesystem cache and
# diskcache metadata under ./data, upstreams Docker Hub, ghcr.io, quay.io, registry.k8s.io.
# Runs as root or as a user: apt-get (python3-venv, when missing) goes through sudo only when
# not root (scripts/apt.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
python -m pip install -q --disable-pip-version-check -c constraints.txt -e .
# The address and data directory are the configuration's own: MIRROR_SERVER_LISTEN and
# MIRROR_STORAGE_DATA_DIR (defaults 127.0.0.1:5016 and ./data), or --listen / --data-dir.
exec mirror serve "$@"
