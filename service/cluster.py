"""The Dask client the pipeline runs on: an existing scheduler by address, or a LocalCluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from service.settings import PipelineSettings


def local_layout(requested_workers: int | None) -> tuple[int, int]:
    """(worker processes, threads each) for a LocalCluster. One process by default: every process
    carries its own torch (about 0.7 GB), while threads share one model. Its threads run tile
    batches side by side, each with a share of the cores for torch (see ModelPlugin), so one
    batch's reading and vectorising overlap another's model time. On a GPU the same layout keeps
    the device fed from several IO threads."""
    cores = os.cpu_count() or 1
    workers = requested_workers or 1
    return workers, max(2, cores // workers)


@contextmanager
def dask_client(settings: PipelineSettings, *, workers: int | None = None) -> Iterator[Client]:
    """``settings.dask_scheduler`` set: connect to it. Otherwise start a LocalCluster of worker
    processes (one thread each: torch uses the cores inside the task) and close it afterwards."""
    if settings.dask_scheduler:
        with Client(settings.dask_scheduler, timeout="30s") as client:
            yield client
        return
    n, threads = local_layout(workers or settings.workers)
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=None,
            memory_limit=0,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
