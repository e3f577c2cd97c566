"""Loading a model: from a weights file (the shipped one by default) or, for tests, from a factory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from models.cpu_bf16 import cpu_has_fast_bf16
from models.interface import ModelMeta
from models.spec import (
    ARCHITECTURES,
    PRECISIONS,
    SHIPPED_WEIGHTS,
    ModelSpec,
    WeightsError,
    add_meta_member,
    import_callable,
    meta_from_dict,
)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU. Asking for CUDA without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise WeightsError("--device cuda was asked for, but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise WeightsError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def autocast_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether to run under bf16 autocast: ``auto`` -> on CUDA, and on CPUs with native bf16."""
    if precision not in PRECISIONS:
        raise WeightsError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or cpu_has_fast_bf16()


def read_weights(path: str | Path) -> tuple[ModelMeta, dict]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = meta_from_dict(blob["meta"])
    except Exception as exc:  # any failure here means the file is not railsight weights
        raise WeightsError(f"not a railsight weights file: {path} ({exc})") from exc
    return meta, blob["state_dict"]


def save_weights(path: str | Path, module: torch.nn.Module, meta: ModelMeta) -> Path:
    return save_state(path, module.state_dict(), meta)


def save_state(path: str | Path, state: dict, meta: ModelMeta) -> Path:
    """Write a weights file (to a temporary name, then renamed, so a reader never sees half of one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().cpu() for k, v in state.items()}
    torch.save({"meta": dataclasses.asdict(meta), "state_dict": state}, tmp)
    add_meta_member(tmp, meta)
    tmp.replace(path)
    return path


def build_model(meta: ModelMeta) -> torch.nn.Module:
    if meta.arch not in ARCHITECTURES:
        raise WeightsError(f"unknown architecture {meta.arch!r} in weights metadata")
    return import_callable(ARCHITECTURES[meta.arch])(**meta.arch_args)


def load_model(spec: ModelSpec, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, ModelMeta]:
    """The model in eval mode on ``device``, and its metadata."""
    if spec.factory:
        module = import_callable(spec.factory)()
        meta = getattr(module, "meta", ModelMeta())
    else:
        meta, state = read_weights(spec.weights or SHIPPED_WEIGHTS)
        module = build_model(meta)
        module.load_state_dict(state)
    module.eval().to(device)
    return module, meta
