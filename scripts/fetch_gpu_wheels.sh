#!/usr/bin/env bash
# Wheels the device machine lacks (its python3 is 3.12 with torch, numpy, scipy, matplotlib, tqdm): downloaded
# here into .whl/ (ignored by git), carried to the device by `run(carry=[".whl"])` for scripts/train_gpu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
for wheel in soundfile==0.13.1 soxr==0.5.0.post1 mido==1.3.3 cffi==1.17.1 pycparser==2.22 packaging==24.2; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "$wheel"
done
ls -la .whl
