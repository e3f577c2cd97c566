"""The inference-optimised model gives the trained model's outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.fx.experimental.optimization import fuse
from torch.nn import functional as F

from kernels.normalise import normalise
from models.cpu_bf16 import cpu_has_fast_bf16
from models.fused_conv import FusedConv2d, fuse_conv_activations
from models.inference import _unview, _view, infer, optimise_for_inference
from models.interface import ModelMeta
from models.loading import autocast_bf16
from models.spec import WeightsError
from models.split_concat import split_concatenations
from models.unet import ResBlock, build_unet


def _unet_with_running_statistics() -> torch.nn.Module:
    """Non-trivial batch-norm statistics, so folding has something to fold."""
    torch.manual_seed(0)
    model = build_unet()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64))
    return model.eval()


def test_folded_batch_norm_keeps_the_outputs():
    model = _unet_with_running_statistics()
    fast = optimise_for_inference(model, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        want = model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(want, got, atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original is left as it was"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_every_convolution_runs_fused_with_its_relu_and_residual_add():
    model = _unet_with_running_statistics()
    fast = optimise_for_inference(model, torch.device("cpu"))
    fused = [m for m in fast.modules() if isinstance(m, FusedConv2d)]
    # The head's depthwise and pointwise convolutions run once per concatenated part (models.split_concat).
    assert len(fused) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) + 2
    assert not any(isinstance(m, (torch.nn.Conv2d, torch.nn.ReLU)) for m in fast.modules())
    assert not any(n.target in (F.relu, torch.relu) for n in fast.graph.nodes), "a ReLU left unfused"
    assert sum(m.add for m in fused) == sum(isinstance(m, ResBlock) for m in model.modules()) + 1  # and the head's sum
    # The unfused path (a dtype oneDNN may not run fused on this CPU) gives the fused path's answer.
    unfused = fuse_conv_activations(fuse(copy.deepcopy(model)), frozenset()).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.allclose(unfused(x), fast(x), atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain, quick = unfused(x)[:, :4].float().softmax(1), fast(x)[:, :4].float().softmax(1)
    assert (plain - quick).abs().max() < 0.05
    assert (plain.argmax(1) == quick.argmax(1)).float().mean() > 0.99


class _ConcatHead(torch.nn.Module):
    """Two feature maps concatenated, then a depthwise and a pointwise convolution, as the UNet's head;
    ``other`` is a concatenation the rewrite must leave alone (its result is used twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.Conv2d(3, 7, 1)
        self.depthwise = torch.nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.pointwise = torch.nn.Conv2d(12, 4, 1)

    def forward(self, x):
        joined = torch.cat([F.relu(self.a(x)), self.b(x)], dim=1)
        other = torch.cat([x, x], dim=1)
        return F.relu(self.pointwise(F.relu(self.depthwise(joined)))), other + other


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_a_concatenation_before_depthwise_and_pointwise_convolutions_is_not_built():
    torch.manual_seed(0)
    model = _ConcatHead().eval()
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    fused = fuse_conv_activations(torch.fx.symbolic_trace(copy.deepcopy(model)), frozenset({torch.float32}))
    split = split_concatenations(fused, x)
    cats = [n for n in split.graph.nodes if n.target is torch.cat]
    assert len(cats) == 1 and cats[0].args[0][0].op == "placeholder", "only the other concatenation is left"
    assert sum(isinstance(m, FusedConv2d) for m in split.modules()) == 2 + 2 * 2
    with torch.inference_mode():
        (want, want_other), (got, got_other) = model(x), split(x)
    assert torch.allclose(want, got, atol=1e-5, rtol=1e-5)
    assert torch.equal(want_other, got_other)


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


def test_every_view_maps_back_and_the_eight_differ():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    seen = set()
    for k in range(8):
        assert torch.equal(_unview(_view(x, k), k), x), k
        seen.add(_view(x, k).numpy().tobytes())
    assert len(seen) == 8


@pytest.mark.parametrize("views,transforms", [(2, [1]), (8, range(8))])
def test_averaged_views_make_the_answer_follow_the_tile(views, transforms):
    """A model that is not symmetric gives, averaged over a group of views, the same answer for a
    flipped tile as the flipped answer: what TTA is for (a tile seen from either side agrees)."""
    torch.manual_seed(0)
    model = optimise_for_inference(build_unet().eval(), torch.device("cpu"))
    meta = ModelMeta(name="t", version="0")
    rgb = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    cpu = torch.device("cpu")
    probs, cores = infer(model, meta, cpu, rgb.numpy(), bf16=False, views=views)
    plain, _ = infer(model, meta, cpu, rgb.numpy(), bf16=False)
    plain_flipped, _ = infer(model, meta, cpu, _view(rgb, 1).contiguous().numpy(), bf16=False)
    assert not np.allclose(_unview(torch.from_numpy(plain_flipped), 1).numpy(), plain, atol=1e-3), "not symmetric"
    for k in transforms:
        turned = _view(rgb, k).contiguous().numpy()
        p, c = infer(model, meta, cpu, turned, bf16=False, views=views)
        np.testing.assert_allclose(_unview(torch.from_numpy(p), k).numpy(), probs, atol=1e-5)
        np.testing.assert_allclose(_unview(torch.from_numpy(c), k).numpy(), cores, atol=1e-5)


def test_one_view_is_the_plain_model_and_other_counts_are_refused():
    torch.manual_seed(0)
    model = optimise_for_inference(build_unet().eval(), torch.device("cpu"))
    meta = ModelMeta(name="t", version="0")
    rgb = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    probs, _ = infer(model, meta, torch.device("cpu"), rgb, bf16=False)
    with torch.inference_mode():
        x = normalise(torch.from_numpy(rgb), meta.mean, meta.std).contiguous(memory_format=torch.channels_last)
        want = model(x)[:, :4].softmax(1).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-6)
    with pytest.raises(ValueError, match="views must be one of"):
        infer(model, meta, torch.device("cpu"), rgb, bf16=False, views=3)
