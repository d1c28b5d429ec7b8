# Shared helpers for peapod's scripts. Source it; do not run it.
# shellcheck shell=bash

PEAPOD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Where built artifacts (kernel, runner initramfs, test images) are cached.
# Outside the repo; shared by every checkout of the same user. Root's home is
# usually private, so root caches system-wide where an unprivileged test user
# (the one VM tests run as) can read it.
peapod_cache_dir() {
    if [ -n "${PEAPOD_CACHE:-}" ]; then
        echo "$PEAPOD_CACHE"
    elif [ "$(id -u)" = 0 ]; then
        echo /var/cache/peapod
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/peapod"
    fi
}

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# need_pkgs CMD:PKG ...: install the Debian packages whose commands are missing.
need_pkgs() {
    local missing=() pair cmd pkg
    for pair in "$@"; do
        cmd="${pair%%:*}" pkg="${pair#*:}"
        if [ "${cmd#/}" != "$cmd" ]; then
            [ -e "$cmd" ] || missing+=("$pkg")
        else
            command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}
