"""Turning a trained model into a fast inference model, with the same outputs (to float rounding).

Batch norm is folded into the convolutions before it (torch.fx's conv/bn fusion): in eval mode a BN
layer is a per-channel affine map, so it can live in the conv's weights and bias, and the separate
pass over every feature map, which dominates a narrow network on a CPU, disappears (about 1.8x
on the shipped UNet on this project's 2-core CPU). On a CPU each convolution then also takes in the
ReLU and residual add after it (``models.fused_conv``: 1.6x again in bf16). Channels-last memory
suits both oneDNN and cuDNN. ``infer`` is the model step of every pipeline task: uint8 tiles in, probabilities out.

Test-time augmentation (``views``): the model is run on 2, 4 or 8 of a tile's eight flipped and
transposed views and the probabilities are averaged, each mapped back first. The network was trained
on flips and quarter turns, so every view is a fair look at the tile, and their mean is steadier at
car ends and tarp edges than one look (models/MODEL.md has the measured gains). Each view costs one
more model pass.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading

import numpy as np
import torch
from torch.fx import GraphModule
from torch.fx.experimental.optimization import fuse

from kernels.normalise import model_input
from models.cpu_bf16 import cpu_has_fast_bf16
from models.fused_conv import fuse_conv_activations
from models.interface import TTA_VIEWS, ModelMeta, split_output
from models.split_concat import split_concatenations

log = logging.getLogger(__name__)


def _flipped(x: torch.Tensor, k: int) -> torch.Tensor:
    """Bit 0 of ``k`` flips left-right, bit 1 top-bottom (each its own inverse)."""
    dims = [d for bit, d in ((1, 3), (2, 2)) if k & bit]
    return x.flip(dims) if dims else x


def _view(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the eight views (0 = as is): bit 2 transposes, then ``_flipped``."""
    return _flipped(x.transpose(2, 3) if k & 4 else x, k)


def _unview(y: torch.Tensor, k: int) -> torch.Tensor:
    """``_view``'s inverse: the same flips, then the transpose."""
    y = _flipped(y, k)
    return y.transpose(2, 3) if k & 4 else y


def optimise_for_inference(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """An eval-mode copy with BN folded and channels-last weights, and on a CPU each convolution
    fused with the ReLU and residual add after it (``models.fused_conv``); the module itself when it
    cannot be traced (a model with data-dependent control flow keeps working, just unfused)."""
    module = module.eval()
    try:
        fused = fuse(copy.deepcopy(module).cpu())
    except Exception as exc:  # noqa: BLE001 - any tracing failure just means "no fusion"
        log.info("model not fused for inference (%s); running it as is", exc)
        fused = module
    if device.type == "cpu" and isinstance(fused, GraphModule):
        fused = _with_fused_activations(fused)
    if device.type == "cuda":
        # A scene's model calls have one shape (its batch of read windows, and a shorter last call per
        # task), so cuDNN's per-shape search for the fastest convolution is paid once and kept.
        torch.backends.cudnn.benchmark = True
    return fused.to(device).to(memory_format=torch.channels_last)


def _with_fused_activations(gm: GraphModule) -> torch.nn.Module:
    """``models.fused_conv``'s rewrite of ``gm``, kept only where oneDNN runs it here and it gives
    ``gm``'s fp32 outputs on a probe tile; ``gm`` itself otherwise."""
    if not torch.backends.mkldnn.is_available():
        return gm
    dtypes = frozenset({torch.float32, torch.bfloat16} if cpu_has_fast_bf16() else {torch.float32})
    probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    try:
        candidate = split_concatenations(fuse_conv_activations(copy.deepcopy(gm), dtypes), probe)
        candidate = candidate.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            want, got = gm(probe), candidate(probe)
            if torch.bfloat16 in dtypes:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    candidate(probe)
        if not torch.allclose(want, got, atol=1e-4, rtol=1e-4):
            raise RuntimeError(f"outputs differ by up to {float((want - got).abs().max()):.2g}")
    except Exception as exc:  # noqa: BLE001 - an op this build lacks, a layer it cannot take: run unfused
        log.info("convolutions not fused with their activations (%s); running them apart", exc)
        return gm
    return candidate


_local = threading.local()


def thread_stream(device: torch.device) -> torch.cuda.Stream:
    """This thread's own CUDA stream on ``device``. A GPU worker runs one task per host thread; on the
    one default stream every thread's copies and kernels queue behind each other's, while on a stream
    each, one thread's host-to-device copy and copy back overlap another's model. (The caching
    allocators keep a block's memory for its stream, and a pinned buffer until its copy is done.)"""
    streams = _local.__dict__.setdefault("streams", {})
    if device not in streams:
        streams[device] = torch.cuda.Stream(device=device)
    return streams[device]


def input_dtype(device: torch.device, bf16: bool) -> torch.dtype:
    """The dtype the model's input is normalised into: on CUDA under bf16 autocast bf16 at once
    (autocast would cast it at the first convolution anyway, and the Triton kernel writes it in
    the same pass); elsewhere float32."""
    return torch.bfloat16 if device.type == "cuda" and bf16 else torch.float32


def infer(module: torch.nn.Module, meta: ModelMeta, device: torch.device, rgb: np.ndarray,
          *, bf16: bool, views: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, S, S) uint8 -> class probabilities (B, 4, S, S) and core probabilities (B, 2, S, S),
    float32 on the host. Channels-last; under bf16 autocast when ``bf16`` (what
    ``models.loading.autocast_bf16`` decides: CUDA, and CPUs with native bf16), else fp32. With
    ``views`` > 1, the mean over that many views of each tile (8 includes transposes, so tiles must
    then be square)."""
    if views not in TTA_VIEWS:
        raise ValueError(f"views must be one of {TTA_VIEWS}, got {views}")
    batch = torch.from_numpy(rgb)
    cuda = device.type == "cuda"
    with torch.inference_mode(), (torch.cuda.stream(thread_stream(device)) if cuda else contextlib.nullcontext()):
        if cuda:
            batch = batch.pin_memory().to(device, non_blocking=True)
        x = model_input(batch, meta.mean, meta.std, input_dtype(device, bf16))
        probs, cores = views_mean(module, x, views=views, bf16=bf16)
        return probs.cpu().numpy(), cores.cpu().numpy()


def views_mean(module: torch.nn.Module, x: torch.Tensor, *, views: int, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Class and core probabilities of normalised tiles ``x``, averaged over the first ``views`` of
    their eight views (each mapped back first), on ``x``'s device, under bf16 autocast when ``bf16``."""

    def look(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = module(_view(x, k).contiguous(memory_format=torch.channels_last))
        return split_output(_unview(logits, k))

    probs, cores = look(0)
    for k in range(1, views):
        p, c = look(k)
        probs, cores = probs + p, cores + c
    if views > 1:
        probs, cores = probs / views, cores / views
    return probs, cores
