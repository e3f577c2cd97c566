"""Shared fixtures: one real multi-process Dask cluster per test session, and the test-only model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ORACLE = "tests.oracle_model:build"

# Worker processes and CLI subprocesses import the test-only model from this checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def dask_cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0, silence_logs=40
    ) as cluster:
        yield cluster


@pytest.fixture()
def dask_client(dask_cluster):
    from distributed import Client

    with Client(dask_cluster) as client:
        yield client


@pytest.fixture()
def oracle_spec():
    from models.spec import ModelSpec

    return ModelSpec(factory=ORACLE)


@pytest.fixture()
def cli_env(tmp_path):
    """Environment for running `railsight` as a subprocess with the test-only model on CPU."""
    env = dict(os.environ)
    env.update(RAILSIGHT_MODEL_FACTORY=ORACLE, RAILSIGHT_DEVICE="cpu", RAILSIGHT_WORKERS="1")
    return env
