"""The model, loaded once per Dask worker process (a WorkerPlugin), not once per task."""

from __future__ import annotations

import threading

import torch
from distributed.diagnostics.plugin import WorkerPlugin

from models.inference import optimise_for_inference
from models.interface import ModelMeta
from models.loading import ModelSpec, load_model, resolve_device

PLUGIN_NAME = "railsight-model"

_lock = threading.Lock()
_loaded: dict[tuple[ModelSpec, str], tuple[torch.nn.Module, ModelMeta, torch.device]] = {}
# How many times this process loaded a model; the tests read it to prove "once per worker".
load_count = 0


def get_model(spec: ModelSpec, device: str) -> tuple[torch.nn.Module, ModelMeta, torch.device]:
    """The process-wide model for (spec, device), loading it on first use."""
    global load_count
    key = (spec, device)
    with _lock:
        if key not in _loaded:
            dev = resolve_device(device)
            module, meta = load_model(spec, dev)
            module = optimise_for_inference(module, dev)
            _loaded[key] = (module, meta, dev)
            load_count += 1
        return _loaded[key]


def loaded_models() -> int:
    return load_count


class ModelPlugin(WorkerPlugin):
    """Loads the model when a worker starts (or when the plugin is registered), and sets how many
    threads torch may use so worker processes share the cores instead of fighting over them."""

    name = PLUGIN_NAME

    def __init__(self, spec: ModelSpec, device: str, torch_threads: int | None = None) -> None:
        self.spec = spec
        self.device = device
        self.torch_threads = torch_threads

    def setup(self, worker=None) -> None:
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        get_model(self.spec, self.device)
