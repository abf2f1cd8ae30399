#!/usr/bin/env bash
# Install everything the test suite needs on Debian 12: the real peers (CNCF distribution,
# skopeo, containerd, nginx and HAProxy in front of a tier, curl, PostgreSQL for the shared
# metadata store) and the real
# clients (docker.io for dockerd, podman, buildah, chromium for the console's browser tests;
# the CRI path is containerd's own plugin; mmdebstrap makes the container image's base from
# the Debian archive) from Debian (the clients take about 20 s), the project with its test and
# bench extras (the quick benchmark run in the suite draws plots, grpcio is the CRI client,
# oras is oras-py pushing artifacts with a subject, kubernetes-validate checks
# deploy/kubernetes/) from PyPI in .venv.
# Runs as root or as a user: apt-get goes through sudo only when not root (scripts/apt.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh
need=()
for pkg in docker-registry skopeo containerd runc nginx-light haproxy curl docker.io podman umoci \
    buildah postgresql chromium chromium-driver mmdebstrap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# kubectl (for the imagePullSecrets test) is not in every machine's package sources: best
# effort, and its one test says it skipped when it is missing.
if ! command -v kubectl >/dev/null 2>&1; then
  apt_get install -y -qq --no-install-recommends kubectl \
    >/dev/null 2>&1 || echo "kubectl is not installable here; test_kubectl_dockerconfigjson will skip"
fi
. scripts/venv.sh
python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,bench]'
