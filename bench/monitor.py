"""Peak memory and the machine, for the JSON line, and the line written out."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from models.cpu_bf16 import cpu_has_fast_bf16


def _role(p: psutil.Process) -> str:
    """A short name for a process in the tree: bench, dask-worker, dask-nanny, ..."""
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "gone"
    if p.pid == os.getpid():
        return "bench"
    if "resource_tracker" in cmd:
        return "resource-tracker"
    if "spawn_main" in cmd or "forkserver" in cmd or "multiprocessing" in cmd:
        return "dask-worker"
    return p.name()


def tree(proc: psutil.Process) -> list[psutil.Process]:
    procs = [proc]
    with contextlib.suppress(psutil.Error):
        procs += proc.children(recursive=True)
    return procs


def tree_rss(procs: list[psutil.Process]) -> tuple[int, list[tuple[psutil.Process, int]]]:
    """RSS of ``procs`` (a process and its descendants, as ``tree`` lists them: Dask nannies and
    workers included), in bytes, and each process's share. Pages shared between processes (torch's
    libraries) count once per process, so this errs on the high side; ``tree_pss`` does not."""
    each = []
    for p in procs:
        try:
            each.append((p, p.memory_info().rss))
        except psutil.Error:  # a process that ended between listing and reading
            continue
    return sum(rss for _, rss in each), [(p, rss) for p, rss in each]


def tree_pss(procs: list[psutil.Process]) -> int:
    """Proportional set size of ``procs``: shared pages split between the processes sharing them."""
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.Error, AttributeError):
            continue
    return total


class PeakRSS:
    """Samples the memory of this process tree on a thread: RSS every ``interval`` seconds, PSS
    (slower to read) every ``pss_interval`` seconds, and which processes make up the tree every
    ``tree_interval`` seconds. It shares the cores with what it measures, so it reads little: on the
    2-core bench machine, listing the tree (psutil scans every process on the machine for its
    parent) at each sample and PSS every 2 s cost 5 % of a core, taken from the Dask workers; as
    set now, about 1.4 %.

    ``with PeakRSS() as peak: ...`` then ``peak.peak_bytes`` (summed RSS), ``peak.peak_pss_bytes``,
    ``peak.start_bytes`` (the first RSS sample), ``peak.at_peak`` (RSS per process at the peak) and
    ``peak.cpu_seconds`` (CPU time the tree spent in the block: robust to other load on the machine)."""

    def __init__(self, interval: float = 0.2, pss_interval: float = 10.0, tree_interval: float = 2.0) -> None:
        self.interval = interval
        self.pss_interval = pss_interval
        self.tree_interval = tree_interval
        self.peak_bytes = 0
        self.peak_pss_bytes = 0
        self.start_bytes = 0
        self.now_bytes = 0
        self.samples = 0
        self._peak_procs: list[tuple[psutil.Process, int]] = []
        self._roles: dict[int, str] = {}
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._last_pss = 0.0
        self._procs: list[psutil.Process] = []
        self._procs_at = float("-inf")
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, name="bench-peak-rss", daemon=True)

    def _sample(self, pss: bool = False) -> None:
        now = time.monotonic()
        listed = pss or now - self._procs_at >= self.tree_interval
        if listed:
            self._procs, self._procs_at = tree(self._proc), now
        rss, each = tree_rss(self._procs)
        if len(each) < len(self._procs):  # one ended: list the tree again next time
            self._procs_at = float("-inf")
        self.now_bytes = rss
        if listed:  # CPU times with the tree: a process that ends counts up to the last listing
            self._read_cpu_times()
        if rss > self.peak_bytes:
            self.peak_bytes, self._peak_procs = rss, each
        if pss or now - self._last_pss >= self.pss_interval:
            self._last_pss = now
            self.peak_pss_bytes = max(self.peak_pss_bytes, tree_pss(self._procs))
        self.samples += 1

    def _read_cpu_times(self) -> None:
        for p in self._procs:
            if p.pid not in self._roles:
                self._roles[p.pid] = _role(p)
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                self._cpu_last[p.pid] = t.user + t.system

    @property
    def at_peak(self) -> list[tuple[str, int]]:
        """(role, RSS) of each process at the peak, largest first."""
        return sorted(((self._roles.get(p.pid, "?"), rss) for p, rss in self._peak_procs), key=lambda r: -r[1])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @property
    def cpu_seconds(self) -> float:
        """User + system CPU seconds the tree spent inside the block (processes that started inside
        it count from zero; one that ended counts up to the last listing of the tree before it did)."""
        return sum(last - self._cpu_first.get(pid, 0.0) for pid, last in self._cpu_last.items())

    def cpu_seconds_by_role(self) -> dict[str, float]:
        """``cpu_seconds`` split by process role (bench = this process, the client and scheduler)."""
        out: dict[str, float] = {}
        for pid, last in self._cpu_last.items():
            role = self._roles.get(pid, "?")
            out[role] = out.get(role, 0.0) + last - self._cpu_first.get(pid, 0.0)
        return out

    def __enter__(self) -> PeakRSS:
        self.start_bytes = tree_rss(tree(self._proc))[0]
        self._sample(pss=True)
        self._cpu_first = dict(self._cpu_last)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(pss=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # What a CPU figure depends on most: bf16 runs natively only with AMX or AVX512-BF16, else fp32
        # (about half the speed), and torch's kernels by the widest vector unit it found.
        "native_bf16": cpu_has_fast_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
    return info


def emit(line: dict[str, Any], out: Path | None) -> None:
    """Print a benchmark's JSON line, and append it to ``out`` too when given."""
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
