"""Write ``assets/default.int8.onnx``: the bundled model quantised to int8, calibrated on rendered piano.

    python scripts/quantize_bundle.py [--source src/pianomtl/assets/default.onnx] [--out ...int8.onnx]

Calibration material: :data:`CALIBRATION_SEEDS` procedural pieces of
:data:`CALIBRATION_SECONDS` each (``pianomtl.synthesis.material.procedural``), rendered
with FluidSynth through Debian's FluidR3 and TimGM6mb SoundFonts in turn — seeds that
``tests/test_quantize.py`` does not use, so the agreement it measures is on other music.
Needs the ``[train]`` extra (FluidSynth, onnx). See :mod:`pianomtl.transcription.quantize`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

CALIBRATION_SEEDS = (1001, 1002, 1003, 1004)
CALIBRATION_SECONDS = 60.0
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")


def calibration_spectrograms() -> list[np.ndarray]:
    from pianomtl.constants import SAMPLE_RATE
    from pianomtl.synthesis.fluidsynth import render
    from pianomtl.synthesis.material import procedural
    from pianomtl.transcription.pipeline import array_features

    spectrograms = []
    for index, seed in enumerate(CALIBRATION_SEEDS):
        soundfont = SOUNDFONTS[index % len(SOUNDFONTS)]
        samples = render(procedural(np.random.default_rng(seed), CALIBRATION_SECONDS), soundfont)
        samples = (samples * (0.5 / max(float(np.max(np.abs(samples))), 1e-6))).astype(np.float32)
        spectrograms.append(array_features(samples, SAMPLE_RATE)[0])
    return spectrograms


def main(argv: list[str] | None = None) -> int:
    from pianomtl.transcription.onnx_model import DEFAULT_ONNX
    from pianomtl.transcription.quantize import quantize_int8

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_ONNX)
    parser.add_argument("--out", type=Path, default=DEFAULT_ONNX.with_name("default.int8.onnx"))
    args = parser.parse_args(argv)
    written = quantize_int8(args.source, args.out, calibration_spectrograms())
    print(f"wrote {written} ({written.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
