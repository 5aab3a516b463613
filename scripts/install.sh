#!/usr/bin/env bash
# Builds fireworksstt in release mode and installs the plugin system-wide, so that
# `gst-inspect-1.0 fireworksstt` finds it without GST_PLUGIN_PATH.
#
#   sudo ./scripts/install.sh                       # into GStreamer's plugin directory
#   ./scripts/install.sh --plugindir ~/.local/share/gstreamer-1.0/plugins   # per user
#   DESTDIR=/tmp/stage ./scripts/install.sh         # staged, for packaging
#   sudo ./scripts/install.sh --uninstall
set -euo pipefail
cd "$(dirname "$0")/.."

plugindir=""
uninstall=""
while [ $# -gt 0 ]; do
  case "$1" in
    --plugindir) plugindir="$2"; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$plugindir" ]; then
  plugindir=$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null || true)
  if [ -z "$plugindir" ]; then
    echo "install: cannot ask pkg-config for GStreamer's plugin directory; run scripts/setup.sh or pass --plugindir" >&2
    exit 1
  fi
fi
target="${DESTDIR:-}${plugindir}/libgstfireworks.so"

if [ -n "$uninstall" ]; then
  rm -f "$target"
  echo "install: removed $target"
  exit 0
fi

cargo build --release --lib
install -d "${DESTDIR:-}${plugindir}"
install -m 644 -s target/release/libgstfireworks.so "$target"
echo "install: $target"
if [ -z "${DESTDIR:-}" ]; then
  # A fresh registry entry, so the first gst-inspect-1.0 already sees it.
  gst-inspect-1.0 fireworksstt >/dev/null 2>&1 && echo "install: gst-inspect-1.0 fireworksstt works" \
    || echo "install: installed, but gst-inspect-1.0 cannot load it yet (check GST_PLUGIN_SYSTEM_PATH)" >&2
fi
