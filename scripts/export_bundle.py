"""Write the bundled model's ONNX twin, ``src/pianomtl/assets/default.onnx``, from ``default.pt``.

    python scripts/export_bundle.py                 # default.pt → default.onnx
    python scripts/export_bundle.py --check         # exit 1 if default.onnx is missing or stale

The lean install (no torch) transcribes with ``default.onnx``: the network as an ONNX
graph with the bundle's model configuration, decoder parameters and metadata in its
``metadata_props`` (:func:`pianomtl.transcription.export.export_onnx`), so it needs no
sidecar file. Rerun after every new ``default.pt`` (``scripts/bundle_model.py``) and
commit both. The script refuses to write a graph whose heads differ from the torch
model's by more than 1e-4 on random features, and ``--check`` compares the committed
graph with a fresh export of ``default.pt`` the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pianomtl.transcription.export import export_onnx, max_difference
from pianomtl.transcription.model_file import DEFAULT_BUNDLE, load_model
from pianomtl.transcription.onnx_model import DEFAULT_ONNX, OnnxModel

TOLERANCE = 1e-4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the .pt bundle (default: bundled)")
    parser.add_argument("--out", type=Path, default=DEFAULT_ONNX, help="the .onnx to write (default: beside it)")
    parser.add_argument("--check", action="store_true", help="only check that --out matches --bundle")
    args = parser.parse_args(argv)
    model, decoder, metadata = load_model(args.bundle)
    metadata = {k: v for k, v in metadata.items() if k not in ("path", "format", "model_config")}
    metadata["source_bundle"] = args.bundle.name
    if args.check:
        if not args.out.is_file():
            print(f"{args.out}: missing (run scripts/export_bundle.py)", file=sys.stderr)
            return 1
        onnx_model = OnnxModel(args.out)
        difference = max_difference(model, onnx_model)
        same_decoder = onnx_model.decoder == decoder
        print(f"{args.out}: max |difference| {difference:.2e} from {args.bundle.name}; same decoder: {same_decoder}")
        return 0 if difference <= TOLERANCE and same_decoder else 1
    export_onnx(model, args.out, decoder=decoder, metadata=metadata)
    difference = max_difference(model, OnnxModel(args.out))
    size = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.2f} MB); torch vs onnxruntime max |difference| {difference:.2e}")
    if difference > TOLERANCE:
        args.out.unlink()
        print(f"error: the ONNX graph disagrees with {args.bundle} (> {TOLERANCE}); removed it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
