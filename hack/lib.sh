# Shared shell helpers for hack/ scripts: sourced, not run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EC2_TERMINAL_CACHE:-$HOME/.cache/ec2-terminal}
mkdir -p "$CACHE"
UV_VERSION=0.13.9

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: installs only what is missing, so reruns are quick and offline-safe.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# uv_bin: a pinned uv in its own venv under the cache.
uv_bin() {
  local venv="$CACHE/tools-uv-$UV_VERSION"
  if [ ! -x "$venv/bin/uv" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "uv==$UV_VERSION"
  fi
  echo "$venv/bin/uv"
}
