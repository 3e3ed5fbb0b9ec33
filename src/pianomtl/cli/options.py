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
