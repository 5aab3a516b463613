#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Builds the gst-plugins-rs plugins that `transcriberbin` needs, for
# tests/integration/transcriberbin.rs, on Debian bookworm (GStreamer 1.22). Called from
# scripts/setup.sh; safe to run again (idempotent).
#
#   ./scripts/build-transcriberbin-plugins.sh        # as root, or as a user with sudo
#   FIREWORKSSTT_PLUGIN_CACHE=/some/dir ./scripts/build-transcriberbin-plugins.sh
#
# What it does:
#   1. Installs the Debian packages needed to build and run the plugins (checked with dpkg-query
#      first, so nothing is touched when they are present).
#   2. Fetches the crates.io sources of gst-plugin-closedcaption =0.13.7 (transcriberbin,
#      tttocea708, cea708mux, cea608tott, …) and gst-plugin-textwrap =0.13.0 (textwrap) through
#      cargo itself (a throwaway manifest plus `cargo fetch`). These are the newest releases
#      that build against GStreamer 1.22 (gstreamer-rs 0.23). 0.13.7's transcriberbin needs
#      mux-method=cea708 there, since 1.22 has no cea608mux.
#   3. Copies each crate's source into the cache directory and builds it there with
#      `cargo build --release`, with its own target directory in the cache. Nothing is built or
#      written inside this repository.
#   4. Copies the two plugin libraries into "$CACHE/plugins", the directory the test scans:
#        libgstrsclosedcaption.so   (lib name gstrsclosedcaption)
#        libgsttextwrap.so          (lib name gsttextwrap; there is no "rs" in its name)
#
# Cache directory: ${FIREWORKSSTT_PLUGIN_CACHE:-$HOME/.cache/fireworksstt/gst-plugins-rs-0.13}.
# The build is skipped when both libraries exist there and are newer than this script; delete
# the directory (or touch this script) to force a rebuild.
#
# Dependency resolution (reproducible and compatible with the crates' MSRV, Rust 1.71):
#   * gst-plugin-closedcaption 0.13.7 is published with its Cargo.lock; it is built with
#     `--locked`, i.e. exactly the versions upstream released with (May 2025).
#   * gst-plugin-textwrap 0.13.0 is published without one. Its lock file is seeded with the
#     closedcaption one, so that the shared dependencies (glib, gstreamer-rs, …) get the same
#     versions and the target directory shares their builds; the crates only textwrap uses are
#     then pinned below (TEXTWRAP_PINS) to versions whose rust-version is <= 1.71, so newer
#     releases of them can't change or break the build.
#   With rustc 1.95 the closedcaption lock builds as is (only 6 lint warnings); no other
#   `cargo update --precise` pins were needed.
#
# Network: only crates.io (through cargo) and the Debian mirrors (through apt-get).
#
# Timing (2 cores, rustc 1.95, empty cache, crates already downloaded): 4 min 15 s to 4 min 50 s
# (closedcaption 2 min 45 s to 3 min 30 s, textwrap about 1 min 15 s); ~500 MB in target/.
# A re-run with the plugins in place takes 0.15 s.
set -euo pipefail
shopt -s inherit_errexit  # `set -e` also inside $(…), which the helpers below run in

CLOSEDCAPTION_VERSION="0.13.7"
TEXTWRAP_VERSION="0.13.0"

# gst-plugin-textwrap's own dependencies, pinned (name@version, applied in this order) for a
# reproducible build with rust-version <= 1.71. Without them cargo takes textwrap 0.16.4, which
# needs Rust 1.88 and pulls in the ICU4X segmenter (~20 more crates), and bumps serde/quote past
# the versions of the seeded closedcaption lock file (serde 1.0.229 brings serde_core and syn 3).
TEXTWRAP_PINS=(
  textwrap@0.16.1
  serde@1.0.219           # = closedcaption's lock; serde_derive follows
  quote@1.0.40            # = closedcaption's lock
  smawk@0.3.2
  unicode-linebreak@0.1.5
  unicode-width@0.1.14
  hyphenation@0.8.4
  hyphenation_commons@0.8.4
  fst@0.4.7
  bincode@1.3.3
  pocket-resources@0.3.2
)

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
CACHE="${FIREWORKSSTT_PLUGIN_CACHE:-${HOME:?HOME is not set}/.cache/fireworksstt/gst-plugins-rs-0.13}"
PLUGINS="$CACHE/plugins"
CC_LIB="libgstrsclosedcaption.so"
TW_LIB="libgsttextwrap.so"

log() { echo "build-transcriberbin-plugins: $*"; }

