"""The model, loaded once per Dask worker process (a WorkerPlugin), not once per task."""

from __future__ import annotations

import os
import threading

import torch
from distributed import Client
from distributed.comm import get_address_host
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
    threads torch may use: the host's cores shared out over every Dask thread on that host, so
    concurrent tasks (and sibling worker processes) do not oversubscribe the CPU."""

    name = PLUGIN_NAME

    def __init__(self, spec: ModelSpec, device: str, threads_by_host: dict[str, int] | None = None) -> None:
        self.spec = spec
        self.device = device
        self.threads_by_host = threads_by_host or {}

    def setup(self, worker=None) -> None:
        if worker is not None and resolve_device(self.device).type == "cpu":
            host = get_address_host(worker.address)
            dask_threads = self.threads_by_host.get(host, worker.state.nthreads)
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, dask_threads)))
        get_model(self.spec, self.device)


def register_model(client: Client, spec: ModelSpec, device: str) -> None:
    """Load ``spec`` on every worker of ``client``'s cluster, now and on workers that join later.
    Registering again is cheap: each process keeps what it loaded."""
    threads: dict[str, int] = {}
    for address, w in client.scheduler_info(n_workers=-1).get("workers", {}).items():
        host = get_address_host(address)
        threads[host] = threads.get(host, 0) + int(w.get("nthreads", 1))
    client.register_plugin(ModelPlugin(spec, device, threads))
