# Sourced by the other scripts: make ./.venv (Debian's python3 is externally managed, so the
# project never installs into the system interpreter) and put it first on PATH.
. scripts/apt.sh
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
export PATH="$PWD/.venv/bin:$PATH"
