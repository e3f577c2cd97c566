"""The model, loaded once per Dask worker process (a WorkerPlugin), not once per task."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import dask.system
from distributed import Client
from distributed.comm import get_address_host
from distributed.diagnostics.plugin import WorkerPlugin

from models.interface import ModelMeta
from models.spec import CompileFor, ModelCalls, ModelSpec

if TYPE_CHECKING:  # torch is imported on the workers only: the client registers the plugin by value
    import torch

PLUGIN_NAME = "railsight-model"
log = logging.getLogger(__name__)

_lock = threading.Lock()
# Keyed by (spec, device, compiled): compiled is None for the eager model, else what it was
# compiled for (models.compiled).
_loaded: dict[tuple[ModelSpec, str, CompileFor | None], tuple[torch.nn.Module, ModelMeta, torch.device]] = {}
# Warm-ups are keyed by the same and the model calls they were run at (None: one tile).
_warm: set[tuple[ModelSpec, str, CompileFor | None, ModelCalls | None]] = set()
# How many times this process loaded a model; the tests read it to prove "once per worker".
load_count = 0


def get_model(spec: ModelSpec, device: str,
              compiled: CompileFor | None = None) -> tuple[torch.nn.Module, ModelMeta, torch.device]:
    """The process-wide model for (spec, device), loading it on first use; with ``compiled``,
    under torch.compile for calls of ``compiled.batch`` tiles (``models.compiled``)."""
    global load_count
    from models.compiled import compile_for_inference
    from models.inference import optimise_for_inference
    from models.loading import load_model, resolve_device

    key = (spec, device, compiled)
    with _lock:
        if key not in _loaded:
            dev = resolve_device(device)
            module, meta = load_model(spec, dev)
            module = (compile_for_inference(module, dev, compiled.batch) if compiled
                      else optimise_for_inference(module, dev))
            _loaded[key] = (module, meta, dev)
            load_count += 1
        return _loaded[key]


def _warm_up(spec: ModelSpec, device: str, compiled: CompileFor | None = None, calls: ModelCalls | None = None) -> None:
    """``service.tile_tasks.warm_up``, once per process: registering the plugin again (every scene
    does) finds this worker warm already. A failure is logged, not raised: the first task then pays
    the warm-up itself, or fails with the same error and tells the user."""
    with _lock:
        if (spec, device, compiled, calls) in _warm:
            return
        _warm.add((spec, device, compiled, calls))
    from service.tile_tasks import warm_up

    try:
        warm_up(spec, device, compiled, calls)
    except Exception:  # noqa: BLE001 - an optimisation; the task reports a real error itself
        log.warning("worker warm-up failed; the first task will pay for it", exc_info=True)


def is_warm(spec: ModelSpec, device: str, compiled: CompileFor | None = None, calls: ModelCalls | None = None) -> bool:
    """Whether this process has run ``service.tile_tasks.warm_up`` for (spec, device, compiled, calls)."""
    return (spec, device, compiled, calls) in _warm


def loaded_models() -> int:
    return load_count


class ModelPlugin(WorkerPlugin):
    """Loads the model when a worker starts (or when the plugin is registered), and sets how many
    threads torch may use: the host's cores shared out over every Dask thread on that host, so
    concurrent tasks (and sibling worker processes) do not oversubscribe the CPU."""

    name = PLUGIN_NAME

    def __init__(self, spec: ModelSpec, device: str, threads_by_host: dict[str, int] | None = None,
                 compiled: CompileFor | None = None, calls: ModelCalls | None = None) -> None:
        self.spec = spec
        self.device = device
        self.threads_by_host = threads_by_host or {}
        self.compiled = compiled
        self.calls = calls

    def setup(self, worker=None) -> None:
        import torch

        from models.allocator import keep_freed_memory
        from models.loading import resolve_device

        if worker is not None:
            if resolve_device(self.device).type == "cpu":
                keep_freed_memory()  # a LocalCluster's workers start with it; workers started elsewhere may not
            host = get_address_host(worker.address)
            dask_threads = self.threads_by_host.get(host, worker.state.nthreads)
            per_thread = max(1, dask.system.CPU_COUNT // max(1, dask_threads))  # quota-aware
            # On CUDA too: the host-side copies into pinned memory are torch's, and several GPU
            # worker processes share the host (see service.cluster.local_layout).
            torch.set_num_threads(per_thread)
            if self.compiled is not None:
                # Inductor compiles in a pool of subprocesses, by default one per core, in every worker
                # process: the eight GPU workers of a 16-core host would start 128 at once, each with
                # torch loaded. This process's share of the cores instead.
                import torch._inductor.config as inductor_config

                inductor_config.compile_threads = per_thread * worker.state.nthreads
        get_model(self.spec, self.device, self.compiled)
        if worker is not None:
            _warm_up(self.spec, self.device, self.compiled, self.calls)


def register_model(client: Client, spec: ModelSpec, device: str, *, compiled: CompileFor | None = None,
                   calls: ModelCalls | None = None) -> None:
    """Load ``spec`` on every worker of ``client``'s cluster, now and on workers that join later;
    with ``compiled``, compiled for its batch and precision, which the warm-up compiles before this
    returns; with ``calls``, warmed up by one model call of that shape (else of one tile).
    Registering again is cheap: each process keeps what it loaded and what it warmed up for.
    ``workers_device_kind`` says what device the workers run it on."""
    threads: dict[str, int] = {}
    for address, w in client.scheduler_info(n_workers=-1).get("workers", {}).items():
        host = get_address_host(address)
        threads[host] = threads.get(host, 0) + int(w.get("nthreads", 1))
    client.register_plugin(ModelPlugin(spec, device, threads, compiled, calls))


def workers_device_kind(client: Client, device: str) -> str:
    """The device kind ``device`` resolves to on the workers ("cuda" if any has one, else "cpu"),
    asked without loading a model: the workers', not this process's, which may have no GPU and no torch."""
    kinds = set(client.run(_device_kind, device).values())
    return "cuda" if "cuda" in kinds else "cpu"


def _device_kind(device: str) -> str:
    from models.loading import resolve_device

    return resolve_device(device).type
