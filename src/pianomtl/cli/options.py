"""Argument types shared by the commands: each rejects a bad value with a one-line argparse error (exit 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _checked(
    name: str, parse: Callable[[str], T], accept: Callable[[T], bool], problem: str, doc: str
) -> Callable[[str], T]:
    """An argument type: ``parse`` the text, then refuse a value ``accept`` rejects ("TEXT ``problem``")."""

    def check(text: str) -> T:
        value = parse(text)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        return value

    check.__name__ = check.__qualname__ = name
    check.__doc__ = doc
    return check


probability = _checked(
    "probability",
    _number,
    lambda v: 0.0 <= v <= 1.0,
    "is outside [0, 1]",
    "A threshold on a probability: a number in [0, 1].",
)
non_negative = _checked("non_negative", _number, lambda v: v >= 0, "is negative", "A finite number ≥ 0.")
positive = _checked("positive", _number, lambda v: v > 0, "is not positive", "A finite number > 0.")
count = _checked(
    "count", _whole, lambda v: v >= 0, "is negative", 'A whole number ≥ 0 (0 often meaning "the default").'
)
positive_count = _checked("positive_count", _whole, lambda v: v >= 1, "is less than 1", "A whole number ≥ 1.")


def device(text: str) -> str:
    """A torch device this machine has (``cpu`` is answered without importing torch)."""
    from pianomtl.core.devices import check_device

    try:
        return check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


DECODER_FLAGS = {"method": "--decoder"}
"""Decoder options whose flag is not ``--field-name`` (``--decoder hmm`` chooses the note decoder)."""


def _decoder_value(name: str, limit: object) -> Callable[[str], object]:
    """An argument type for the decoder option ``name``: parsed by its kind, checked by its own range."""

    def check(text: str) -> object:
        kind = limit.kind  # type: ignore[attr-defined]
        value: object = text if kind is str else (_whole(text) if kind is int else _number(text))
        try:
            limit.check(name, value)  # type: ignore[attr-defined]
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).replace(f"{name} must", "must")) from None
        return value

    check.__name__ = name
    return check


def add_decoder_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`~pianomtl.transcription.decoders.DecoderParams` field, generated from its
    :class:`~pianomtl.transcription.decoders.Limit` (type, range, help), each defaulting to the model's own.

    A new decoder option therefore needs no argparse line; :func:`decoder_options` reads them back.
    """
    from pianomtl.transcription.decoders import DecoderParams

    group = parser.add_argument_group("decoder (each overrides only itself; default: the model's tuned value)")
    for name, limit in DecoderParams.limits().items():
        flag = DECODER_FLAGS.get(name, "--" + name.replace("_", "-"))
        if limit.kind is bool:
            group.add_argument(flag, dest=f"decoder_{name}", action="store_true", default=None, help=limit.help)
        else:
            group.add_argument(
                flag,
                dest=f"decoder_{name}",
                type=_decoder_value(name, limit),
                default=None,
                metavar=None if limit.choices else "X",
                choices=limit.choices or None,
                help=f"{limit.help}; {limit.describe()}",
            )


def decoder_options(args: argparse.Namespace) -> dict[str, object]:
    """The decoder options given on the command line (those left out keep the model's values)."""
    prefix = "decoder_"
    given = vars(args).items()
    return {key[len(prefix) :]: value for key, value in given if key.startswith(prefix) and value is not None}
