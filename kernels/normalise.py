"""uint8 RGB tiles -> normalised float tensors for the model. CPU reference; GPU kernels must match it."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
_triton_failed = False  # set once the Triton kernel has failed in this process: the reference runs from then on


def check_batch(batch: torch.Tensor) -> None:
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) uint8 batch, got {tuple(batch.shape)} {batch.dtype}")


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dtype=torch.float32) -> torch.Tensor:
    """``batch`` (B, 3, H, W) uint8 -> (x / 255 - mean) / std in ``dtype``, on the batch's device."""
    check_batch(batch)
    m = torch.tensor(mean, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    return ((batch.float() / 255.0 - m) / s).to(dtype)


def normalise_channels_last(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                            dtype=torch.float32) -> torch.Tensor:
    """The plain PyTorch model input: ``normalise``, a channels-last copy, then ``dtype``."""
    return normalise(batch, mean, std).contiguous(memory_format=torch.channels_last).to(dtype)


def model_input(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dtype=torch.float32) -> torch.Tensor:
    """``normalise``, channels-last, in ``dtype``: on CUDA in one pass of ``kernels.normalise_triton``
    where Triton is installed, else (and after that kernel ever fails here) the reference and a
    layout copy. The values are the same either way."""
    global _triton_failed
    check_batch(batch)  # a caller's mistake is not the kernel failing
    if batch.device.type == "cuda" and not _triton_failed:
        try:
            from kernels import normalise_triton

            return normalise_triton.normalise(batch, mean, std, dtype)
        except Exception as exc:  # noqa: BLE001 - no Triton, or it cannot build here: the reference is as good
            _triton_failed = True
            log.warning("Triton normalise kernel unavailable (%s); using the PyTorch one", exc)
    return normalise_channels_last(batch, mean, std, dtype)
