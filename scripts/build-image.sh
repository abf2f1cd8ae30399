#!/usr/bin/env bash
# Build the container image offline: a base image from the Debian package registry
# (mmdebstrap bookworm, docker import), then the Dockerfile with PyPI packages from the pip
# index this machine is configured with: this machine's pip downloads the pinned wheels
# (its index, extra indexes, find-links and certificate bundle: `pip config list`) into a
# cached wheelhouse, served on 127.0.0.1 for the length of the build, which runs with
# --network host and gets it as PIP_NO_INDEX=1 PIP_FIND_LINKS=http://127.0.0.1:PORT/.
# With PIP_INDEX_URL set, the build asks that index itself instead.
#
#   scripts/build-image.sh [IMAGE]          default IMAGE: mirror:<version in pyproject.toml>
#
# Environment: BASE (default local/bookworm-python:3.11; an existing image is used as is),
# ROOTFS_CACHE (directory keeping the mmdebstrap tarball between runs, default
# /tmp/mirror-image-cache), DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (default: mmdebstrap's),
# PIP (the pip that fills the wheelhouse, default: pip on PATH), PIP_INDEX_URL /
# PIP_EXTRA_INDEX_URL / PIP_TRUSTED_HOST (an index the build reaches itself), DOCKER (the
# CLI, default docker; DOCKER_HOST picks the daemon).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)
IMAGE=${1:-mirror:${version}}
BASE=${BASE:-local/bookworm-python:3.11}
ROOTFS_CACHE=${ROOTFS_CACHE:-/tmp/mirror-image-cache}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DOCKER=${DOCKER:-docker}
PACKAGES=python3,python3-venv,ca-certificates
PIP=${PIP:-pip}
# The legacy builder: BuildKit is not part of every engine here, and the build needs nothing
# of it.
export DOCKER_BUILDKIT=0

build_base() {
  if "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    echo "base image $BASE: present"
    return
  fi
  mkdir -p "$ROOTFS_CACHE"
  local tar="$ROOTFS_CACHE/${DEBIAN_SUITE}-minbase-${PACKAGES//,/-}.tar"
  if [ ! -f "$tar" ] || [ ! -s "$tar" ]; then
    echo "base rootfs: mmdebstrap $DEBIAN_SUITE ($PACKAGES) -> $tar"
    # A directory in the tarball's place is what an earlier build left when mmdebstrap was
    # left to guess the format from the name "*.tar.part" (it made a directory): gone, and the
    # format is said.
    rm -rf "$tar" "$tar.part"
    # shellcheck disable=SC2086
    mmdebstrap --variant=minbase --include="$PACKAGES" --quiet --format=tar \
      "$DEBIAN_SUITE" "$tar.part" ${DEBIAN_MIRROR:-}
    mv "$tar.part" "$tar"
  fi
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    "$tar" "$BASE" >/dev/null
  echo "base image $BASE: imported from $tar"
}

serve_dir=""
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  if [ -n "$serve_dir" ]; then rm -f "$serve_dir.log"; fi
}
trap cleanup EXIT

fill_wheelhouse() {  # the project's pinned dependencies, from this machine's pip configuration
  local key
  key=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
  serve_dir="$ROOTFS_CACHE/wheels-$key"
  if [ ! -f "$serve_dir/.complete" ]; then
    echo "wheelhouse: pip download (pip's own index, certificates and links) -> $serve_dir"
    mkdir -p "$serve_dir"
    "$PIP" download --quiet --disable-pip-version-check -c constraints.txt \
      --dest "$serve_dir" . "setuptools>=64" wheel \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    touch "$serve_dir/.complete"
  fi
}

build_image() {
  local args=(--network host --build-arg "BASE=$BASE")
  if [ -n "${PIP_INDEX_URL:-}" ]; then
    # An index the build containers reach themselves (a normal network, a devpi, a proxy).
    args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
    [ -n "${PIP_EXTRA_INDEX_URL:-}" ] && args+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
    [ -n "${PIP_TRUSTED_HOST:-}" ] && args+=(--build-arg "PIP_TRUSTED_HOST=$PIP_TRUSTED_HOST")
    echo "image $IMAGE: building (index $PIP_INDEX_URL)"
  else
    fill_wheelhouse
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$serve_dir" "$port" \
      >"$serve_dir.log" 2>&1 &
    server_pid=$!
    args+=(--build-arg "PIP_NO_INDEX=1" --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/"
      --build-arg "PIP_TRUSTED_HOST=127.0.0.1")
    echo "image $IMAGE: building (wheels from http://127.0.0.1:$port/)"
  fi
  "$DOCKER" build --quiet "${args[@]}" -t "$IMAGE" . >/dev/null
  echo "image $IMAGE: built"
}

build_base
build_image
