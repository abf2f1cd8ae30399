#!/usr/bin/env bash
# Install everything the test suite needs on Debian 12: the real peers (CNCF distribution,
# skopeo, containerd, nginx, curl) from Debian, the project with its test and bench extras
# (the quick benchmark run in the suite draws plots) from PyPI in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in docker-registry skopeo containerd runc nginx-light curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
. scripts/venv.sh
python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
