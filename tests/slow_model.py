"""The oracle model, slowed down (a fixed delay per tile), so tests can act while a job runs:
cancel it, kill its worker, restart its API."""

from __future__ import annotations

import time

import torch

from tests.oracle_model import ColourOracle

DELAY_PER_TILE_S = 0.25


class SlowOracle(ColourOracle):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(DELAY_PER_TILE_S * x.shape[0])
        return super().forward(x)


def build() -> SlowOracle:
    return SlowOracle()
