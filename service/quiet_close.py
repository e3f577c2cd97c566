"""A LocalCluster that closes without a traceback on stderr.

When the pipeline's own LocalCluster closes, a worker's heartbeat can be in flight to the scheduler
that is going away (rarely: seen in CI, not in 40 runs here). Dask logs that as an error with its
traceback ("Failed to communicate with scheduler during heartbeat."), so a run that succeeded ends
with a traceback in a pod's log. That scheduler lives in the client's own process, so a worker can
only lose it when the client closes the cluster or is gone itself: the message says nothing a user
needs, and this plugin turns it into a one-line warning, which the cluster's log handlers (set to
errors by ``silence_logs``) then leave out.
Every other error a worker logs is left as it is.
"""

from __future__ import annotations

import logging

from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "railsight-quiet-close"
HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"
WORKER_LOGGER = "distributed.worker"


class HeartbeatLossAsWarning(logging.Filter):
    """Lets every record through, but the worker's lost-heartbeat error as a warning, traceback dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(HEARTBEAT_FAILED):
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.exc_info, record.exc_text = None, None  # handlers check the level after this
        return True


class QuietClose(WorkerPlugin):
    """Installs ``HeartbeatLossAsWarning`` on a worker's logger, once per process."""

    idempotent = True

    def setup(self, worker) -> None:
        logger = logging.getLogger(WORKER_LOGGER)
        if not any(isinstance(f, HeartbeatLossAsWarning) for f in logger.filters):
            logger.addFilter(HeartbeatLossAsWarning())


def quiet_close(client: Client) -> None:
    """For the client of a cluster the pipeline started and will close itself, never an external one."""
    client.register_plugin(QuietClose(), name=PLUGIN_NAME)