# --- 1. Debian packages --------------------------------------------------------------------------
PACKAGES=(
  pkg-config
  libgstreamer1.0-dev               # gstreamer-rs
  libgstreamer-plugins-base1.0-dev  # gstreamer-video (the caption meta)
  libpango1.0-dev                   # pango / pangocairo (cea608overlay, cea708overlay)
  libcairo2-dev                     # cairo-rs, cairo-gobject
  gstreamer1.0-plugins-base         # audioconvert, audioresample, videotestsrc, appsrc/appsink
  gstreamer1.0-plugins-bad          # cccombiner, ccconverter, ccextractor (C closedcaption plugin)
  gstreamer1.0-tools                # gst-inspect-1.0, to look at the built plugins
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "system packages already installed"
fi

# --- Up to date? ---------------------------------------------------------------------------------
up_to_date() {
  [ -f "$PLUGINS/$CC_LIB" ] && [ -f "$PLUGINS/$TW_LIB" ] &&
    [ "$PLUGINS/$CC_LIB" -nt "$SCRIPT" ] && [ "$PLUGINS/$TW_LIB" -nt "$SCRIPT" ]
}
if up_to_date; then
  log "plugins are up to date in $PLUGINS"
  log "  $PLUGINS/$CC_LIB"
  log "  $PLUGINS/$TW_LIB"
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "build-transcriberbin-plugins: cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

started=$(date +%s)
mkdir -p "$CACHE/fetch/src" "$CACHE/src" "$PLUGINS"

# --- 2. Fetch the sources through cargo ----------------------------------------------------------
# A throwaway package that depends on both; `cargo fetch` downloads and unpacks them into
# $CARGO_HOME/registry/src, and `cargo metadata` says where. The empty [workspace] keeps cargo
# from attaching it to an enclosing workspace if the cache is placed inside one.
cat >"$CACHE/fetch/Cargo.toml" <<EOF
[package]
name = "fireworksstt-fetch-transcriberbin-plugins"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
gst-plugin-closedcaption = "=$CLOSEDCAPTION_VERSION"
gst-plugin-textwrap = "=$TEXTWRAP_VERSION"

[workspace]
EOF
: >"$CACHE/fetch/src/lib.rs"
log "fetching gst-plugin-closedcaption $CLOSEDCAPTION_VERSION and gst-plugin-textwrap $TEXTWRAP_VERSION from crates.io"
(cd "$CACHE/fetch" && cargo fetch --quiet)
metadata="$(cd "$CACHE/fetch" && cargo metadata --format-version 1 --offline)"

# Prints the directory cargo unpacked crate $1 version $2 into.
crate_dir() {
  local manifest
  manifest="$(printf '%s' "$metadata" |
    grep -o "\"manifest_path\":\"[^\"]*/$1-$2/Cargo.toml\"" | head -n 1 |
    sed -e 's/^"manifest_path":"//' -e 's/"$//')"
  if [ -z "$manifest" ] || [ ! -f "$manifest" ]; then
    echo "build-transcriberbin-plugins: could not find the source of $1 $2" >&2
    exit 1
  fi
  dirname "$manifest"
}

# Copies crate $1 version $2 to $CACHE/src/$1-$2 (once) and prints that directory.
prepare_source() {
  local dest="$CACHE/src/$1-$2" from
  if [ ! -f "$dest/.fireworksstt-prepared" ]; then
    from="$(crate_dir "$1" "$2")" || return 1
    rm -rf "$dest" "$dest.tmp"
    cp -R "$from" "$dest.tmp"
    chmod -R u+w "$dest.tmp"
    # Stand-alone package, even if the cache sits inside another workspace.
    printf '\n[workspace]\n' >>"$dest.tmp/Cargo.toml"
    : >"$dest.tmp/.fireworksstt-prepared"
    mv "$dest.tmp" "$dest"
  fi
  printf '%s\n' "$dest"
}

CC_SRC="$(prepare_source gst-plugin-closedcaption "$CLOSEDCAPTION_VERSION")"
TW_SRC="$(prepare_source gst-plugin-textwrap "$TEXTWRAP_VERSION")"

# --- 3. Build ------------------------------------------------------------------------------------
export CARGO_TARGET_DIR="$CACHE/target"

# textwrap: seed the lock file with closedcaption's (shared versions), then pin its own crates.
if [ ! -f "$TW_SRC/.fireworksstt-locked" ]; then
  cp "$CC_SRC/Cargo.lock" "$TW_SRC/Cargo.lock"
  # Resolving keeps the seeded versions and adds what is missing (unused ones are dropped).
  (cd "$TW_SRC" && cargo metadata --format-version 1 --quiet >/dev/null)
  for pin in "${TEXTWRAP_PINS[@]}"; do
    (cd "$TW_SRC" && cargo update --quiet -p "${pin%@*}" --precise "${pin#*@}")
  done
  : >"$TW_SRC/.fireworksstt-locked"
fi

log "building gst-plugin-closedcaption $CLOSEDCAPTION_VERSION in $CC_SRC (target: $CARGO_TARGET_DIR)"
(cd "$CC_SRC" && cargo build --release --locked --lib)
log "building gst-plugin-textwrap $TEXTWRAP_VERSION in $TW_SRC"
(cd "$TW_SRC" && cargo build --release --locked --lib)

# --- 4. Install into the plugin directory --------------------------------------------------------
for lib in "$CC_LIB" "$TW_LIB"; do
  cp "$CARGO_TARGET_DIR/release/$lib" "$PLUGINS/$lib.tmp"
  mv -f "$PLUGINS/$lib.tmp" "$PLUGINS/$lib"
done

log "built in $(($(date +%s) - started)) s"
log "plugins are in $PLUGINS"
log "  $PLUGINS/$CC_LIB"
log "  $PLUGINS/$TW_LIB"
log "try: GST_PLUGIN_PATH=$PLUGINS gst-inspect-1.0 transcriberbin"
