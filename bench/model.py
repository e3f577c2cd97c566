"""Which model the benchmark runs: the shipped weights when they exist, else an untrained UNet.

A randomly initialised UNet costs exactly what the trained one costs, so speed figures hold; its
detections are meaningless, and the JSON line says ``"untrained": true``. The factories below are
seeded, so every Dask worker and the baselines in the benchmark process run the *same* weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from models.spec import SHIPPED_WEIGHTS, ModelSpec

if TYPE_CHECKING:  # only the factories need torch; the benchmark's client side stays without it
    import torch

UNTRAINED = "bench.model:untrained_unet"
TINY = "bench.model:tiny_unet"


def untrained_unet() -> torch.nn.Module:
    """The shipped architecture with its default widths, seeded random weights."""
    import torch

    from models.unet import build_unet

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_unet()


def tiny_unet() -> torch.nn.Module:
    """A much narrower UNet with the same layout: for the benchmark's own smoke test only."""
    import torch

    from models.unet import build_unet

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_unet(widths=(4, 4, 8, 8), blocks=(0, 0, 0))


def choose_spec(weights: str | None, factory: str | None) -> tuple[ModelSpec, dict]:
    """``factory`` wins, then ``weights``, then the shipped weights, then the untrained UNet.
    Returns the spec and the ``model`` member of the JSON line."""
    if factory:
        return ModelSpec(factory=factory), {"source": factory, "untrained": factory in (UNTRAINED, TINY)}
    if weights:
        return ModelSpec(weights=str(weights)), {"source": str(weights), "untrained": False}
    if Path(SHIPPED_WEIGHTS).is_file():
        return ModelSpec(), {"source": str(SHIPPED_WEIGHTS), "untrained": False}
    return ModelSpec(factory=UNTRAINED), {
        "source": UNTRAINED,
        "untrained": True,
        "why": f"no shipped weights at {SHIPPED_WEIGHTS}: an untrained UNet of the same architecture (same speed)",
    }
