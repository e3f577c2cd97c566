"""Averages of weights: an exponential moving average during training (``railsight train --ema
DECAY``), and the mean of two or more weight files (``python -m models.weight_average``).

The averaged copy follows the trained model step by step and is what the run writes: it smooths
out the last steps' noise, which a short run at a fine-tuning learning rate has plenty of. The
decay ramps up from (1 + n) / (10 + n) over the first updates so a run from scratch does not carry
its random start for thousands of steps. Batch-norm statistics are averaged with the weights (the
averaged weights need statistics of their own); integer buffers are copied.

The mean of weight files trained on from one start (runs continued from the same shipped weights lie
in one basin) can score better than each of them: the shipped weights since session 36 are the mean
of runs 17 and 29 (models/MODEL.md). Its floors are then chosen again (``railsight floors``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from models.loading import read_weights, save_state
from models.spec import WeightsError

Tensors = list[torch.Tensor] | tuple[torch.Tensor, ...]


def decay_at(decay: float, updates: int) -> float:
    """The decay applied at the ``updates``-th update (0-based) after the first copy."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def ema_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    """A copy of ``model`` that ``update_parameters(model)`` moves towards ``model`` by 1 - decay."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must be between 0 and 1, got {decay:g}")

    @torch.no_grad()
    def update(averaged: Tensors, current: Tensors, n_averaged: torch.Tensor | int) -> None:
        weight = 1.0 - decay_at(decay, int(n_averaged) - 1)
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # num_batches_tracked
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def mean_of_files(paths: list[str], out: str, note: str) -> Path:
    """Write the mean of the weight files ``paths`` to ``out``: each floating-point tensor averaged
    (batch-norm statistics included), integer buffers from the last file, the last file's metadata
    with an ``average`` record (``note`` says why) added to its history. The files must hold the
    same network."""
    if len(paths) < 2:
        raise ValueError("give two or more weight files to average")
    files = [read_weights(p) for p in paths]
    meta, last = files[-1]
    for path, (m, state) in zip(paths, files, strict=True):
        if m.arch != meta.arch or m.arch_args != meta.arch_args or set(state) != set(last):
            raise ValueError(f"{path} holds another network than {paths[-1]}")
    mean = {k: (sum(state[k] for _, state in files) / len(files) if v.is_floating_point() else v)
            for k, v in last.items()}
    extra = dict(meta.extra)
    extra["history"] = [*extra.get("history", []), {"kind": "average", "of": list(paths), "note": note}]
    extra["kind"] = "average"
    return save_state(out, mean, dataclasses.replace(meta, extra=extra))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.weight_average",
                                description="Write the mean of two or more weight files of one network.")
    p.add_argument("weights", nargs="+", help="weight files (the last one's metadata is kept)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--note", default="", help="why, for the history record")
    args = p.parse_args(argv)
    try:
        print(mean_of_files(args.weights, args.out, args.note))
    except (OSError, ValueError, WeightsError) as exc:
        print(f"weight_average: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
