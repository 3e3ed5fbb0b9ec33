"""``pianomtl export``: arguments of the ONNX export (:mod:`pianomtl.transcription.export`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pianomtl.cli import options


def configure(parser: argparse.ArgumentParser) -> None:
    from pianomtl.transcription.export import DEFAULT_OPSET

    parser.add_argument("checkpoint", nargs="?", default=None, help="training checkpoint or bundle (default: bundled)")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    parser.add_argument(
        "--opset", type=options.positive_count, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the torch-vs-onnxruntime comparison")


def run(args: argparse.Namespace) -> int:
    from pianomtl.constants import N_BINS
    from pianomtl.transcription.export import OnnxModel, export_onnx, max_difference
    from pianomtl.transcription.model_file import ModelFileError, load_model

    try:
        model, decoder, metadata = load_model(args.checkpoint)
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.onnx)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, out, decoder=decoder, metadata=metadata, opset=args.opset)
    except OSError as error:
        print(f"error: cannot write {out}: {error.strerror or error}", file=sys.stderr)
        return 2
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB, opset {args.opset}, input [batch, T+10, {N_BINS}])")
    if not args.no_check:
        difference = max_difference(model, OnnxModel(out))
        print(f"torch vs onnxruntime: max |difference| {difference:.2e} over all heads")
        if difference > 1e-4:
            print("error: the ONNX graph disagrees with the torch model", file=sys.stderr)
            return 1
    return 0
