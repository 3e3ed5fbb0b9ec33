"""Write ``tests/data/golden_default.npz``: the bundled model's expected output on a fixed clip.

    python scripts/make_golden.py          # after a new bundled model (default.pt + default.onnx)

The clip is the test suite's fixture performance (``tests/conftest.py``:
``clip_performance``, eight notes and one pedal press, 3 s) rendered by FluidSynth
through Debian's FluidR3 SoundFont, scaled to a 0.5 peak and stored as 16-bit PCM,
exactly as the ``rendered_clip`` fixture does. The file holds:

* ``features`` — its ``[150, 144]`` spectrogram (float32), so the model check does not
  depend on the renderer;
* ``on``, ``int``, ``off``, ``vel``, ``sus`` — the bundled model's activations on those
  features (float16: the test's tolerance, 2e-3, is well above float16's rounding);
* ``notes`` — the decoded notes ``[key, onset frame, offset frame, velocity]`` (int32)
  and ``pedal`` — the pedal events ``[frame, value]``; ``decoder`` — the decoder
  parameters used (JSON).

``tests/test_lean.py::test_golden_output_of_the_bundled_model`` runs the bundled model
(both backends) on the stored features and compares, and checks that rendering the
clip again still gives the stored features. Regenerate only when the model or the
features change on purpose, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import CLIP_SECONDS, FLUID_R3, clip_performance  # noqa: E402
from pianomtl.constants import FPS, SAMPLE_RATE, TASKS  # noqa: E402
from pianomtl.synthesis.fluidsynth import render  # noqa: E402
from pianomtl.transcription.decoders import decode  # noqa: E402
from pianomtl.transcription.pipeline import Transcriber, file_features  # noqa: E402

GOLDEN = ROOT / "tests" / "data" / "golden_default.npz"


def rendered_clip_features() -> np.ndarray:
    """The fixture clip's spectrogram, made as ``conftest.rendered_clip`` makes the clip."""
    samples = render(clip_performance(), FLUID_R3, duration=CLIP_SECONDS)
    samples = (samples * (0.5 / float(np.max(np.abs(samples))))).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "clip.wav"
        sf.write(str(wav), samples, SAMPLE_RATE, subtype="PCM_16")
        return file_features(wav)[0]


def note_rows(performance) -> tuple[np.ndarray, np.ndarray]:
    notes = np.array(
        [[n.key, round(n.onset * FPS), round(n.offset * FPS), n.velocity] for n in performance.notes], dtype=np.int32
    ).reshape(-1, 4)
    pedal = np.array([[round(p.time * FPS), p.value] for p in performance.pedal], dtype=np.int32).reshape(-1, 2)
    return notes, pedal


def main() -> int:
    features = rendered_clip_features()
    transcriber = Transcriber()  # the bundled model, default backend
    activations = transcriber.activations(features)
    notes, pedal = note_rows(decode(activations, transcriber.decoder))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        GOLDEN,
        features=features.astype(np.float32),
        **{task: activations[task].astype(np.float16) for task in TASKS},
        notes=notes,
        pedal=pedal,
        decoder=np.array(json.dumps(transcriber.decoder.to_dict())),
    )
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1e3:.0f} kB): {len(notes)} notes, {len(pedal)} pedal events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
