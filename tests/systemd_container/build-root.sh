#!/usr/bin/env bash
# Build (once) a minimal Debian 12 root that boots systemd as PID 1 under
# systemd-nspawn, with a lingering test user whose user manager starts at boot.
#
# Prints the root's path as the last line of stdout. Idempotent: the root lives in
#   ${OAUTH_BRIDGE_ROOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-bridge-systemd-root}/<hash>
# where <hash> covers this whole file (package list, user, masks), so editing the
# recipe rebuilds, and nothing else does. Built in a temp dir and renamed into
# place, under a lock, so a crashed or concurrent build never leaves a half root.
#
# Needs root, and the Debian packages debootstrap + systemd-container (installed
# here when missing). About 2 minutes the first time, milliseconds afterwards.
set -euo pipefail

SUITE=bookworm                  # systemd 252, python3.11 (>= 3.11 as pyproject needs)
MIRROR=${OAUTH_BRIDGE_ROOT_MIRROR:-http://deb.debian.org/debian}
TEST_USER=tester
TEST_UID=1000
PACKAGES=(
    systemd systemd-sysv        # PID 1 + user manager (systemd --user)
    dbus dbus-user-session      # the user bus that `systemctl --user` talks to
    libpam-systemd              # pam_systemd for user@.service's PAM stack
    python3 python3-venv        # venv + ensurepip (python3-pip-whl) for the test user
    ca-certificates             # if the guest ever pip-installs from an index
    iproute2                    # ss, to show the listening sockets
)
# Units that cost boot time or do periodic work a throwaway CI container never needs.
MASK=(
    console-getty.service getty@tty1.service
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
    e2scrub_all.timer e2scrub_reap.service fstrim.timer
    systemd-tmpfiles-clean.timer
)

log() { printf '[build-root] %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root (debootstrap, chroot)"; exit 1; }

self=$(readlink -f "${BASH_SOURCE[0]}")
hash=$(sha256sum "$self" | cut -c1-16)
cache=${OAUTH_BRIDGE_ROOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-bridge-systemd-root}
root=$cache/$hash
mkdir -p "$cache"

if [ -x "$root/usr/lib/systemd/systemd" ]; then   # fast path, no lock needed
    echo "$root"
    exit 0
fi

exec 9>"$cache/.lock"
flock -w 900 9 || { log "timed out waiting for $cache/.lock"; exit 1; }
if [ -x "$root/usr/lib/systemd/systemd" ]; then   # someone built it while we waited
    echo "$root"
    exit 0
fi

missing=()
for tool in debootstrap:debootstrap systemd-nspawn:systemd-container; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

tmp=$(mktemp -d "$cache/.build.$hash.XXXXXX")
cleanup() {
    # debootstrap mounts proc/sys in the target while it runs; never rm through a mount.
    findmnt -rn -o TARGET | grep -F "$tmp" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

start=$(date +%s)
log "debootstrap $SUITE into $tmp ($(IFS=,; echo "${PACKAGES[*]}"))"
mkdir -p "$cache/debs"   # keeps the .debs: a rebuild after a recipe edit downloads little
debootstrap --variant=minbase --cache-dir="$cache/debs" \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    "$SUITE" "$tmp" "$MIRROR" >&2

log "configuring"
chroot "$tmp" useradd --create-home --uid "$TEST_UID" --user-group --shell /bin/bash "$TEST_USER"
# What `loginctl enable-linger` writes: user@1000.service starts at boot.
mkdir -p "$tmp/var/lib/systemd/linger"
touch "$tmp/var/lib/systemd/linger/$TEST_USER"
for unit in "${MASK[@]}"; do ln -sf /dev/null "$tmp/etc/systemd/system/$unit"; done
echo "oauth-bridge-ci" >"$tmp/etc/hostname"
# Shrink: the apt lists and caches are never used inside the container.
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/cache/apt/archives/*.deb
printf 'recipe=%s\nbuilt=%s\n' "$hash" "$(date -u +%FT%TZ)" >"$tmp/etc/oauth-bridge-root"
chmod 755 "$tmp"   # mktemp made it 0700; the guest's / must be world-readable

mv -T "$tmp" "$root"
trap - EXIT
# Older recipes' roots are dead weight (a few hundred MB each).
find "$cache" -mindepth 1 -maxdepth 1 -type d -name '????????????????' ! -name "$hash" \
    -exec rm -rf --one-file-system {} + || true
log "built $root in $(( $(date +%s) - start ))s"
echo "$root"
