"""What names a model and what describes it, readable without torch.

The client side of the pipeline (the CLI, the job service's API) only needs a model's metadata:
its pixel size, halo and name. Importing torch for that costs about 0.5 GB of resident memory per
process, so the metadata is also written into the weights file as a JSON member of its zip
archive (``torch.save`` writes a zip; ``torch.load`` ignores members it does not know), and read
from there with the standard library. Weights files written before that fall back to torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from models.interface import ModelMeta

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "railsight.pt"
META_MEMBER = "railsight-meta.json"
# Model arithmetic: auto = bf16 autocast on CUDA and on CPUs with native bf16 (models.loading.autocast_bf16).
PRECISIONS = ("auto", "bf16", "fp32")

# Architecture name (stored in the weights' metadata) -> "module:callable" building it from arch_args.
ARCHITECTURES = {"unet": "models.unet:build_unet"}


class WeightsError(Exception):
    """Weights that are missing, unreadable or for an architecture we do not know."""

    code = "model_error"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from; small and picklable so it can travel to Dask workers."""

    weights: str | None = None
    factory: str | None = None

    def describe(self) -> str:
        return self.factory or str(self.weights or SHIPPED_WEIGHTS)


@dataclass(frozen=True)
class ModelCalls:
    """The shape of a scene's model calls: tiles per call, the side of their read window, and the
    precision setting they run at. A worker warmed up at that shape has paid what the first call of
    it costs (oneDNN's or cuDNN's set-up for it, its feature maps' memory) before a scene's first task."""

    batch: int
    window_px: int
    precision: str = "auto"


@dataclass(frozen=True)
class CompileFor(ModelCalls):
    """What a model compiled with torch.compile is specialised to (``models.compiled``): the calls
    it runs (autocast on or off is compiled in too)."""


def import_callable(ref: str):
    module_name, _, attr = ref.partition(":")
    if not attr:
        raise WeightsError(f"expected 'module:callable', got {ref!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise WeightsError(f"cannot import model factory {ref!r}: {exc}") from exc


def meta_from_dict(fields: dict) -> ModelMeta:
    known = {f.name for f in dataclasses.fields(ModelMeta)}
    meta = ModelMeta(**{k: v for k, v in fields.items() if k in known})
    return dataclasses.replace(
        meta, classes=tuple(meta.classes), mean=tuple(meta.mean), std=tuple(meta.std)  # type: ignore[arg-type]
    )


def add_meta_member(path: Path, meta: ModelMeta) -> None:
    """Append the metadata as JSON to a weights file ``torch.save`` just wrote."""
    with zipfile.ZipFile(path, "a") as archive:
        folder = archive.namelist()[0].split("/", 1)[0]  # torch puts every record under one folder
        archive.writestr(f"{folder}/{META_MEMBER}", json.dumps(dataclasses.asdict(meta)))


def read_meta(path: str | Path) -> ModelMeta:
    """A weights file's metadata, without torch where the file carries the JSON member."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith(f"/{META_MEMBER}")), None)
            if member is not None:
                return meta_from_dict(json.loads(archive.read(member)))
    except (zipfile.BadZipFile, ValueError, TypeError, KeyError) as exc:
        raise WeightsError(f"not a railsight weights file: {path} ({exc})") from exc
    from models.loading import read_weights  # an older file: only torch can read it

    return read_weights(path)[0]
