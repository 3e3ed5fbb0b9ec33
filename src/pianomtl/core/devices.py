"""Which compute device a command may use: a one-line error before any work, never a traceback later."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def set_torch_threads(threads: int) -> None:
    """Give torch ``threads`` CPU threads when torch is installed (0: leave its default).

    The lean install has no torch: there the count reaches onnxruntime through the
    :class:`~pianomtl.transcription.pipeline.Transcriber` alone, so nothing is imported here.
    """
    if threads <= 0:
        return
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def check_device(device: object) -> str:
    """``device`` as a string if torch can run on it here, else :class:`ValueError` (one line).

    Accepts ``cpu``, ``cuda``, ``cuda:N``, ``mps`` and any other device type torch knows
    and reports available. ``cpu`` is answered without importing torch.
    """
    text = str(device).strip()
    if text == "cpu":
        return text
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return text
    if parsed.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            raise ValueError(f"device {text!r} is not available: this torch build has no CUDA support (use cpu)")
        if not torch.cuda.is_available():
            raise ValueError(f"device {text!r} is not available: no CUDA GPU is visible (use cpu)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"device {text!r} is not available: {count} CUDA device(s) visible (cuda:0 … cuda:{count - 1})"
            )
        return text
    backend = getattr(torch.backends, parsed.type, None) or getattr(torch, parsed.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ValueError(f"device {text!r} is not available on this machine (use cpu)")
    return text


def bf16_is_native(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 in hardware (else bf16 autocast may be slower than fp32)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False
