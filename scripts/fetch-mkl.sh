#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Fetches the part of Intel oneMKL that the local server's CTranslate2 links for its int8 matrix
# products — the static sequential ILP64 libraries and the headers, from the PyPI wheels
# mkl-static and mkl-include (pinned, each wheel checked by sha256) — into a cache outside the
# repository, and points .deps/mkl-$VERSION at it: .cargo/config.toml gives that path to the
# build as MKLROOT (an MKLROOT already in the environment wins), so a new version here, with the
# same path changed there, rebuilds CTranslate2 against it. Idempotent.
#
#   ./scripts/fetch-mkl.sh
#
# Why: CTranslate2's other CPU backend here (ruy) repacks every weight matrix at every decoder
# step and has no VNNI/AMX kernels; with MKL a final decode of the LibriVox clips runs about
# three to five times faster (BENCHMARKS.md §7, "Intel MKL"). CTranslate2 uses MKL only on Intel CPUs
# (elsewhere it keeps ruy; CT2_USE_MKL=1 forces MKL). The wheels are for x86_64 Linux, as is
# test-server/Cargo.toml's MKL feature: on other machines nothing is fetched and the server builds
# with ruy alone.
#
# Destination: ${XDG_CACHE_HOME:-~/.cache}/fireworksstt/mkl-$VERSION/{include,lib}.
set -euo pipefail

cd "$(dirname "$0")/.."

# Changing VERSION: change the path in .cargo/config.toml with it, then `cargo clean -p ct2rs`
# (CTranslate2's CMake cache keeps the MKL directory it found first).
VERSION=2026.2.0
STATIC_SHA256=090e439bf202b45579c75d2ba50ff7ead05752d553a06aba79c3ed2b5247921b
INCLUDE_SHA256=889cc72057a1671fee1e9a8beb2fc4e0d222ba78c08b6d69584dae03fbec4822
# What CTranslate2 links with OPENMP_RUNTIME=NONE (ct2rs's default): see its CMakeLists.txt.
LIBS=(libmkl_core.a libmkl_intel_ilp64.a libmkl_sequential.a)
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/mkl-$VERSION"
LINK=.deps/mkl-$VERSION

if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
  echo "setup: the Intel MKL wheels are for x86_64 Linux only; the local server decodes with ruy alone"
  exit 0
fi

have_mkl() {
  [ -f "$DEST/include/mkl.h" ] && [ -f "$DEST/.complete" ] &&
    for lib in "${LIBS[@]}"; do [ -f "$DEST/lib/$lib" ] || return 1; done
}

link_mkl() {
  mkdir -p "$(dirname "$LINK")"
  ln -sfn "$DEST" "$LINK"
}

if have_mkl; then
  link_mkl
  echo "setup: Intel MKL already in $DEST"
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: python3 -m pip is needed to fetch Intel MKL (Debian package python3-pip)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "setup: fetching mkl-static==$VERSION and mkl-include==$VERSION from PyPI (250 MB)"
python3 -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: -d "$work" \
  "mkl-static==$VERSION" "mkl-include==$VERSION"
static_wheel="$(ls "$work"/mkl_static-"$VERSION"-*.whl)"
include_wheel="$(ls "$work"/mkl_include-"$VERSION"-*.whl)"
if ! echo "$STATIC_SHA256  $static_wheel" | sha256sum --check --status ||
  ! echo "$INCLUDE_SHA256  $include_wheel" | sha256sum --check --status; then
  echo "setup: the mkl-static or mkl-include wheel does not have the expected sha256; not installed" >&2
  exit 1
fi

# Unpack the headers and the three libraries only (the wheel's other libraries are 350 MB more).
rm -rf "$DEST"
mkdir -p "$DEST"
python3 - "$static_wheel" "$include_wheel" "$DEST" "${LIBS[@]}" <<'PY'
import os, sys, zipfile
static, include, dest, libs = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4:])
for wheel in (static, include):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if "/data/" not in name:
                continue
            rel = name.split("/data/", 1)[1]
            if rel.startswith("include/") or (rel.startswith("lib/") and os.path.basename(rel) in libs):
                target = os.path.join(dest, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(name) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
PY
touch "$DEST/.complete"
if ! have_mkl; then
  rm -rf "$DEST"
  echo "setup: the MKL wheels did not hold include/mkl.h and ${LIBS[*]}; not installed" >&2
  exit 1
fi
link_mkl
echo "setup: Intel MKL installed in $DEST"
