# Sourced by the other scripts: `apt_get ARGS...` runs apt-get non-interactively, through sudo
# only when this shell is not root and sudo exists (a root-only Debian machine has no sudo).
apt_get() {
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"
  else
    DEBIAN_FRONTEND=noninteractive apt-get "$@"
  fi
}
