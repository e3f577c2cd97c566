"""`railsight worker`: job runners only, against the shared job store and a Dask scheduler
(RAILSIGHT_DASK_SCHEDULER; a LocalCluster when unset). This is how Kubernetes runs jobs."""

from __future__ import annotations

import argparse
import logging
import signal

from service.service_settings import ServiceSettings

log = logging.getLogger("service.worker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run jobs from the job store on a Dask cluster (no HTTP API)")
    p.add_argument("--concurrency", type=int, help="scenes at once (default RAILSIGHT_MAX_CONCURRENT_SCENES)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from service.commands.serve import configure_logging
    from service.jobs.metrics import Metrics
    from service.jobs.results import ResultStore
    from service.jobs.runner import Runner
    from service.jobs.store import JobStore

    configure_logging(args.log_level)
    settings = ServiceSettings()
    if args.concurrency:
        settings = settings.model_copy(update={"max_concurrent_scenes": max(1, args.concurrency)})
    store = JobStore.open(settings.store_url)
    metrics = Metrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    runner = Runner(settings, store, ResultStore(settings.results_path), metrics)
    where = settings.dask_scheduler or "a LocalCluster (set RAILSIGHT_DASK_SCHEDULER to share one)"
    log.info("worker %s: %d slot(s) on %s", runner.runner_id, settings.max_concurrent_scenes, where)

    def _stop(signum, _frame) -> None:
        log.info("worker %s: %s, handing running jobs back", runner.runner_id, signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        runner.run_forever()
    finally:
        store.close()
    return 0
