"""``python -m bench``: the scene pipeline, file in -> GeoJSON out, against its ceilings and baselines.

One JSON line per scene size on stdout (progress goes to stderr). With more than one size, each
size runs in a fresh child process, so one size's leftovers never count in the next one's peak RSS.

What each field means:

- ``e2e_s`` / ``e2e_mpx_s``: ``prepare_scene`` + ``detect_scene`` + ``write_geojson`` on a
  LocalCluster already started and warm, as the service keeps it (``cluster``: its start-up
  ``start_s``, the workers' model load and warm-up ``model_load_s`` and this process's model metadata
  ``client_model_meta_s`` are not in ``e2e_s``); Mpx/s are scene megapixels (``size**2 / 1e6``)
  per second.
- ``model_only_mpx_s``: the scene's tile count times the model's seconds per tile, measured on
  uint8 batches already on the device, at the pipeline's read window (tile + 2 halo) and batch,
  in every Dask worker of the same cluster at once (their processes, threads and allocator: the
  ceiling the pipeline could reach if reading, vectorising and merging took no time).
  Measured twice, just before the end-to-end run and just after it, and the two seconds per tile
  averaged (``model_only.before`` and ``.after`` give each): on the shared 2-core bench machine
  the CPU's speed drifts by 15-20 % within minutes, and one measurement after the run put the
  ratio of the same code anywhere from 0.63 to 0.83.
- ``read_ceiling_mpx_s``: every pixel of the file decoded once by a thread pool, nothing else.
- ``baselines``: ``naive`` and ``torchgeo`` (see ``bench.baselines``); ``e2e_over_naive`` and
  ``e2e_over_torchgeo`` are ``e2e_mpx_s / baseline mpx_s``.
- ``peak_rss_mb``: the peak, over the end-to-end run, of the summed RSS of this process and every
  child process (Dask worker processes included), sampled every 0.2 s (PSS every 10 s: the
  same without counting shared library pages once per process, ``peak_pss_mb``). The sampler costs
  about 1.4 % of one core of the 2-core bench machine (``bench.monitor.PeakRSS``).
- ``gpu_peak_mb``: ``torch.cuda.max_memory_allocated`` in each Dask worker during the end-to-end run
  (CUDA only), and in this process for model-only.
- ``time_share``: the pipeline's summed task timings (read, model, vectorise) over the worker
  capacity of the end-to-end run (``workers * e2e_s``); ``other`` is the rest (scheduling, idle
  workers, merge, writing).
- ``*_cpu_s`` / ``*_mpx_per_cpu_s`` / ``*_cpu`` ratios: the same measures in CPU seconds (user +
  system, summed over the process tree) instead of wall seconds. On a machine shared with other
  jobs (see ``machine.load_avg_1m`` and ``load_avg_1m_end``) the phases run under different load,
  so wall ratios across phases are skewed; CPU-second ratios compare the work done and hold up.
  They do not see idle cores, so read both. ``e2e_cpu_s_by_process`` splits the end-to-end CPU
  seconds by process (``bench`` is this process: the Dask client and scheduler, merge, writing).
- ``peak_rss_ratio_20k_10k``: on the 20,000 px line when the 10,000 px size ran in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.model import choose_spec
from bench.monitor import PeakRSS, emit, machine
from bench.scene import RENDERERS, ensure_scene
from kernels.row_threads import merge_threads
from kernels.tiling import plan_tiles
from models.allocator import release_freed_memory
from models.spec import PRECISIONS

BASELINES = ("naive", "torchgeo")
DEFAULT_SIZES = (5000, 10000, 20000)
# On a CPU a baseline at 10,000 px and above takes the better part of an hour on two cores.
DEFAULT_BASELINE_MAX = {"cpu": 5000, "cuda": 10**9}
MODEL_ONLY_BUDGET_S = {"cpu": 20.0, "cuda": 10.0}
MB = 1e6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when present, else cpu")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the pipeline's and model-only's arithmetic (default auto: bf16 on CUDA and on CPUs "
                        "with native bf16); the naive and TorchGeo-style baselines are fp32 as users write them")
    p.add_argument("--compile", action="store_true",
                   help="the pipeline and model-only run the model under torch.compile (models/compiled.py); the "
                        "workers compile it before the timing starts, and the time is in cluster.compile_s")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="scene sides in px, comma separated")
    p.add_argument("--tile", type=int, default=None, help="the model's tile core (default: the weights' own)")
    p.add_argument("--batch", type=int, default=None, help="tiles per model call (default: the pipeline's)")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: the pipeline's)")
    p.add_argument("--baselines", default=",".join(BASELINES), help="naive,torchgeo, or none")
    p.add_argument("--baseline-max-size", type=int, default=None,
                   help="skip baselines above this size (default: 5000 on cpu, no limit on cuda)")
    p.add_argument("--force-baselines", action="store_true", help="run the baselines at every size")
    p.add_argument("--torchgeo-workers", type=int, default=None, help="DataLoader workers of the torchgeo baseline")
    p.add_argument("--weights", default=None, help="weights file (default: the shipped one, else an untrained UNet)")
    p.add_argument("--factory", default=None,
                   help="'module:callable' building the model instead (e.g. bench.model:tiny_unet)")
    p.add_argument("--model-only-seconds", type=float, default=None, help="time budget of the model-only measure")
    p.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    p.add_argument("--cache-dir", type=Path, default=Path("var/bench"), help="rendered scenes are cached here")
    p.add_argument("--renderer", choices=RENDERERS, default="synth")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=2048, help="side of one rendered yard in the mosaic")
    p.add_argument("--pool", type=int, default=8, help="distinct yards rendered per scene")
    p.add_argument("--in-process", action="store_true", help="run every size in this process (no child per size)")
    args = p.parse_args(argv)
    if args.device is None:  # asked in a child process: this one stays without torch until after e2e
        probe = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"
        args.device = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                     check=True).stdout.strip()
    args.size_list = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    if not args.size_list or min(args.size_list) < 64:
        p.error("--sizes needs sizes of at least 64 px")
    names = [] if args.baselines.strip() in ("", "none") else [b.strip() for b in args.baselines.split(",")]
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        p.error(f"unknown baseline {unknown[0]!r}: use {', '.join(BASELINES)} or none")
    args.baseline_list = names
    if args.baseline_max_size is None:
        args.baseline_max_size = DEFAULT_BASELINE_MAX[args.device]
    return args


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _sig(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else float(f"{x:.{digits}g}")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else _sig(a / b)


def run_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    from service.cluster import dask_client, local_layout
    from service.geojson import write_geojson
    from service.model_plugin import register_model
    from service.pipeline import (
        DetectOptions,
        batch_size,
        call_shape,
        compile_for,
        detect_scene,
        model_meta,
        model_tile,
        prepare_scene,
    )
    from service.settings import PipelineSettings

    device = args.device
    spec, model_info = choose_spec(args.weights, args.factory)
    scene_path, scene_info = ensure_scene(args.cache_dir, size, seed=args.seed, chunk=args.chunk, pool=args.pool,
                                          renderer=args.renderer)
    settings = PipelineSettings(device=device, workers=args.workers)
    options = DetectOptions(device=device, model_tile=args.tile, batch_size=args.batch, precision=args.precision,
                            compile=args.compile, merge_threads=settings.merge_threads)
    meta = model_meta(spec)  # the tile and batch the pipeline chooses, for the JSON line and the baselines
    tile, batch = model_tile(options, meta), batch_size(options, meta, device)
    compiled, calls = compile_for(options, meta, batch), call_shape(options, meta, batch)
    load_at_start = round(os.getloadavg()[0], 2)  # machine() itself waits until torch may be loaded
    line: dict[str, Any] = {"bench": "scene-pipeline", "machine": {}, "device": device, "size": size,
                            "megapixels": size * size / MB, "scene": scene_info, "model": model_info,
                            "merge_threads": options.merge_threads or merge_threads()}
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=args.cache_dir))
    try:
        with ExitStack() as stack:
            log(f"{size} px: starting the Dask cluster")
            t0 = time.perf_counter()
            client = stack.enter_context(dask_client(settings, workers=args.workers))
            workers = client.scheduler_info().get("workers", {})
            line["cluster"] = {"start_s": round(time.perf_counter() - t0, 3), "workers": len(workers),
                               "threads": sum(int(w.get("nthreads", 1)) for w in workers.values()),
                               "external": bool(settings.dask_scheduler),
                               "default_layout": list(local_layout(None, device))}
            # the service keeps its workers warm: import torch, load the model and run a call of the
            # scene's shape before timing (the pipeline registers the same again, finding it done)
            t0 = time.perf_counter()
            register_model(client, spec, device, calls=calls)
            line["cluster"]["model_load_s"] = round(time.perf_counter() - t0, 3)
            if compiled:  # and compiles it, as the pipeline would before a scene's first task
                t0 = time.perf_counter()
                register_model(client, spec, device, compiled=compiled, calls=calls)
                line["cluster"]["compile_s"] = round(time.perf_counter() - t0, 3)
            # ... and so does this process: the model's metadata (a factory builds the model to get it)
            t0 = time.perf_counter()
            model_meta(spec)
            line["cluster"]["client_model_meta_s"] = round(time.perf_counter() - t0, 3)
            halo = meta.halo_px
            planned = len(plan_tiles(size, size, tile, halo))  # the bench scene is on the model's grid
            budget = args.model_only_seconds if args.model_only_seconds is not None else MODEL_ONLY_BUDGET_S[device]

            def model_only() -> dict[str, Any]:
                return _model_only_on_workers(client, spec, device, window=tile + 2 * halo, batch=batch,
                                              tiles=planned, budget_s=budget, precision=args.precision,
                                              compiled=compiled)

            log(f"{size} px: model only, on every worker at once (before)")
            mo_before = model_only()
            client.run(release_freed_memory)  # the workers start the run holding what warming up left
            if device == "cuda":
                client.run(_reset_gpu_peak)
            log(f"{size} px: end to end ({scene_path.name})")
            first: list[float] = []
            out = workdir / "detections.geojson"
            with PeakRSS() as rss:
                started = time.perf_counter()

                step = [0]

                def progress(done: int, total: int) -> None:
                    if done > 0 and not first:
                        first.append(time.perf_counter() - started)
                    if done >= step[0] and total:  # a sign of life every 10 % on long runs
                        step[0] = done + max(1, total // 10)
                        log(f"{size} px: {done}/{total} tiles, {time.perf_counter() - started:.0f} s, "
                            f"RSS now {rss.now_bytes / MB:.0f} MB (peak {rss.peak_bytes / MB:.0f} MB)")

                prepared = prepare_scene(scene_path, options, spec)
                t_prepared = time.perf_counter()
                collection = detect_scene(prepared, options, spec, client, progress=progress)
                t_detected = time.perf_counter()
                write_geojson(collection, out)
                e2e_s = time.perf_counter() - started
            client_had_torch = "torch" in sys.modules
            gpu_workers = client.run(_gpu_peak) if device == "cuda" else None
            log(f"{size} px: model only, on every worker at once (after)")
            mo = _bracketed(mo_before, model_only())
            summary = collection["summary"]
            tiles = int(summary["tiles"])
        timings = summary["timings"]
        del collection
        line.update(tile=tile, halo=halo, window_px=tile + 2 * halo, batch=batch, tiles=tiles, compiled=args.compile)
        e2e_mpx_s = size * size / e2e_s / MB
        capacity = max(1, line["cluster"]["threads"]) * e2e_s  # task-seconds the cluster could give
        shares = {k: timings[f"{k}_s"] / capacity for k in ("read", "model", "vectorise")}
        shares["other"] = 1.0 - sum(shares.values())
        line.update(
            e2e_s=_sig(e2e_s),
            e2e_mpx_s=_sig(e2e_mpx_s),
            time_to_first_result_s=_sig(first[0]) if first else None,
            time_share={k: round(v, 4) for k, v in shares.items()},
            timings=timings,
            phases_s={"prepare": round(t_prepared - started, 3), "detect": round(t_detected - t_prepared, 3),
                      "write_geojson": round(started + e2e_s - t_detected, 3)},
            counts=summary["counts"],
            precision=summary.get("precision"),
            geojson_mb=round(out.stat().st_size / MB, 2),
            e2e_cpu_s=_sig(rss.cpu_seconds),
            e2e_cpu_s_by_process={role: round(v, 2) for role, v in rss.cpu_seconds_by_role().items()},
            e2e_mpx_per_cpu_s=_sig(size * size / MB / rss.cpu_seconds) if rss.cpu_seconds else None,
            peak_rss_mb=round(rss.peak_bytes / MB, 1),
            peak_pss_mb=round(rss.peak_pss_bytes / MB, 1),
            rss_at_start_mb=round(rss.start_bytes / MB, 1),
            rss_at_peak_by_process_mb=[[role, round(b / MB, 1)] for role, b in rss.at_peak],
        )

        # Only now does this process load torch (the baselines): during the end-to-end run it was, like
        # `railsight detect` or the API, a client without it (the workers run the model).
        import torch

        from bench import baselines as bl

        # A user's script gets torch's default, a thread per core; this process may have inherited
        # Dask's OMP_NUM_THREADS=1, which would slow the baselines down unfairly.
        torch.set_num_threads(os.cpu_count() or 1)
        line["client_imported_torch_during_e2e"] = client_had_torch
        line["machine"] = {**machine(device), "load_avg_1m": load_at_start}
        model_only_mpx_s = size * size / (tiles * mo["s_per_tile"]) / MB
        model_only_per_cpu = size * size / (tiles * mo["cpu_s_per_tile"]) / MB if mo["cpu_s_per_tile"] else None
        mo.update(s_per_tile=_sig(mo["s_per_tile"]), cpu_s_per_tile=_sig(mo["cpu_s_per_tile"]))
        line.update(model_only_mpx_s=_sig(model_only_mpx_s), model_only_mpx_per_cpu_s=_sig(model_only_per_cpu),
                    model_only=mo, e2e_over_model_only=_ratio(e2e_mpx_s, model_only_mpx_s),
                    e2e_over_model_only_cpu=_ratio(line["e2e_mpx_per_cpu_s"], model_only_per_cpu))
        line["gpu_peak_mb"] = None
        model_only_gpu_peak = mo.pop("gpu_peak_bytes")
        if device == "cuda":
            line["gpu_peak_mb"] = {"workers": [round(v / MB, 1) for v in (gpu_workers or {}).values()],
                                   "model_only": round(model_only_gpu_peak / MB, 1)}

        log(f"{size} px: read-only ceiling")
        rc = bl.read_ceiling(scene_path, tile=tile, threads=os.cpu_count() or 1)
        line.update(read_ceiling_mpx_s=_sig(rc["mpx_s"]), read_ceiling={"s": _sig(rc["s"]), "threads": rc["threads"],
                                                                        "window_px": rc["window_px"]},
                    e2e_over_read_ceiling=_ratio(e2e_mpx_s, rc["mpx_s"]))

        line.update(_run_baselines(args, size, scene_path, spec, tile, batch, workdir, e2e_mpx_s, line["e2e_mpx_per_cpu_s"]))
        line["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
        line["targets"] = _targets(line)
        return line
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_baselines(
    args, size: int, path: Path, spec, tile: int, batch: int, workdir: Path, e2e_mpx_s: float,
    e2e_mpx_per_cpu_s: float | None,
) -> dict[str, Any]:
    from bench import baselines as bl

    results: dict[str, Any] = {}
    skipped: list[str] = []
    for name in BASELINES:
        if name not in args.baseline_list:
            skipped.append(f"{name}: not asked for (--baselines)")
            continue
        if size > args.baseline_max_size and not args.force_baselines:
            skipped.append(f"{name}: size {size} > {args.baseline_max_size} px on {args.device} "
                           "(too slow for a default run; --force-baselines runs it)")
            continue
        if name == "torchgeo":
            why = bl.torchgeo_available()
            if why:
                skipped.append(f"torchgeo: {why}")
                continue
        log(f"{size} px: baseline {name}")
        with PeakRSS() as rss:
            if name == "naive":
                r = bl.naive(path, spec, args.device, tile=tile, out=workdir / "naive.geojson")
            else:
                workers = args.torchgeo_workers if args.torchgeo_workers is not None else bl.default_loader_workers()
                r = bl.torchgeo_style(path, spec, args.device, tile=tile, batch=batch, workers=workers,
                                      out=workdir / "torchgeo.geojson")
        r["peak_rss_mb"] = round(rss.peak_bytes / MB, 1)
        r["cpu_s"] = rss.cpu_seconds
        r["mpx_per_cpu_s"] = size * size / MB / rss.cpu_seconds if rss.cpu_seconds else None
        results[name] = {k: _sig(v) if isinstance(v, float) else v for k, v in r.items()}
    out: dict[str, Any] = {"baselines": results}
    for name in BASELINES:
        got = results.get(name)
        out[f"e2e_over_{name}"] = _ratio(e2e_mpx_s, got["mpx_s"]) if got else None
        out[f"e2e_over_{name}_cpu"] = _ratio(e2e_mpx_per_cpu_s, got["mpx_per_cpu_s"]) if got else None
    if skipped:
        out["baselines_skipped"] = "; ".join(skipped)
    return out


def _targets(line: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets for this device, read off this line (None where a figure is missing)."""

    def at_least(value, bound):
        return None if value is None else bool(value >= bound)

    if line["device"] == "cpu":
        t = {"e2e_over_naive>=2": at_least(line.get("e2e_over_naive"), 2.0),
             "e2e_over_model_only>=0.8": at_least(line.get("e2e_over_model_only"), 0.8)}
        if line["size"] >= 20000:
            t["peak_rss<=3GB"] = bool(line["peak_rss_mb"] <= 3000)
        return t
    return {"e2e_mpx_s>=250": at_least(line.get("e2e_mpx_s"), 250.0),
            "e2e_over_naive>=10": at_least(line.get("e2e_over_naive"), 10.0),
            "e2e_over_torchgeo>=10": at_least(line.get("e2e_over_torchgeo"), 10.0),
            "e2e>=0.6*min(read_ceiling,model_only)": at_least(
                line.get("e2e_mpx_s"), 0.6 * min(line["read_ceiling_mpx_s"], line["model_only_mpx_s"]))}


