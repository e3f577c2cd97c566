"""A channel concatenation feeding a depthwise and then a pointwise convolution, run without it.

The UNet's head concatenates the upsampled decoder output with the stem's features at full
resolution, then runs a depthwise 3x3 and a 1x1 convolution. On a CPU, in bf16 and channels-last,
``torch.cat`` there is a strided copy of every pixel's channels into a new full-resolution map:
8.5 ms of the shipped UNet's 81 ms for 8 tiles of 320 px on one core. Neither convolution needs
the map. A depthwise convolution works channel by channel, so it splits into one per concatenated
part, and a 1x1 convolution over the concatenated channels is the sum of 1x1 convolutions over
each part's channels, which oneDNN adds as the next convolution's fused post-op. Same parameters,
same sums in another order.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.fx import GraphModule, Node
from torch.fx.passes.shape_prop import ShapeProp

from models.fused_conv import FusedConv2d


def split_concatenations(gm: GraphModule, probe: torch.Tensor) -> GraphModule:
    """Every ``torch.cat(parts, dim=1)`` whose only use is a depthwise ``FusedConv2d`` whose only use
    is a 1x1 ``FusedConv2d`` (neither with a fused add) rewritten as above. ``probe``, an input of
    the model, tells each part's channel count. Changes ``gm`` in place and returns it."""
    ShapeProp(gm).propagate(probe)
    graph = gm.graph
    for cat in [n for n in graph.nodes if n.op == "call_function" and n.target is torch.cat]:
        found = _pattern_after(gm, cat)
        if found is None:
            continue
        parts, (depthwise, dw), (pointwise, pw) = found
        widths = [int(p.meta["tensor_meta"].shape[1]) for p in parts]
        total: Node | None = None
        start = 0
        with graph.inserting_before(pointwise):
            for i, (part, width) in enumerate(zip(parts, widths, strict=True)):
                channels = slice(start, start + width)
                start += width
                last = i == len(parts) - 1
                name = f"{depthwise.target}_part{i}"
                gm.add_submodule(name, _sliced(dw, out=channels, inp=slice(None), groups=width, relu=dw.relu))
                node = graph.call_module(name, (part,))
                name = f"{pointwise.target}_part{i}"
                gm.add_submodule(name, _sliced(pw, out=slice(None), inp=channels, groups=1, relu=last and pw.relu,
                                               bias=last, add=total is not None))
                total = graph.call_module(name, (node, total) if total is not None else (node,))
        assert total is not None  # two parts or more
        pointwise.replace_all_uses_with(total)
        for dead in (pointwise, depthwise, cat):
            graph.erase_node(dead)
    graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


_Conv = tuple[Node, FusedConv2d]


def _pattern_after(gm: GraphModule, cat: Node) -> tuple[list[Node], _Conv, _Conv] | None:
    """(the concatenated parts, the depthwise convolution, the pointwise one), each convolution as its
    node and module, where ``cat`` starts the pattern ``split_concatenations`` rewrites, else None."""
    parts = cat.args[0] if cat.args else cat.kwargs.get("tensors")
    dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
    if dim != 1 or not isinstance(parts, (list, tuple)) or len(parts) < 2 or len(cat.users) != 1:
        return None
    if not all(isinstance(p, Node) and "tensor_meta" in p.meta for p in parts):  # not a tensor the probe gave a shape
        return None
    depthwise = next(iter(cat.users))
    dw = _fused(gm, depthwise)
    if dw is None or dw.add or dw.groups != dw.weight.shape[0] or dw.weight.shape[1] != 1 or len(depthwise.users) != 1:
        return None
    pointwise = next(iter(depthwise.users))
    pw = _fused(gm, pointwise)
    if pw is None or pw.add or pw.groups != 1 or tuple(pw.weight.shape[2:]) != (1, 1):
        return None
    return list(parts), (depthwise, dw), (pointwise, pw)


def _fused(gm: GraphModule, node: Node) -> FusedConv2d | None:
    if node.op != "call_module":
        return None
    module = gm.get_submodule(str(node.target))
    return module if isinstance(module, FusedConv2d) else None


def _sliced(conv: FusedConv2d, *, out: slice, inp: slice, groups: int, relu: bool, bias: bool = True,
            add: bool = False) -> FusedConv2d:
    """A ``FusedConv2d`` with ``conv``'s weights for output channels ``out`` and input channels
    ``inp`` (of a depthwise weight, whose input axis has one channel, only ``out`` slices)."""
    weight = conv.weight[out, inp if groups == 1 else slice(None)]
    plain = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], _pair(weight.shape[2:]), stride=_pair(conv.stride),
                      padding=_pair(conv.padding), dilation=_pair(conv.dilation), groups=groups,
                      bias=bias and conv.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if plain.bias is not None and conv.bias is not None:
            plain.bias.copy_(conv.bias[out])
    return FusedConv2d(plain, relu=relu, add=add, fused_dtypes=conv.fused_dtypes)


def _pair(values) -> tuple[int, int]:
    return int(values[0]), int(values[1])
