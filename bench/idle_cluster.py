"""``python -m bench.idle_cluster``: what the pipeline's LocalCluster burns while it waits, as JSON.

Every Dask server (the scheduler, each nanny, each worker, the client) runs periodic callbacks on
its event loop. On a small host that CPU is taken from the workers running the model, and the
scheduler, nannies and client share the calling process. This starts the cluster ``dask_client``
starts, once with railsight's settings (``service.cluster.LOCAL_WORKER_CONFIG``) and once with
Dask's defaults, leaves each idle for ``--seconds`` and reports CPU-seconds per second of wall time
for the calling process and for the workers (summed), medians over ``--repeats``, and the ratio
railsight / defaults. Nothing is asserted."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from unittest import mock

from service import cluster
from service.settings import PipelineSettings


def idle_burn(config: dict, seconds: float, workers: int) -> dict[str, float]:
    """CPU-s per wall second of this process and of all workers while the cluster sits idle."""
    with mock.patch.object(cluster, "LOCAL_WORKER_CONFIG", config), \
            cluster.dask_client(PipelineSettings(device="cpu"), workers=workers) as client:
        time.sleep(2.0)  # past start-up
        client_0, workers_0, wall_0 = time.process_time(), client.run(time.process_time), time.monotonic()
        time.sleep(seconds)
        client_1, workers_1, wall_1 = time.process_time(), client.run(time.process_time), time.monotonic()
    wall = wall_1 - wall_0
    worker_cpu = sum(workers_1[w] - workers_0[w] for w in workers_1)
    return {"client_cpu_per_s": (client_1 - client_0) / wall, "workers_cpu_per_s": worker_cpu / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    configs = {"railsight": cluster.LOCAL_WORKER_CONFIG, "dask_defaults": {}}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for _ in range(args.repeats):  # interleaved, so drift on a shared host hits both alike
        for name, config in configs.items():
            runs[name].append(idle_burn(config, args.seconds, args.workers))
    medians = {name: {key: round(statistics.median(r[key] for r in rs), 4) for key in rs[0]}
               for name, rs in runs.items()}
    ratio = {key: round(medians["railsight"][key] / medians["dask_defaults"][key], 3)
             for key in medians["railsight"]}
    print(json.dumps({"bench": "idle_cluster", "host": platform.node(), "cpu": platform.processor(),
                      "workers": args.workers, "seconds": args.seconds, "repeats": args.repeats,
                      **medians, "ratio_railsight_over_defaults": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
