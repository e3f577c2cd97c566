"""How the LocalCluster is laid out, the allocator settings its CPU workers run with, and the port it serves on."""

from __future__ import annotations

import platform

import dask.system
import distributed.system
import pytest

from models.allocator import keep_freed_memory
from service import cluster
from service.cluster import CPU_WORKER_MEMORY, local_layout


@pytest.fixture()
def host(monkeypatch):
    """A host with ``cores`` cores, ``memory`` bytes of RAM and a GPU or not."""

    def make(cores: int, memory: float, gpu: bool = False) -> None:
        monkeypatch.setattr(dask.system, "CPU_COUNT", cores)
        monkeypatch.setattr(distributed.system, "MEMORY_LIMIT", int(memory))
        monkeypatch.setattr(cluster, "gpu_present", lambda: gpu)

    return make


def test_cpu_gets_one_single_threaded_worker_per_core(host):
    host(cores=2, memory=8e9)
    assert local_layout(None, "cpu") == (2, 1)
    assert local_layout(None, "auto") == (2, 1)


def test_cpu_workers_are_capped_by_memory(host):
    host(cores=16, memory=4 * CPU_WORKER_MEMORY + 1)
    assert local_layout(None, "cpu") == (4, 1)
    host(cores=4, memory=CPU_WORKER_MEMORY / 2)
    assert local_layout(None, "cpu") == (1, 1)


def test_a_gpu_host_gets_a_two_threaded_worker_process_for_every_two_cores(host):
    host(cores=16, memory=128e9, gpu=True)
    assert local_layout(None, "auto") == (8, 2)
    assert local_layout(None, "cuda") == (8, 2)
    assert local_layout(None, "cpu") == (16, 1)  # --device cpu on a GPU host
    host(cores=1, memory=8e9, gpu=True)
    assert local_layout(None, "cuda") == (1, 2)  # still a thread to read beside the one vectorising


def test_asked_for_workers_share_the_cores(host):
    host(cores=8, memory=64e9)
    assert local_layout(3, "cpu") == (3, 2)
    assert local_layout(16, "cpu") == (16, 1)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_malloc_settings_are_taken_on_glibc():
    assert keep_freed_memory() is True


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_workers_hand_freed_memory_back_every_so_many_tiles(monkeypatch):
    """Kept freed memory crept up over a long run (about 100 MB a worker from a 10,000 to a
    20,000 px scene); a trim every TRIM_EVERY_TILES tiles holds it, at no measured cost."""
    from models import allocator
    from service import tile_tasks

    assert allocator.release_freed_memory() is True
    calls = []
    monkeypatch.setattr(tile_tasks, "release_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(tile_tasks, "_untrimmed_tiles", 0)
    for _ in range(2 * tile_tasks.TRIM_EVERY_TILES // 16 + 1):  # tasks of 16 tiles
        tile_tasks._trim_now_and_then(16)
    assert len(calls) == 2


def test_a_second_cluster_on_the_host_starts_without_a_port_warning():
    """Dask's scheduler serves HTTP on 8787 by default and warns on stderr when it is taken (a second
    run on the same host): the pipeline's cluster takes a free port instead."""
    import socket
    import warnings

    from service.cluster import dask_client
    from service.settings import PipelineSettings

    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:
        pass  # already taken by something else: the same situation
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(PipelineSettings(device="cpu", workers=1)) as client:
                assert client.run(lambda: 1)
    finally:
        holder.close()
    assert not [w for w in caught if "8787" in str(w.message)], [str(w.message) for w in caught]
