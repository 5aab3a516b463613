#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Installs the fireworksstt plugin (libgstfireworks.so) system-wide, so that
# `gst-inspect-1.0 fireworksstt` finds it without GST_PLUGIN_PATH.
#
#   sudo ./scripts/install.sh                       # into GStreamer's plugin directory
#   ./scripts/install.sh --plugindir ~/.local/share/gstreamer-1.0/plugins   # per user
#   DESTDIR=/tmp/stage ./scripts/install.sh         # staged, for packaging
#   sudo ./scripts/install.sh --uninstall
#
# Options: --plugindir DIR (default: pkg-config's pluginsdir for gstreamer-1.0), --profile NAME
# (cargo profile to build and install, default release), --no-build (install the library already
# built in target/), --uninstall.
#
# The library is built first with cargo (`cargo build --release --lib`, a full optimized build of
# about 4 minutes the first time). Under sudo, root's PATH usually has no cargo (rustup installs
# it in the user's ~/.cargo/bin): the build then runs as the user who called sudo, with their
# cargo, and only the copy runs as root. Without any cargo, the library already built in target/
# is installed, with a warning when the sources are newer than it. The script says which it did.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install: $*"; }
fail() { echo "install: $*" >&2; exit 1; }

plugindir=""
uninstall=""
profile="release"
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --plugindir) [ $# -ge 2 ] || fail "--plugindir needs a directory"; plugindir="$2"; shift 2 ;;
    --profile) [ $# -ge 2 ] || fail "--profile needs a cargo profile name"; profile="$2"; shift 2 ;;
    --no-build) build=""; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: unknown argument $1 (--help lists the options)" >&2; exit 2 ;;
  esac
done
# cargo's "dev" profile builds into target/debug.
case "$profile" in dev | debug) profile_dir=debug ;; *) profile_dir="$profile" ;; esac

if [ -z "$plugindir" ]; then
  plugindir=$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null || true)
  [ -n "$plugindir" ] || fail "cannot ask pkg-config for GStreamer's plugin directory: \
run scripts/setup.sh (it installs libgstreamer1.0-dev) or pass --plugindir DIR"
fi
target="${DESTDIR:-}${plugindir}/libgstfireworks.so"

if [ -n "$uninstall" ]; then
  if [ -e "$target" ]; then
    rm -f "$target"
    say "removed $target"
  else
    say "nothing to remove: $target does not exist"
  fi
  exit 0
fi

# The cargo to build with, and the user to build as ("" = whoever runs this script).
cargo=""
build_user=""
if command -v cargo >/dev/null 2>&1; then
  cargo=$(command -v cargo)
fi
if [ -z "$cargo" ] && [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [ -n "$user_home" ] && [ -x "$user_home/.cargo/bin/cargo" ]; then
    cargo="$user_home/.cargo/bin/cargo"
    build_user="$SUDO_USER"
  fi
fi
if [ -z "$cargo" ] && [ -x "${HOME:-/nonexistent}/.cargo/bin/cargo" ]; then
  cargo="$HOME/.cargo/bin/cargo"
fi

lib="${CARGO_TARGET_DIR:-target}/$profile_dir/libgstfireworks.so"
case "$profile" in
  release) profile_args=(--release) ;;
  dev | debug) profile_args=() ;;
  *) profile_args=(--profile "$profile") ;;
esac
if [ -n "$build" ] && [ -n "$cargo" ]; then
  if [ -n "$build_user" ]; then
    say "building as $build_user with $cargo (root's PATH has no cargo)"
    if command -v runuser >/dev/null 2>&1; then
      runuser -u "$build_user" -- env HOME="$user_home" PATH="$user_home/.cargo/bin:$PATH" \
        "$cargo" build "${profile_args[@]}" --lib
    else
      sudo -u "$build_user" -H env PATH="$user_home/.cargo/bin:$PATH" \
        "$cargo" build "${profile_args[@]}" --lib
    fi
  else
    say "building with $cargo"
    "$cargo" build "${profile_args[@]}" --lib
  fi
  how="built it with cargo${build_user:+ as $build_user}"
else
  [ -f "$lib" ] || fail "no cargo found (PATH, ~/.cargo/bin${SUDO_USER:+, ~$SUDO_USER/.cargo/bin}) \
and no library built in $lib: build it first as your user with \
\`cargo build ${profile_args[*]} --lib\`, then run this script again"
  if [ -n "$build" ]; then
    say "no cargo found: installing the library already built in $lib"
  fi
  newer=$(find src Cargo.toml Cargo.lock build.rs -newer "$lib" -print -quit 2>/dev/null || true)
  if [ -n "$newer" ]; then
    echo "install: warning: $newer is newer than $lib: the installed plugin may not match the \
sources (rebuild with \`cargo build ${profile_args[*]} --lib\`)" >&2
  fi
  how="used the library already built in $lib"
fi
[ -f "$lib" ] || fail "the build did not produce $lib"

install -d "${DESTDIR:-}${plugindir}"
install -m 644 "$lib" "$target"
if command -v strip >/dev/null 2>&1; then
  strip --strip-unneeded "$target"
fi
say "installed $target ($how)"
if [ -z "${DESTDIR:-}" ]; then
  # A fresh registry entry, so the first gst-inspect-1.0 already sees it.
  if gst-inspect-1.0 fireworksstt >/dev/null 2>&1; then
    say "gst-inspect-1.0 fireworksstt works"
  else
    echo "install: installed, but gst-inspect-1.0 cannot load it yet: is $plugindir in \
GStreamer's plugin path (GST_PLUGIN_SYSTEM_PATH, GST_PLUGIN_PATH)?" >&2
  fi
fi
