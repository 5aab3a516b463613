#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Builds and runs every benchmark program, in the order BENCHMARKS.md reports them.
#
#   benches/run-all.sh [VENV]      (VENV: where the reference Python client is installed;
#                                   default ~/.cache/fireworksstt/bench-venv, created if
#                                   missing, which downloads it from PyPI)
#
# It takes about 15 minutes, plus the optimized build the first time (about 4 minutes). Each
# program prints its own figures. Run it on an otherwise idle machine: every program prints how
# much CPU other processes used meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/bench-venv}
# 1,000 streams need more than 2,000 descriptors in the client and 1,000 in the server.
ulimit -n "$(ulimit -Hn)"
if [ ! -x "$VENV/bin/python" ]; then
    benches/setup-reference-client.sh "$VENV"
fi
cargo bench --no-run   # the bench profile, so the runs below do not build again
cargo bench --bench cpu -- --python "$VENV/bin/python"
cargo bench --bench latency
cargo bench --bench scale
cargo bench --bench profile
