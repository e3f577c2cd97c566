"""An exponential moving average of the weights during training (``railsight train --ema DECAY``).

The averaged copy follows the trained model step by step and is what the run writes: it smooths
out the last steps' noise, which a short run at a fine-tuning learning rate has plenty of. The
decay ramps up from (1 + n) / (10 + n) over the first updates so a run from scratch does not carry
its random start for thousands of steps. Batch-norm statistics are averaged with the weights (the
averaged weights need statistics of their own); integer buffers are copied.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

Tensors = list[torch.Tensor] | tuple[torch.Tensor, ...]


def decay_at(decay: float, updates: int) -> float:
    """The decay applied at the ``updates``-th update (0-based) after the first copy."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def ema_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    """A copy of ``model`` that ``update_parameters(model)`` moves towards ``model`` by 1 - decay."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must be between 0 and 1, got {decay:g}")

    @torch.no_grad()
    def update(averaged: Tensors, current: Tensors, n_averaged: torch.Tensor | int) -> None:
        weight = 1.0 - decay_at(decay, int(n_averaged) - 1)
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # num_batches_tracked
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
