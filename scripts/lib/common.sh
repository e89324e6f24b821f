# shellcheck shell=bash
# Shared helpers for every script in scripts/. Source it; it defines functions and ROOT only.
# Written for bash on Debian 12 and Ubuntu 24.04, with or without systemd, run as root
# (the same scripts provision the Vagrant VMs and the one-machine mode).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ROOT

log() { printf '[crud-master] %s\n' "$*" >&2; }
die() { printf '[crud-master] error: %s\n' "$*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "run this as root (e.g. sudo make ...): it installs packages and manages system services"
}

# Export every KEY=value of .env that the environment does not already set, so that a caller
# (a test, the Vagrantfile) can point the same scripts elsewhere.
load_env() {
  local file=${1:-$ROOT/.env} line key
  [ -f "$file" ] || die "$file is missing: it holds every credential and address"
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in '' | '#'*) continue ;; esac
    key=${line%%=*}
    [ -n "${!key+set}" ] && continue
    export "$key=${line#*=}"
  done <"$file"
}

# Fail early with the name of every variable a step needs but nobody set.
require_vars() {
  local name missing=()
  for name in "$@"; do [ -n "${!name:-}" ] || missing+=("$name"); done
  [ ${#missing[@]} -eq 0 ] || die "missing settings (add them to .env): ${missing[*]}"
}

# Every step that changes the machine records it, so that `make up` can say when a run changed nothing.
CHANGES=()
changed() { CHANGES+=("$*"); log "$*"; }

has_systemd() { [ -d /run/systemd/system ]; }

# Poll COMMAND until it succeeds or TIMEOUT seconds pass; never a blind sleep.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

# file_ensure PATH CONTENT: PATH holds exactly CONTENT (a final newline added); false when it already did.
file_ensure() {
  [ "$(cat "$1" 2>/dev/null)" != "$2" ] || return 1
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "$2" >"$1"
}

APT_UPDATED=
# Install the named Debian packages that are not installed yet; a no-op (and no apt call) otherwise.
apt_install_missing() {
  local pkg missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  changed "installing ${missing[*]}"
  # A fresh machine may be running its own apt at boot (apt-daily, unattended-upgrades): wait for its lock.
  if [ -z "$APT_UPDATED" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}
