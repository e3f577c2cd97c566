"""The model under ``torch.compile`` (opt-in: ``--compile``, ``RAILSIGHT_COMPILE``), always at one
batch size.

Inductor fuses the elementwise work between convolutions (the ReLUs, residual adds and bilinear
upsampling of this narrow UNet) into the kernels around it; with ``freezing`` it also folds batch
norm into the convolutions and treats the weights as constants, which only inference allows. The
issue's reference UNet runs twice as fast compiled on an H100 (510 against 250 Mpx/s); this one has
not been measured on a GPU yet (``bench/gpu_check.sh`` does). On this project's 2-core Intel CPU
with AMX, in bf16, it ran the benchmark's scenes 1.05-1.19x faster end to end (20,000 px: 4.31
against 3.62 Mpx/s), but each worker held 0.15-0.25 GB more, which put the 20,000 px peak at
3.02 GB, over the 3 GB target (2.66 eager), and compiled for 19-36 s before its first tile; in fp32
a compiled model step is slower than the eager fused one (0.86x). A ``railsight detect`` run starts
its own workers, so the wait would often outlast the gain. Hence off by default.

Compiled code is specialised to its input's shape, and a new batch size would compile again (tens
of seconds) in the middle of a scene. A pipeline's calls differ only in how many tiles they hold
(squares at a scene's edges hold fewer), so every call is padded with blank tiles to the one batch
the model was compiled for, and the padding's outputs are dropped.

In fp32 the compiled model finds the eager one's features (tests/test_compiled.py). In bf16 its fused
kernels round differently, so a few features can differ (``make run``'s sample yard: 632 railcars
and 100 track lines against 633 and 97).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


class StaticBatchModel(nn.Module):
    """``module`` compiled for inputs of exactly ``batch`` tiles; calls with fewer are padded with
    zeros (the normalised value of the channel means) and calls with more are run ``batch`` at a time."""

    def __init__(self, module: nn.Module, batch: int, backend: str | Callable = "inductor") -> None:
        super().__init__()
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.batch = batch
        self.compiled = torch.compile(module, dynamic=False, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n > self.batch:
            return torch.cat([self(part) for part in x.split(self.batch)])
        if n < self.batch:
            blank = x.new_zeros((self.batch - n, *x.shape[1:])).contiguous(memory_format=torch.channels_last)
            x = torch.cat([x, blank]).contiguous(memory_format=torch.channels_last)
        return self.compiled(x)[:n]


def compile_for_inference(module: nn.Module, device: torch.device, batch: int) -> StaticBatchModel:
    """An eval-mode, channels-last copy of ``module`` on ``device``, compiled for ``batch`` tiles a
    call. Compiling happens on the first call (``service.tile_tasks.warm_up`` makes one)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights as constants, BN folded: this process only infers
    plain = copy.deepcopy(module).eval().to(device).to(memory_format=torch.channels_last)
    for p in plain.parameters():
        p.requires_grad_(False)
    return StaticBatchModel(plain, batch)
