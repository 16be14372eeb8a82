"""Choosing the compute device: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from ..errors import DKOARError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(choice: str = "auto"):
    import torch

    if choice not in DEVICE_CHOICES:
        raise DKOARError(f"unknown device {choice!r}; use one of {', '.join(DEVICE_CHOICES)}")
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise DKOARError("--device cuda was asked for, but PyTorch finds no CUDA GPU (use --device auto or cpu)")
    if choice == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DKOARError("--device mps was asked for, but Apple's MPS is not available (use --device auto or cpu)")
    return torch.device(choice)
