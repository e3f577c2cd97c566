"""The Dask client the pipeline runs on: an existing scheduler by address, or a LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import dask.system
import distributed.system
from distributed import Client, LocalCluster

from models.allocator import MALLOC_ENV
from service.quiet_close import quiet_close
from service.settings import PipelineSettings

CPU_WORKER_MEMORY = 1.5e9  # what one CPU worker holds at its peak: torch, the model, one batch
GPU_THREADS_PER_WORKER = 2  # threads of each worker process on a GPU host (see local_layout)
# Dask's statistical profiler walks every thread's stack in each worker 100 times a second for a
# dashboard the pipeline does not start: on the 2-core bench (10,000 px) it cost 1.3 of 38 worker
# CPU-seconds, and the scene took 4 % longer with it on.
# The event-loop health tick (50 a second by default) and the system monitor (2 a second) run in
# the scheduler, each nanny, each worker and the client: an idle 2-worker cluster burnt 0.08 CPU-s
# a second in the client process alone, taken from the workers on a 2-core host. At 1 s and 10 s
# it burns 0.012; they feed only the dashboard and the unresponsive-loop warning (still given after 3 s).
LOCAL_WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "10s",
}


def local_layout(requested_workers: int | None, device: str = "auto") -> tuple[int, int]:
    """(worker processes, threads each) for a LocalCluster.

    CPU: one single-threaded worker process per core (at most one per ``CPU_WORKER_MEMORY`` of RAM),
    each running torch on one core. Processes rather than threads: two model threads in one
    process ran at 0.7x the speed of two processes on this project's 2-core CPU (they share the
    interpreter and one malloc arena), and a core that vectorises one batch is not idle while the
    other runs the model.

    GPU: a process for every ``GPU_THREADS_PER_WORKER`` cores, all sharing the device (a CUDA
    context and a copy of the model each), so that the host work that feeds it runs on every core.
    Most of a worker's host time is vectorising, which holds the GIL for about half its time:
    threads of one process vectorised at 1.20-1.29x one thread's speed where processes gave
    1.61-1.69x (2-core AMD EPYC, ``python -m bench.host_parallel``), so one process of a thread per
    core (the layout before) would vectorise at 1.5-2.5 times one core's speed at most, whatever the
    core count. Each process keeps two threads, so one reads or waits on the device while the other
    vectorises. The model calls in flight are as many as before (one per thread), and so is the
    device memory they take; each process adds its CUDA context. Not yet measured on a GPU
    (``bench/gpu_check.sh`` compares it with one process). ``requested_workers`` splits the cores
    over that many processes instead."""
    # Dask's figures, which honour a container's CPU quota and memory limit (os.cpu_count and the
    # host's RAM do not: a 4 GB pod on a 16-core node would start 16 workers)
    cores = dask.system.CPU_COUNT
    if requested_workers:
        return requested_workers, max(1, cores // requested_workers)
    if device == "cuda" or (device == "auto" and gpu_present()):
        return max(1, cores // GPU_THREADS_PER_WORKER), GPU_THREADS_PER_WORKER
    by_memory = max(1, int(distributed.system.MEMORY_LIMIT // CPU_WORKER_MEMORY))
    return max(1, min(cores, by_memory)), 1


def gpu_present() -> bool:
    """An NVIDIA device on this host, seen without importing torch (the client never loads it)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


@contextmanager
def dask_client(settings: PipelineSettings, *, workers: int | None = None) -> Iterator[Client]:
    """``settings.dask_scheduler`` set: connect to it. Otherwise start a LocalCluster laid out by
    ``local_layout``, its workers' malloc set as ``models.allocator`` explains, and close it afterwards
    (``service.quiet_close``: without a worker's lost heartbeat as a traceback)."""
    if settings.dask_scheduler:
        with Client(settings.dask_scheduler, timeout="30s") as client:
            yield client
        return
    n, threads = local_layout(workers or settings.workers, settings.device)
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **MALLOC_ENV}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **LOCAL_WORKER_CONFIG}),
        LocalCluster(
            n_workers=n,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=None,
            # No dashboard, but the scheduler still serves its few HTTP routes: on a free port, not
            # Dask's 8787, which a second run on the same host found taken and warned about on stderr.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            memory_limit=0,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        quiet_close(client)
        yield client
