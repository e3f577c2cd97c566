"""The benchmark runs end to end on a tiny scene and prints a sane JSON line. No timing is asserted:
only that the rates are positive and the ratios are the ones the line's own numbers give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.baselines import torchgeo_available

REPO = Path(__file__).resolve().parent.parent


def _close(a: float, b: float, rel: float = 1e-3) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_prints_one_sane_line(tmp_path):
    out = tmp_path / "bench.jsonl"
    cmd = [
        sys.executable, "-m", "bench", "--device", "cpu", "--sizes", "600", "--tile", "256", "--batch", "4",
        "--workers", "1", "--factory", "bench.model:tiny_unet", "--renderer", "simple", "--force-baselines",
        "--baselines", "naive,torchgeo", "--torchgeo-workers", "0", "--model-only-seconds", "0.5",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAILSIGHT_DASK_SCHEDULER"}  # its own LocalCluster
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout
    line = json.loads(lines[0])
    assert [json.loads(x) for x in out.read_text().splitlines()] == [line]  # --out holds the same line

    assert line["device"] == "cpu" and line["size"] == 600 and line["megapixels"] == pytest.approx(0.36)
    assert line["machine"]["cores"] == os.cpu_count() and line["machine"]["cpu"]
    # auto precision follows the CPU, and the line says which CPU it was
    assert line["precision"] == ("bf16" if line["machine"]["native_bf16"] else "fp32")
    assert line["machine"]["cpu_capability"] in ("DEFAULT", "NO AVX", "AVX2", "AVX512", "Z VECTOR", "VSX", "SVE256")
    assert line["model"] == {"source": "bench.model:tiny_unet", "untrained": True}
    assert line["tiles"] == 9 and line["window_px"] == 256 + 2 * line["halo"]  # 600 px in 256 px cores: 3 x 3
    assert line["cluster"]["workers"] == 1 and line["cluster"]["start_s"] > 0
    assert line["merge_threads"] == len(os.sched_getaffinity(0))  # the merge's threads: every core by default

    for key in ("e2e_s", "e2e_mpx_s", "model_only_mpx_s", "read_ceiling_mpx_s", "peak_rss_mb", "peak_pss_mb",
                "e2e_cpu_s", "e2e_mpx_per_cpu_s", "model_only_mpx_per_cpu_s"):
        assert line[key] > 0, key
    assert _close(line["e2e_mpx_s"], line["megapixels"] / line["e2e_s"])
    assert 0 < line["time_to_first_result_s"] <= line["e2e_s"]
    assert _close(line["e2e_over_model_only"], line["e2e_mpx_s"] / line["model_only_mpx_s"])
    # model-only brackets the run: the mean of its seconds per tile before and after it
    mo = line["model_only"]
    assert _close(mo["s_per_tile"], (mo["before"]["s_per_tile"] + mo["after"]["s_per_tile"]) / 2)
    assert _close(line["model_only_mpx_s"], line["megapixels"] / (line["tiles"] * mo["s_per_tile"]))
    assert _close(line["e2e_over_read_ceiling"], line["e2e_mpx_s"] / line["read_ceiling_mpx_s"])
    assert _close(line["e2e_mpx_per_cpu_s"], line["megapixels"] / line["e2e_cpu_s"])
    assert sum(line["e2e_cpu_s_by_process"].values()) == pytest.approx(line["e2e_cpu_s"], rel=0.02, abs=0.05)
    assert line["e2e_cpu_s_by_process"]["dask-worker"] > 0
    assert _close(line["e2e_over_model_only_cpu"], line["e2e_mpx_per_cpu_s"] / line["model_only_mpx_per_cpu_s"])
    assert line["peak_rss_mb"] >= line["rss_at_start_mb"] > 0
    assert line["gpu_peak_mb"] is None

    shares = line["time_share"]
    assert set(shares) == {"read", "model", "vectorise", "other"}
    assert all(shares[k] >= 0 for k in ("read", "model", "vectorise"))
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert set(line["timings"]) >= {"read_s", "model_s", "vectorise_s", "total_s"}

    naive = line["baselines"]["naive"]
    assert naive["mpx_s"] > 0 and naive["batch"] == 1 and naive["dtype"] == "float32"
    assert _close(line["e2e_over_naive"], line["e2e_mpx_s"] / naive["mpx_s"])
    assert naive["cpu_s"] > 0 and _close(line["e2e_over_naive_cpu"], line["e2e_mpx_per_cpu_s"] / naive["mpx_per_cpu_s"])
    why_not = torchgeo_available()
    if why_not is None:
        tg = line["baselines"]["torchgeo"]
        assert tg["mpx_s"] > 0 and tg["chips"] >= 4
        assert _close(line["e2e_over_torchgeo"], line["e2e_mpx_s"] / tg["mpx_s"])
    else:  # CI installs only the dev extra: the line says why the baseline is missing
        assert line["e2e_over_torchgeo"] is None
        assert "torchgeo" in line["baselines_skipped"]
    assert set(line["targets"]) == {"e2e_over_naive>=2", "e2e_over_model_only>=0.8"}


def test_baselines_are_skipped_above_the_cpu_default(tmp_path):
    """Argument handling only: large sizes skip baselines on CPU unless forced."""
    from bench.run import parse_args

    args = parse_args(["--device", "cpu", "--sizes", "5000,20000"])
    assert args.size_list == [5000, 20000] and args.baseline_max_size == 5000
    assert parse_args(["--device", "cpu", "--baselines", "none"]).baseline_list == []
    with pytest.raises(SystemExit):
        parse_args(["--device", "cpu", "--baselines", "fast"])


@pytest.mark.timeout(300)
def test_host_parallel_vectorises_the_same_features_every_way(tmp_path):
    """``python -m bench.host_parallel`` on a small scene: one line, the three ways giving the same
    features, and speedups that are the line's own times' ratios."""
    cmd = [sys.executable, "-m", "bench.host_parallel", "--size", "768", "--renderer", "simple", "--tiles", "6",
           "--reps", "1", "--workers", "2", "--cache-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert line["bench"] == "host-parallel" and line["tiles"] == 6 and line["workers"] == 2
    assert line["same_features"] is True
    for way in ("serial", "threads", "processes"):
        assert line[f"{way}_ms_per_tile"] > 0
    assert _close(line["threads_speedup"], line["serial_ms_per_tile"] / line["threads_ms_per_tile"], 1e-2)
    assert _close(line["processes_speedup"], line["serial_ms_per_tile"] / line["processes_ms_per_tile"], 1e-2)


def test_the_memory_sampler_sees_a_child_started_after_it_and_its_cpu_time():
    """PeakRSS lists the process tree only every ``tree_interval`` seconds (listing it scans every
    process on the machine): a worker started while it runs must still count, memory and CPU."""
    from bench.monitor import PeakRSS

    child = ("import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); t = time.process_time(); "
             "exec('while time.process_time() - t < 0.5: pass'); time.sleep(1.0)")
    with PeakRSS(interval=0.05, pss_interval=0.5, tree_interval=0.2) as peak:
        subprocess.run([sys.executable, "-c", child], check=True)
    assert peak.peak_bytes - peak.start_bytes >= 250 * 2**20
    assert peak.peak_pss_bytes > 0
    others = {role: s for role, s in peak.cpu_seconds_by_role().items() if role != "bench"}
    assert sum(others.values()) >= 0.4  # the child's half second of work, read before it ended


def test_a_cached_bench_scene_is_keyed_by_its_renderers_source(tmp_path, monkeypatch):
    """A scene rendered before the data engine changed is not reused: its cache name carries a hash of
    the engine's source, so changing one of its modules names a new file."""
    import shutil

    import bench.scene as bench_scene

    engine = tmp_path / "models" / "synth"
    shutil.copytree(REPO / "models" / "synth", engine, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(bench_scene, "_ROOT", tmp_path)
    before = bench_scene.scene_path(tmp_path, 5000, 0, 2048, 8, "synth")
    assert before == bench_scene.scene_path(tmp_path, 5000, 0, 2048, 8, "synth")
    colours = engine / "colours.py"
    colours.write_text(colours.read_text() + "\n# a changed palette\n")
    after = bench_scene.scene_path(tmp_path, 5000, 0, 2048, 8, "synth")
    assert after != before and after.parent == before.parent
    # The stand-in renderer's key follows bench/scene.py, not the engine.
    assert bench_scene.renderer_key("simple") != bench_scene.renderer_key("synth")
