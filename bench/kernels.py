"""GPU kernels against the plain PyTorch they replace, one JSON line each (issue #6: a kernel stays
only where it beats PyTorch). ``python -m bench.kernels`` on a CUDA machine; elsewhere it prints
one line saying why it measured nothing.

- ``normalise``: ``kernels.normalise_triton`` against the reference, a layout copy and the cast,
  on the pipeline's CUDA model call (``service.pipeline.default_batch``'s windows of 320 px).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from bench.monitor import emit
from kernels.normalise import normalise_channels_last

MEAN, STD = (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)


def _median_ms(fn, reps: int) -> float:
    """Median of ``reps`` timed calls, each between CUDA events, after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_normalise(batch: int, window: int, reps: int) -> dict:
    from kernels import normalise_triton

    x = torch.randint(0, 256, (batch, 3, window, window), dtype=torch.uint8, device="cuda")
    line: dict = {"bench": "kernels", "kernel": "normalise", "gpu": torch.cuda.get_device_name(),
                  "shape": list(x.shape), "reps": reps}
    for dtype in (torch.bfloat16, torch.float32):
        def plain(dtype: torch.dtype = dtype) -> torch.Tensor:
            return normalise_channels_last(x, MEAN, STD, dtype)

        def fused(dtype: torch.dtype = dtype) -> torch.Tensor:
            return normalise_triton.normalise(x, MEAN, STD, dtype)

        same = torch.equal(plain(), fused())
        torch_ms, triton_ms = _median_ms(plain, reps), _median_ms(fused, reps)
        name = str(dtype).removeprefix("torch.")
        line[name] = {"torch_ms": round(torch_ms, 4), "triton_ms": round(triton_ms, 4),
                      "triton_speedup": round(torch_ms / triton_ms, 3), "same_values": same,
                      "mpx_s_triton": round(x.numel() / 3 / triton_ms / 1e3, 1)}
    return line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=104, help="tiles per call (the pipeline's CUDA default at 320 px)")
    p.add_argument("--window", type=int, default=320, help="side of a tile's read window in px")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", type=Path, default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        line = {"bench": "kernels", "skipped": "needs a CUDA GPU (the kernels are Triton; "
                "tests/test_normalise_triton.py checks their values on a CPU under Triton's interpreter)"}
    else:
        line = bench_normalise(args.batch, args.window, args.reps)
    emit(line, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
