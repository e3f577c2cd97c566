"""The inference-optimised model gives the trained model's outputs."""

from __future__ import annotations

import pytest
import torch

from models.inference import optimise_for_inference
from models.loading import autocast_bf16, cpu_has_fast_bf16
from models.spec import WeightsError
from models.unet import build_unet


def test_folded_batch_norm_keeps_the_outputs():
    torch.manual_seed(0)
    model = build_unet()
    # Non-trivial running statistics, so folding has something to fold.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64))
    model.eval()
    fast = optimise_for_inference(model, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        want = model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(want, got, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original is left as it was"


def test_bf16_on_the_cpu_keeps_the_classes():
    """CPU bf16 autocast (used where the CPU has native bf16) changes scores slightly, not the answer."""
    torch.manual_seed(0)
    model = build_unet().eval()
    fast = optimise_for_inference(model, torch.device("cpu"))
    x = torch.randn(2, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = fast(x)[:, :4].softmax(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fast(x)[:, :4].float().softmax(1)
    assert (want - got).abs().max() < 0.05
    assert (want.argmax(1) == got.argmax(1)).float().mean() > 0.99


def test_precision_choice():
    cpu = torch.device("cpu")
    assert autocast_bf16(cpu, "fp32") is False
    assert autocast_bf16(cpu, "bf16") is True
    assert autocast_bf16(cpu, "auto") is cpu_has_fast_bf16()
    assert autocast_bf16(torch.device("cuda"), "auto") is True
    with pytest.raises(WeightsError, match="unknown precision 'fp8'"):
        autocast_bf16(cpu, "fp8")
