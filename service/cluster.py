"""The Dask client the pipeline runs on: an existing scheduler by address, or a LocalCluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from service.settings import PipelineSettings


def local_worker_count(device: str, requested: int | None) -> int:
    """One worker per GPU-less core pair is plenty on CPU; one worker feeds a GPU."""
    if requested:
        return requested
    cores = os.cpu_count() or 1
    return 1 if device == "cuda" else max(1, min(cores, 4))


@contextmanager
def dask_client(settings: PipelineSettings, *, workers: int | None = None) -> Iterator[Client]:
    """``settings.dask_scheduler`` set: connect to it. Otherwise start a LocalCluster of worker
    processes (one thread each: torch uses the cores inside the task) and close it afterwards."""
    if settings.dask_scheduler:
        with Client(settings.dask_scheduler, timeout="30s") as client:
            yield client
        return
    n = local_worker_count(settings.device, workers or settings.workers)
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=0,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def torch_threads_per_worker(n_workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))
