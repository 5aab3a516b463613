#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Installs what benches/vad_compare.py needs in a virtual environment outside the repository:
# numpy, onnxruntime==1.23.2 and earshot==1.2.2 from PyPI. Silero's model is the one
# scripts/fetch-speech-model.sh installed.
#
#   benches/setup-vad-compare.sh [VENV]   (default ~/.cache/fireworksstt/vad-venv)
#   VENV/bin/python benches/vad_compare.py
set -euo pipefail
VENV=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/fireworksstt/vad-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet numpy "onnxruntime==1.23.2" "earshot==1.2.2"
"$VENV/bin/python" -c "import numpy, onnxruntime, earshot; print('VAD comparison ready in $VENV')"