def _model_only_on_workers(client, spec, device: str, *, window: int, batch: int, tiles: int, budget_s: float,
                           precision: str, compiled=None) -> dict[str, Any]:
    """``bench.baselines.model_only`` in every worker at once (one task each, the scene's tiles shared
    out), so the ceiling has the pipeline's own processes, threads and allocator. The cluster's
    throughput is the sum of the workers' own."""
    workers = sorted(client.scheduler_info(n_workers=-1).get("workers", {}))
    share = max(1, -(-tiles // len(workers)))
    futures = [client.submit(_model_only_in_worker, spec, device, window=window, batch=batch, tiles=share, budget_s=budget_s,
                             precision=precision, compiled=compiled, workers=[w], allow_other_workers=False,
                             pure=False)
               for w in workers]
    each = client.gather(futures)
    tiles_per_s = sum(1.0 / r["s_per_tile"] for r in each)
    cpu_s_per_tile = sum(r["cpu_s_per_tile"] * r["tiles_timed"] for r in each) / sum(r["tiles_timed"] for r in each)
    return {"s_per_tile": 1.0 / tiles_per_s, "cpu_s_per_tile": cpu_s_per_tile,
            "tiles_timed": sum(r["tiles_timed"] for r in each), "window_px": window, "batch": batch,
            "precision": each[0]["precision"], "compiled": compiled is not None, "workers": len(each),
            "torch_threads": [r["torch_threads"] for r in each],
            "gpu_peak_bytes": max(r["gpu_peak_bytes"] for r in each)}


def _model_only_in_worker(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """``bench.baselines.model_only``, imported in the worker: this process, the Dask client, stays
    without torch until the end-to-end run is over, as the CLI's and the service's clients do."""
    from bench import baselines as bl

    return bl.model_only(*args, **kwargs)


def _bracketed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One model-only figure from the measurements before and after the end-to-end run: their mean
    seconds (and CPU seconds) per tile, each kept as it was measured."""
    out = {**after, "tiles_timed": before["tiles_timed"] + after["tiles_timed"],
           "gpu_peak_bytes": max(before["gpu_peak_bytes"], after["gpu_peak_bytes"])}
    for key in ("s_per_tile", "cpu_s_per_tile"):
        out[key] = (before[key] + after[key]) / 2
    out["before"], out["after"] = ({"s_per_tile": _sig(m["s_per_tile"]), "cpu_s_per_tile": _sig(m["cpu_s_per_tile"]),
                                    "tiles_timed": m["tiles_timed"]} for m in (before, after))
    return out


def _reset_gpu_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak() -> int:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else 0


def _child(argv: list[str], size: int) -> dict[str, Any]:
    """One size in a fresh ``python -m bench`` process (argparse keeps the last --sizes)."""
    cmd = [sys.executable, "-m", "bench", *argv, "--sizes", str(size), "--in-process"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"bench: the run at {size} px failed (exit {proc.returncode})")
    return json.loads(lines[-1])


def _without_out(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    # the workers' process tree inherits this: they import bench (the untrained model) from here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))
    child_argv = _without_out(argv)  # the parent writes --out; children only print
    results: dict[int, dict[str, Any]] = {}
    for size in sorted(args.size_list):
        line = run_size(args, size) if args.in_process or len(args.size_list) == 1 else _child(child_argv, size)
        if size == 20000 and 10000 in results:
            line["peak_rss_ratio_20k_10k"] = _ratio(line["peak_rss_mb"], results[10000]["peak_rss_mb"])
        results[size] = line
        emit(line, args.out)
    return 0
