"""Prometheus metrics of the API and the runner, in a registry per process (no module globals).

Job counts by status and the queue depth are read from the store at scrape time, so they are right
however many API replicas and workers share it; the rest are counted where things happen.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http_latency = Histogram(
            "railsight_http_request_duration_seconds", "HTTP request latency", ["method", "route", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.submitted = Counter("railsight_jobs_submitted_total", "jobs accepted", ["source"], registry=r)
        self.rejected = Counter("railsight_jobs_rejected_total", "submissions refused, by error code", ["code"], registry=r)
        self.finished = Counter("railsight_jobs_finished_total", "jobs finished by this process", ["status"], registry=r)
        self.tiles = Counter("railsight_tiles_processed_total", "tiles processed (rate() = tiles per second)", registry=r)
        self.tiles_per_second = Gauge(
            "railsight_job_tiles_per_second", "tiles per second of the last job this process finished", registry=r
        )
        self.run_seconds = Histogram(
            "railsight_job_run_seconds", "time from claim to finish", buckets=JOB_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "railsight_job_queue_wait_seconds", "time from submission to first claim", buckets=JOB_BUCKETS, registry=r
        )
        self.active = Gauge("railsight_runner_active_scenes", "scenes this process is working on", registry=r)
        self.reclaimed = Counter(
            "railsight_jobs_reclaimed_total", "claims of jobs whose previous runner lost its lease", registry=r
        )

    def watch_store(self, store) -> None:
        self.registry.register(_StoreCollector(store))


class _StoreCollector(Collector):
    def __init__(self, store) -> None:
        self.store = store

    def collect(self):
        up = GaugeMetricFamily("railsight_store_up", "whether the job store answered this scrape")
        try:
            counts = self.store.counts()
        except Exception:  # a scrape must not fail because the database is down
            log.warning("job store did not answer the metrics scrape", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_status = GaugeMetricFamily("railsight_jobs", "jobs in the store by status", labels=["status"])
        for status, n in counts.items():
            by_status.add_metric([status], n)
        yield by_status
        depth = GaugeMetricFamily("railsight_queue_depth", "jobs waiting to be claimed")
        depth.add_metric([], counts.get("queued", 0))
        yield depth
