#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Installs the reference client (LiveKit's livekit-plugins-fireworksai, from PyPI) in a
# virtual environment outside the repository, for `cargo bench --bench cpu`.
#
#   benches/setup-reference-client.sh [VENV]   (default ~/.cache/fireworksstt/bench-venv)
#
# Needs python3 with venv and access to PyPI.
set -euo pipefail
VENV=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/bench-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet "livekit-plugins-fireworksai==1.8.9" "livekit-agents==1.8.9"
"$VENV/bin/python" -c "import livekit.plugins.fireworksai, livekit.agents; print('reference client ready in $VENV')"
