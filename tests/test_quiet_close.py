"""The pipeline's LocalCluster keeps a worker's lost heartbeat out of stderr, and nothing else."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from service.quiet_close import HEARTBEAT_FAILED, HeartbeatLossAsWarning

ROOT = Path(__file__).resolve().parents[1]

# Run in a worker of a real LocalCluster: the heartbeat error exactly as distributed.worker logs it
# (with the exception it caught), and an unrelated error. Workers write to the client process's stderr.
IN_A_WORKER = textwrap.dedent(
    """
    import logging, sys
    from distributed import Client, LocalCluster
    from service.cluster import dask_client
    from service.settings import PipelineSettings

    def log_both():
        logger = logging.getLogger("distributed.worker")
        try:
            raise OSError("scheduler gone")
        except OSError:
            logger.exception("Failed to communicate with scheduler during heartbeat.")
        logger.error("an unrelated worker error")

    if sys.argv[1] == "pipeline":
        with dask_client(PipelineSettings(device="cpu", workers=1)) as client:
            client.run(log_both)
    else:  # the same cluster without railsight's plugin
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            client.run(log_both)
    """
)


def _stderr_of(kind: str) -> str:
    proc = subprocess.run([sys.executable, "-c", IN_A_WORKER, kind], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_the_pipeline_cluster_drops_only_the_heartbeat_traceback():
    quiet, plain = _stderr_of("pipeline"), _stderr_of("plain")
    # Without the plugin both errors reach stderr, the first with its traceback: the check can fail.
    assert HEARTBEAT_FAILED in plain and "Traceback" in plain and "an unrelated worker error" in plain
    assert HEARTBEAT_FAILED not in quiet and "Traceback" not in quiet
    assert "an unrelated worker error" in quiet


def test_the_filter_demotes_only_that_message():
    try:
        raise OSError("gone")
    except OSError:
        exc = sys.exc_info()
    lost = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, HEARTBEAT_FAILED + ".", None, exc)
    other = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "task failed", None, exc)
    f = HeartbeatLossAsWarning()
    assert f.filter(lost) and lost.levelno == logging.WARNING and lost.exc_info is None
    assert f.filter(other) and other.levelno == logging.ERROR and other.exc_info is exc
