"""uint8 RGB tiles -> the model's input in one pass on the GPU (Triton).

The plain PyTorch way (``kernels.normalise.normalise``, then channels-last, then autocast's cast)
reads and writes the batch about six times in float32: uint8 -> float, / 255, - mean, / std, the
layout copy, the bf16 cast. This kernel reads each uint8 pixel once and writes it once, already
normalised, channels-last and in the model's dtype. Same signature as the CPU reference and the
same values: the same float32 arithmetic, then the cast (round to nearest even, as ``Tensor.to``).

Runs on CUDA tensors; on a CPU only under Triton's interpreter (``TRITON_INTERPRET=1``, set before
triton is imported), which is how CI checks it. ``bench.kernels`` times it against the PyTorch way.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.normalise import check_batch

BLOCK_PX = 1024  # pixels per program: three channels of each, 3 KB of uint8 in, 6 KB of bf16 out

_OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@triton.jit
def _normalise_kernel(x_ptr, y_ptr, n_px, hw, m0, m1, m2, s0, s1, s2, BLOCK: tl.constexpr):
    # x: (B, 3, H, W) contiguous uint8; y: the same shape channels-last, so pixel p's three values
    # are y[3p], y[3p + 1], y[3p + 2], with p running over batch and then rows and columns.
    p = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = p < n_px
    b, q = p // hw, p % hw
    src = b * 3 * hw + q
    v0 = tl.load(x_ptr + src, mask=inside).to(tl.float32)
    v1 = tl.load(x_ptr + src + hw, mask=inside).to(tl.float32)
    v2 = tl.load(x_ptr + src + 2 * hw, mask=inside).to(tl.float32)
    out_ty = y_ptr.dtype.element_ty
    tl.store(y_ptr + 3 * p, ((v0 / 255.0 - m0) / s0).to(out_ty, fp_downcast_rounding="rtne"), mask=inside)
    tl.store(y_ptr + 3 * p + 1, ((v1 / 255.0 - m1) / s1).to(out_ty, fp_downcast_rounding="rtne"), mask=inside)
    tl.store(y_ptr + 3 * p + 2, ((v2 / 255.0 - m2) / s2).to(out_ty, fp_downcast_rounding="rtne"), mask=inside)


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dtype=torch.float32) -> torch.Tensor:
    """``batch`` (B, 3, H, W) uint8 -> (x / 255 - mean) / std in ``dtype``, channels-last, on the batch's device."""
    check_batch(batch)
    if dtype not in _OUT_DTYPES:
        raise ValueError(f"dtype must be one of {_OUT_DTYPES}, got {dtype}")
    batch = batch.contiguous()
    out = torch.empty(batch.shape, dtype=dtype, device=batch.device, memory_format=torch.channels_last)
    b, _, h, w = batch.shape
    n_px = b * h * w
    if n_px:
        grid = (triton.cdiv(n_px, BLOCK_PX),)
        _normalise_kernel[grid](batch, out, n_px, h * w, *map(float, mean), *map(float, std), BLOCK=BLOCK_PX)
    return out
