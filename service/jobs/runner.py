"""The job runner: claims jobs from the store and runs each scene's graph on Dask.

One runner per process (`railsight serve` embeds one; `railsight worker` is one). It holds one Dask
client and ``max_concurrent_scenes`` slot threads; each slot claims a job, runs
``service.pipeline.detect_scene`` on it, and records the outcome. While a job runs, a heartbeat
thread extends its lease, writes tiles done/total into the store and reads the job's cancel flag:
a cancel (or a lost lease) sets the event that makes the pipeline cancel its Dask futures.

Failures a user caused (a bad scene or option) fail the job at once. Anything else (a Dask worker
died, the database blinked) gives the job back to the queue, until it has used its attempts.
On shutdown running jobs are handed back without using an attempt, so another runner starts them
straight away; if the process is killed instead, their leases run out and they are claimed again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.spec import WeightsError
from service.errors import Cancelled, RailsightError
from service.jobs.metrics import Metrics
from service.jobs.results import ResultStore
from service.jobs.schema import CANCELLED, FAILED, SUCCEEDED
from service.jobs.sources import check_local, fetch_remote, fetch_view_sidecar
from service.jobs.store import Claim, Job, JobStore, Outcome
from service.service_settings import ServiceSettings

log = logging.getLogger(__name__)

ClientFactory = Callable[[ServiceSettings], AbstractContextManager[Any]]
RECONNECT_SECONDS = 5.0
HEALTH_TIMEOUT_S = 2.0


def default_client_factory(settings: ServiceSettings) -> AbstractContextManager[Any]:
    from service.cluster import dask_client

    return dask_client(settings)


@dataclass
class _Running:
    claim: Claim
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    tiles_done: int = 0
    tiles_total: int | None = None
    lost: bool = False  # the lease went to another runner
    stopping: bool = False  # this runner is shutting down

    def progress(self, done: int, total: int) -> None:
        self.tiles_done, self.tiles_total = done, total


class Runner:
    def __init__(
        self,
        settings: ServiceSettings,
        store: JobStore,
        results: ResultStore,
        metrics: Metrics | None = None,
        *,
        client_factory: ClientFactory = default_client_factory,
        runner_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.results = results
        self.metrics = metrics or Metrics()
        self.client_factory = client_factory
        self.runner_id = runner_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.client: Any = None
        self.ready = threading.Event()
        self.model_ready = False
        self.error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._active: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._main: threading.Thread | None = None
        self._slots: list[threading.Thread] = []
        self._health_pool: ThreadPoolExecutor | None = None

    # --- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start in the background: connect to (or start) the cluster, load the model, then work."""
        self._main = threading.Thread(target=self._main_loop, name="railsight-runner", daemon=True)
        self._main.start()

    def run_forever(self) -> None:
        """`railsight worker`: the same, in the calling thread, until ``stop()``."""
        self._main_loop()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, hand running jobs back to the queue, close the cluster client."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            for running in self._active.values():
                running.stopping = True
                running.cancel.set()
        if self._main is not None and self._main is not threading.current_thread():
            self._main.join(timeout)
        if self._health_pool is not None:
            self._health_pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """A job was submitted: look now instead of at the next poll."""
        self._wake.set()

    def cancel_now(self, job_id: str) -> None:
        """Embedded mode: the API saw a cancel; stop without waiting for the next heartbeat."""
        with self._lock:
            running = self._active.get(job_id)
        if running is not None:
            running.cancel.set()

    def health(self) -> dict[str, Any]:
        """For /readyz: never blocks longer than HEALTH_TIMEOUT_S, even with the scheduler gone."""
        workers = self._worker_count()
        with self._lock:
            active = len(self._active)
        return {
            "runner_id": self.runner_id,
            "cluster": workers > 0,
            "workers": workers,
            "model": self.model_ready,
            "active_jobs": active,
            "slots": self.settings.max_concurrent_scenes,
            "error": self.error,
        }

    def _worker_count(self) -> int:
        client = self.client
        if client is None or getattr(client, "status", "running") != "running":
            return 0
        pool = self._health_pool
        if pool is None:
            pool = self._health_pool = ThreadPoolExecutor(1, thread_name_prefix="railsight-health")
        future = pool.submit(lambda: client.scheduler_info(n_workers=1))
        try:
            info = future.result(timeout=HEALTH_TIMEOUT_S)
        except Exception:  # timed out, or the scheduler went away: not ready
            return 0
        return int(info.get("n_workers", len(info.get("workers", {}))))

    # --- main thread ------------------------------------------------------------------------------
    def _main_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.client_factory(self.settings) as client:
                    self.client = client
                    self.error = None
                    self._load_model(client)
                    if self._stop.is_set():
                        break
                    self.ready.set()
                    log.info("runner %s ready: %s, model loaded, %d slot(s)", self.runner_id,
                             _describe(client), self.settings.max_concurrent_scenes)
                    self._run_slots()
                    return
            except Exception as exc:  # scheduler unreachable, cluster failed to start
                self.error = f"Dask cluster: {type(exc).__name__}: {exc}"
                log.warning("runner %s: %s; retrying in %.0f s", self.runner_id, self.error, RECONNECT_SECONDS)
            finally:
                self.ready.clear()
                self.client = None
            self._stop.wait(RECONNECT_SECONDS)

    def _load_model(self, client) -> None:
        """Load the model on every worker (the same plugin the pipeline registers), warmed up at the
        model calls of a job with the service's default options, before claiming work, so /readyz
        means a job can start now. Retries while the model cannot be loaded."""
        from service.pipeline import model_meta, model_spec_from_settings, options_from_settings, ready_workers

        spec = model_spec_from_settings(self.settings)
        while not self._stop.is_set():
            try:
                ready_workers(client, options_from_settings(self.settings), spec, model_meta(spec))
                self.model_ready = True
                self.error = None
                return
            except Exception as exc:  # WeightsError from the workers, or a worker that died loading
                self.error = f"model: {type(exc).__name__}: {exc}"
                log.error("runner %s cannot load the model: %s", self.runner_id, self.error)
                self._stop.wait(10.0)

    def _run_slots(self) -> None:
        if not self.store.is_sqlite():
            threading.Thread(target=self.store.listen, args=(self.wake, self._stop), name="railsight-listen",
                             daemon=True).start()
        self._slots = [
            threading.Thread(target=self._slot_loop, name=f"railsight-slot-{i}", daemon=True)
            for i in range(self.settings.max_concurrent_scenes)
        ]
        for t in self._slots:
            t.start()
        self._stop.wait()
        for t in self._slots:
            t.join()

    # --- slots ------------------------------------------------------------------------------------
    def _slot_loop(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            self._wake.clear()
            try:
                claim = self.store.claim(self.runner_id, lease_seconds=s.lease_seconds, max_attempts=s.max_attempts)
            except Exception:
                log.exception("runner %s could not claim a job", self.runner_id)
                claim = None
            if claim is None:
                self._wake.wait(s.poll_seconds)
                continue
            try:
                self.run_claim(claim)
            except Exception:  # never let one job kill the slot
                log.exception("runner %s: job %s", self.runner_id, claim.job_id)

    def run_claim(self, claim: Claim) -> None:
        job = claim.job
        running = _Running(claim)
        with self._lock:
            self._active[job.id] = running
            if self._stop.is_set():
                running.stopping = True
                running.cancel.set()
        self.metrics.active.inc()
        started = time.time()
        if job.attempts == 1:
            self.metrics.queue_wait.observe(max(0.0, started - job.created_at))
        else:
            self.metrics.reclaimed.inc()
        beat = threading.Thread(target=self._heartbeat_loop, args=(running,), name=f"heartbeat-{job.id[:8]}", daemon=True)
        beat.start()
        download: Path | None = None
        outcome: Outcome | None = None
        try:
            scene, download = self._materialise(job)
            outcome = self._detect(job, scene, running)
        except Cancelled:
            if running.lost:
                log.warning("job %s: lease lost to another runner; dropped here", job.id)
            elif running.stopping:
                self.store.release(claim)
                log.info("job %s handed back to the queue (runner stopping)", job.id)
            else:
                outcome = self._partial(running, CANCELLED, "cancelled", "cancelled while running")
        except (RailsightError, WeightsError) as exc:
            outcome = self._partial(running, FAILED, exc.code, str(exc))
        except Exception as exc:
            outcome = self._unexpected(claim, running, exc)
        finally:
            running.done.set()
            beat.join()
            with self._lock:
                self._active.pop(job.id, None)
            self.metrics.active.dec()
            if download is not None:
                download.unlink(missing_ok=True)
                download.with_suffix(".IMD").unlink(missing_ok=True)  # the view, where fetch_view_sidecar wrote one
        if outcome is None:
            return
        if self.store.finish(claim, outcome):
            self._finished(job, outcome, time.time() - started)
        else:
            log.warning("job %s finished here, but its lease had passed to another runner", job.id)

    def _materialise(self, job: Job) -> tuple[str, Path | None]:
        """A local path the pipeline can open (downloading http(s) scenes, and the view from the
        metadata beside one, as ``NAME.IMD``, where the job gives none), and a file to delete after
        (with its ``.IMD``)."""
        if job.scene_kind == "path":
            # Checked at submission; checked again, in case a symlink changed while it waited.
            return str(check_local(job.scene, self.settings.allowed_roots())), None
        if job.scene_kind == "url" and job.scene.lower().startswith(("http://", "https://")):
            dest = self.settings.downloads_path / f"{job.id}.tif"
            fetch_remote(job.scene, dest, self.settings)
            if job.options.get("off_nadir_deg") is None and fetch_view_sidecar(job.scene, dest, self.settings):
                log.info("job %s: the scene's view comes from the metadata beside it", job.id)
            return str(dest), dest
        return job.scene, None  # an upload we stored, or s3:// read by GDAL under the operator's config

    def _detect(self, job: Job, scene: str, running: _Running) -> Outcome:
        from service.pipeline import detect_scene, model_spec_from_settings, options_from_settings

        o = job.options
        outputs = o.get("outputs") or ["geojson"]
        class_raster = str(self.results.classes_target(job.id)) if "class_cog" in outputs else None
        options = options_from_settings(
            self.settings,
            classes=tuple(o["classes"]) if o.get("classes") else None,
            min_confidence=o.get("min_confidence"),
            tta=o.get("tta"),
            bands=tuple(o["bands"]) if o.get("bands") else None,
            allow_pixel_coords=o.get("allow_pixel_coords") or None,
            pixel_size_m=o.get("pixel_size_m"),
            off_nadir_deg=o.get("off_nadir_deg"),
            satellite_azimuth_deg=o.get("satellite_azimuth_deg"),
            class_raster=class_raster,
        )
        before = 0

        def progress(done: int, total: int) -> None:
            nonlocal before
            running.progress(done, total)
            if done > before:
                self.metrics.tiles.inc(done - before)
                before = done

        collection = detect_scene(
            scene, options, model_spec_from_settings(self.settings), self.client, progress=progress, cancel=running.cancel
        )
        if running.lost:  # finished, but another runner holds the job now: leave the result to it
            raise Cancelled("lease lost")
        relative = self.results.write_geojson(job.id, collection)
        summary = collection.get("summary", {})
        tiles = int(summary.get("tiles") or running.tiles_total or 0)
        return Outcome(
            SUCCEEDED,
            summary=summary,
            feature_count=len(collection.get("features", [])),
            result_path=relative,
            classes_path=self.results.relative(Path(class_raster)) if class_raster else None,
            tiles_done=tiles,
            tiles_total=tiles,
        )

    @staticmethod
    def _partial(running: _Running, status: str, code: str, message: str) -> Outcome:
        return Outcome(status, error_code=code, error_message=message,
                       tiles_done=running.tiles_done, tiles_total=running.tiles_total)

    def _unexpected(self, claim: Claim, running: _Running, exc: Exception) -> Outcome | None:
        job = claim.job
        log.error("job %s attempt %d failed: %s: %s", job.id, job.attempts, type(exc).__name__, exc, exc_info=exc)
        message = f"{type(exc).__name__}: {exc}"
        if running.lost:
            return None
        if running.stopping:  # e.g. the cluster client closing under the job: not the job's fault
            self.store.release(claim)
            return None
        if job.attempts < self.settings.max_attempts:
            self.store.release(claim, count_attempt=True, error=f"attempt {job.attempts} failed: {message}")
            self.wake()
            return None
        return self._partial(running, FAILED, "internal_error", f"failed after {job.attempts} attempts: {message}")

    def _finished(self, job: Job, outcome: Outcome, seconds: float) -> None:
        m = self.metrics
        m.finished.labels(outcome.status).inc()
        m.run_seconds.observe(seconds)
        if outcome.status == SUCCEEDED and outcome.tiles_total and seconds > 0:
            m.tiles_per_second.set(outcome.tiles_total / seconds)
        if job.scene_kind == "upload":
            Path(job.scene).unlink(missing_ok=True)  # the upload has served its purpose

    # --- heartbeat --------------------------------------------------------------------------------
    def _heartbeat_loop(self, running: _Running) -> None:
        s = self.settings
        while not running.done.wait(s.heartbeat_interval):
            try:
                beat = self.store.heartbeat(
                    running.claim, lease_seconds=s.lease_seconds,
                    tiles_done=running.tiles_done, tiles_total=running.tiles_total,
                )
            except Exception:  # the store blinked: try again next beat; the lease has slack
                log.warning("job %s: heartbeat failed", running.claim.job_id, exc_info=True)
                continue
            if not beat.held:
                running.lost = True
                running.cancel.set()
                return
            if beat.cancel_requested:
                running.cancel.set()


def _describe(client) -> str:
    try:
        return f"{client.scheduler_info(n_workers=1).get('n_workers')} Dask worker(s) at {client.scheduler.address}"
    except Exception:
        return "Dask cluster"
