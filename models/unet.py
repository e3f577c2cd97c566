"""A compact UNet for the railsight model contract (see ``models.interface``).

Layout, for an input of ``H x W`` (multiples of 32):

    stem      3 -> w0          full resolution, one 3x3 conv
    down i    w(i-1) -> w(i)   stride-2 conv + residual 3x3 block, at 1/2 ... 1/2**depth
    context   dilated 3x3 convs at the coarsest level (rates 2 and 4), so one output pixel sees
              well over 30 m of ground: enough to tell a railcar (on a track) from a roof or a truck
    up i      bilinear x2, concat the skip, 3x3 conv
    head      at full resolution: concat the stem features, depthwise 3x3 + pointwise conv, then a
              1x1 to the 6 output channels (4 semantic logits, 2 core logits)

Full resolution holds only cheap layers (the stem and a depthwise-separable head): most of the
compute runs at 1/2 and below, which keeps a 640 x 640 tile around a few tenths of a second on
one CPU core. Every layer is a plain conv / batch norm / ReLU / bilinear upsample, so the model
runs in ``channels_last`` and under bf16 autocast without special cases.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.interface import OUTPUT_CHANNELS

DEFAULT_WIDTHS = (16, 16, 32, 64, 96, 128)
DEFAULT_BLOCKS = (0, 1, 1, 1, 1)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1, groups: int = 1, k: int = 3) -> nn.Sequential:
    """Conv (no bias), batch norm, ReLU: torchvision's ``Conv2dNormActivation`` with the same
    parameter names, built here because importing torchvision costs every worker process about
    170 MB of RSS, which the 3 GB budget of a 20,000 px scene on two CPU workers cannot spare."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation, dilation=dilation, groups=groups,
                  bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, dilation=dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class Down(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int) -> None:
        super().__init__()
        self.reduce = _conv(cin, cout, stride=2)
        self.block = nn.Sequential(*(ResBlock(cout) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.reduce(x))


class Up(nn.Module):
    """Feature-pyramid style: project the coarse map to the skip's width (1x1, at the coarse
    resolution, where it is cheap), upsample, add the skip, then one 3x3 conv."""

    def __init__(self, cin: int, cskip: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(cin, cskip, 1, bias=False)
        self.fuse = _conv(cskip, cskip)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.project(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(x + skip)


class UNet(nn.Module):
    """See the module docstring. ``widths[0]`` is the stem, then one width per downsampling;
    ``blocks[i]`` residual blocks follow the i-th downsampling."""

    def __init__(
        self,
        widths: tuple[int, ...] = DEFAULT_WIDTHS,
        blocks: tuple[int, ...] = DEFAULT_BLOCKS,
        out_channels: int = OUTPUT_CHANNELS,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        blocks = tuple(int(b) for b in blocks)
        if len(widths) < 3 or len(blocks) != len(widths) - 1:
            raise ValueError("widths needs a stem and at least two levels; blocks one count per level")
        self.stem = _conv(3, widths[0])
        self.downs = nn.ModuleList(
            Down(a, b, n) for a, b, n in zip(widths[:-1], widths[1:], blocks, strict=True)
        )
        self.context = nn.Sequential(ResBlock(widths[-1], dilation=2), ResBlock(widths[-1], dilation=4))
        # decoder: from the coarsest level up to 1/2 resolution, each Up lands on the next skip
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in range(len(widths) - 2, 0, -1))
        hw = widths[1] + widths[0]
        self.head = nn.Sequential(
            _conv(hw, hw, groups=hw),
            _conv(hw, widths[0], k=1),
            nn.Conv2d(widths[0], out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        skips = []
        y = stem
        for down in self.downs:
            y = down(y)
            skips.append(y)
        y = self.context(skips.pop())
        for up in self.ups:
            y = up(y, skips.pop())
        y = F.interpolate(y, size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([y, stem], dim=1))


def build_unet(
    widths: tuple[int, ...] | list[int] = DEFAULT_WIDTHS, blocks: tuple[int, ...] | list[int] = DEFAULT_BLOCKS
) -> UNet:
    """The factory named by ``models.loading.ARCHITECTURES['unet']``; ``arch_args`` are its kwargs."""
    return UNet(tuple(widths), tuple(blocks))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
