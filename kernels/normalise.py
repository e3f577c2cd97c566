"""uint8 RGB tiles -> normalised float tensors for the model. CPU reference; GPU kernels must match it."""

from __future__ import annotations

import torch


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dtype=torch.float32) -> torch.Tensor:
    """``batch`` (B, 3, H, W) uint8 -> (x / 255 - mean) / std in ``dtype``, on the batch's device."""
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) uint8 batch, got {tuple(batch.shape)} {batch.dtype}")
    m = torch.tensor(mean, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    return ((batch.float() / 255.0 - m) / s).to(dtype)
