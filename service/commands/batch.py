"""`railsight batch --scenes LIST --out DIR`: many scenes to one GeoJSON each, resumable.

The scene list is a UTF-8 text file with one scene per line (a path, or a URL GDAL reads); blank lines
and lines starting with ``#`` are skipped, and relative paths are taken from the list file's folder.
Entries are numbered from 0 in the order they appear; with ``JOB_COMPLETION_INDEX`` set (a Kubernetes
Indexed Job) or ``--index N``, only that entry is processed, otherwise all of them.

What lands in DIR::

    NAME.geojson           one FeatureCollection per scene (RFC 7946, with its `summary`)
    NAME.classes.tif       the class COG, with --class-raster
    summary.json           every scene's status and counts, and the totals
    .batch/NAME.done.json  completion marker: scene, options fingerprint, the scene's files as read,
                           output size and sha256
    .batch/NAME.error.json the error of the last failed attempt at that scene

NAME is the scene's file stem plus 8 hex digits of a hash of its full path, so two scenes called
``scene.tif`` in different folders never share an output. Outputs and markers are written to a temporary
name and renamed, the marker last: a scene counts as done only when its marker names the same scene and
options and its GeoJSON has the recorded size. A rerun skips done scenes and redoes the rest, so an
interrupted run resumes with nothing lost or duplicated; a scene whose options changed is redone, and
so is a local scene whose files changed since it ran (the image, or the metadata GDAL reads beside it:
an ``.IMD`` added later brings the scene's view, which changes its railcars).

Bad scenes: a run over one scene (an indexed pod) fails like `detect` (one line, exit 2). A run over
several records each bad scene (one line on stderr and an error marker), goes on with the rest, and
exits 2 at the end. A model that cannot be loaded stops the run at once. `summary.json` is rebuilt
from the markers, under a lock, at the end of a run over several scenes, and in indexed mode by each
pod that finds no scene left pending; `--summarize` rebuilds it at any time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distributed import Client
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from tqdm import tqdm

from models.spec import ModelSpec, WeightsError
from service import geojson
from service.cluster import dask_client
from service.commands.detect import add_scene_options, scene_options_from_args, settings_from_args
from service.errors import BadOption, Cancelled, RailsightError
from service.geojson import write_geojson
from service.pipeline import DetectOptions, detect_scene, model_meta, model_spec_from_settings
from service.rasters import is_remote, scene_inputs

STATE_DIR = ".batch"
SUMMARY = "summary.json"
# Errors that stop a whole run rather than one scene: every other scene would fail the same way.
RUN_ERRORS = (WeightsError, Cancelled)
# Scenes run at once. A scene's merge and GeoJSON writing run in this process after its last tile,
# and would leave the workers idle meanwhile: two at a time, the next scene's tiles fill that gap.
# Four 5,000 px bench scenes took 23.8-24.0 s against 25.7-25.8 s one at a time, the cluster's start
# included (2-core AMD EPYC, bf16, alternating runs). The job service runs two at a time as well.
CONCURRENT_SCENES = 2


class BatchFailed(RailsightError):
    """Some scenes of a multi-scene run could not be used; the rest were written."""

    code = "batch_failed"


class JobEnv(BaseSettings):
    """The index Kubernetes gives each pod of an Indexed Job (no RAILSIGHT_ prefix: Kubernetes names it)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    job_completion_index: int | None = None


@dataclass(frozen=True)
class Entry:
    index: int
    scene: str
    name: str


# ---------------------------------------------------------------------------------------------- list


def read_scene_list(path: str | Path) -> list[Entry]:
    """Entries of a scene list file, numbered from 0, relative paths resolved from the list's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadOption(f"scene list not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadOption(f"cannot read scene list {path}: {exc}") from None
    entries: list[Entry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        scene = resolve_scene(line, path.parent)
        entries.append(Entry(len(entries), scene, output_name(scene)))
    if not entries:
        raise BadOption(f"scene list {path} names no scenes (one path per line; # starts a comment)")
    return entries


def resolve_scene(line: str, base: Path) -> str:
    if is_remote(line):
        return line
    return os.path.normpath(os.path.join(os.path.abspath(base), os.path.expanduser(line)))


def output_name(scene: str) -> str:
    """``<stem>-<8 hex digits of sha1(scene)>``: readable, and unique for distinct scene paths."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(scene.rstrip("/").split("?")[0]).stem).strip("._") or "scene"
    return f"{stem[:60]}-{hashlib.sha1(scene.encode('utf-8')).hexdigest()[:8]}"


def select(entries: list[Entry], index: int | None) -> list[Entry]:
    if index is None:
        return entries
    if not 0 <= index < len(entries):
        raise BadOption(f"scene index {index} is out of range: the list has {len(entries)} scenes (0..{len(entries) - 1})")
    return [entries[index]]


def job_index() -> int | None:
    try:
        return JobEnv().job_completion_index
    except ValidationError:
        raise BadOption("JOB_COMPLETION_INDEX must be a whole number") from None


# ---------------------------------------------------------------------------------------------- state


class Layout:
    """Where everything for one output folder lives."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.state = self.out / STATE_DIR

    def geojson(self, entry: Entry) -> Path:
        return self.out / f"{entry.name}.geojson"

    def classes(self, entry: Entry) -> Path:
        return self.out / f"{entry.name}.classes.tif"

    def done(self, entry: Entry) -> Path:
        return self.state / f"{entry.name}.done.json"

    def error(self, entry: Entry) -> Path:
        return self.state / f"{entry.name}.error.json"

    @property
    def summary(self) -> Path:
        return self.out / SUMMARY

    def prepare(self) -> None:
        try:
            self.state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadOption(f"cannot create output folder {self.out}: {exc.strerror or exc}") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    geojson.write_json(data, path, indent=2)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fingerprint(options: DetectOptions, model: dict[str, str], class_raster: bool) -> tuple[str, dict[str, Any]]:
    """What decides a scene's output. Device, batch size and worker count do not (nor does the tile
    for weights that name their own, but it does for those that do not)."""
    what: dict[str, Any] = {
        "tile": options.tile,
        "model_tile": options.model_tile,
        "bands": list(options.bands) if options.bands else None,
        "classes": list(options.classes),
        "min_confidence": options.min_confidence,
        "tta": options.tta,
        "allow_pixel_coords": options.allow_pixel_coords,
        "class_raster": class_raster,
        "model": model,
    }
    # Each only where set: the fingerprints of outputs made before it stay.
    if options.pixel_size_m is not None:
        what["pixel_size_m"] = options.pixel_size_m
    if options.view is not None:
        what["view"] = [options.off_nadir_deg, options.satellite_azimuth_deg]
    if not options.view_metadata:
        what["view_metadata"] = False
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return digest, what


def completed(layout: Layout, entry: Entry, fp: str | None = None, *, class_raster: bool = False) -> dict | None:
    """The marker of a finished scene, or None. With ``fp`` (a fingerprint) it must also match it."""
    marker = read_json(layout.done(entry))
    if not marker or marker.get("scene") != entry.scene:
        return None
    if fp is not None and marker.get("fingerprint") != fp:
        return None
    # Markers written before the scene's files were recorded, and remote scenes, have none to compare.
    if marker.get("inputs") is not None and marker["inputs"] != scene_inputs(entry.scene):
        return None
    try:
        if layout.geojson(entry).stat().st_size != marker.get("bytes"):
            return None
    except OSError:
        return None
    if class_raster and not layout.classes(entry).is_file():
        return None
    return marker


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- summary


@contextlib.contextmanager
def summary_lock(layout: Layout) -> Iterator[None]:
    """An exclusive flock, so the last writer of summary.json is also the last to have read the markers."""
    with open(layout.state / "summary.lock", "a") as fh:
        # A filesystem without locks: the rebuild is still atomic, just not ordered.
        with contextlib.suppress(OSError):
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def rebuild_summary(layout: Layout, entries: list[Entry]) -> dict[str, Any]:
    """summary.json from the markers alone; safe to run from any number of processes at once."""
    layout.prepare()
    with summary_lock(layout):
        scenes: list[dict[str, Any]] = []
        totals: dict[str, int] = {}
        status_count = {"done": 0, "failed": 0, "pending": 0}
        seen: set[str] = set()
        for entry in entries:
            if entry.name in seen:  # the same scene listed twice: one output, counted once
                continue
            seen.add(entry.name)
            row: dict[str, Any] = {"index": entry.index, "scene": entry.scene, "output": layout.geojson(entry).name}
            marker = completed(layout, entry)
            error = read_json(layout.error(entry))
            if marker:
                row.update(status="done", counts=marker.get("counts", {}), finished_at=marker.get("finished_at"))
                for cls, n in row["counts"].items():
                    totals[cls] = totals.get(cls, 0) + int(n)
            elif error:
                row.update(status="failed", error=error.get("error"), failed_at=error.get("failed_at"))
            else:
                row["status"] = "pending"
            status_count[row["status"]] += 1
            scenes.append(row)
        summary = {
            "scenes_total": len(scenes),
            **status_count,
            "complete": status_count["done"] == len(scenes),
            "counts": totals,
            "updated_at": now(),
            "scenes": scenes,
        }
        write_json(layout.summary, summary)
    return summary


def nothing_pending(layout: Layout, entries: list[Entry]) -> bool:
    """Every scene has a done or error marker: one directory listing, no file reads."""
    try:
        names = set(os.listdir(layout.state))
    except OSError:
        return False
    return all(f"{e.name}.done.json" in names or f"{e.name}.error.json" in names for e in entries)


def summary_line(layout: Layout, summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {cls}" for cls, n in summary["counts"].items()) or "no features"
    return (
        f"{layout.summary}: {summary['done']} done, {summary['failed']} failed, {summary['pending']} pending "
        f"of {summary['scenes_total']} scenes; {counts}"
    )


# ---------------------------------------------------------------------------------------------- run


@dataclass
class Outcome:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    first_error: str | None = None


ClientFactory = Callable[[], AbstractContextManager[Client]]


def process(
    selected: list[Entry],
    layout: Layout,
    options: DetectOptions,
    model: ModelSpec,
    client_factory: ClientFactory,
    *,
    class_raster: bool = False,
    quiet: bool = False,
    stop_on_error: bool = False,
    concurrency: int = 1,
) -> Outcome:
    """Run the pipeline on each selected scene that is not done yet, ``concurrency`` scenes at once.
    A scene error is recorded and the next scene runs, unless ``stop_on_error`` (then it is raised,
    after recording it)."""
    options.check()
    meta = model_meta(model)  # loads or reads the model once here: a bad model stops the run before any scene
    fp, what = fingerprint(options, {"spec": model.describe(), "name": meta.name, "version": meta.version}, class_raster)
    layout.prepare()
    outcome = Outcome()
    todo = []
    for entry in selected:
        if completed(layout, entry, fp, class_raster=class_raster):
            outcome.skipped += 1
        else:
            todo.append(entry)
    if outcome.skipped:
        print(f"skipping {outcome.skipped} scene(s) already done in {layout.out}", file=sys.stderr)
    if not todo:
        return outcome
    # Each scene's files as they are before it runs: one changed during its run is redone next time.
    inputs = {entry.name: scene_inputs(entry.scene) for entry in todo}
    bar = tqdm(total=len(todo), unit="scene", desc="scenes", disable=quiet or None, file=sys.stderr)
    cancel = threading.Event()  # set when the run stops: scenes still running end within half a second
    try:
        with client_factory() as client, ThreadPoolExecutor(max(1, min(concurrency, len(todo))),
                                                            thread_name_prefix="railsight-scene") as pool:
            running = {pool.submit(run_one, entry, layout, options, model, client, fp, what, class_raster, bar,
                                   cancel, inputs[entry.name]): entry for entry in todo}  # fmt: skip
            try:
                for future in as_completed(running):
                    _record(future, running[future], layout, outcome, bar, stop_on_error)
            except BaseException:
                # A run error or Ctrl-C: scenes not started are dropped and those running told to stop,
                # so the pool's shutdown waits half a second, not for whole scenes. A stopped scene
                # writes nothing.
                for future in running:
                    future.cancel()
                cancel.set()
                raise
    finally:
        bar.close()
    return outcome


def _record(future: Future, entry: Entry, layout: Layout, outcome: Outcome, bar: tqdm, stop_on_error: bool) -> None:
    """A finished scene's outcome: counted done with its line printed, or its error recorded (and
    raised where it stops the run)."""
    try:
        line = future.result()
    except RUN_ERRORS:
        raise
    except RailsightError as exc:
        write_json(layout.error(entry), {"scene": entry.scene, "index": entry.index, "failed_at": now(),
                                         "error": {"code": exc.code, "message": str(exc)}})  # fmt: skip
        if stop_on_error:
            raise
        outcome.failed += 1
        outcome.first_error = outcome.first_error or f"{entry.scene}: {exc}"
        bar.write(f"railsight: error: {entry.scene}: {exc}", file=sys.stderr)
    else:
        outcome.done += 1
        bar.write(line, file=sys.stdout)
    bar.update(1)


def run_one(
    entry: Entry,
    layout: Layout,
    options: DetectOptions,
    model: ModelSpec,
    client: Client,
    fp: str,
    what: dict[str, Any],
    class_raster: bool,
    bar: tqdm,
    cancel: threading.Event | None = None,
    inputs: list[list[Any]] | None = None,
) -> str:
    """One scene detected and written, its marker last; ``inputs``: its files as they were before
    (``scene_inputs``), recorded in the marker."""
    classes_path = layout.classes(entry)
    scene_options = options if not class_raster else DetectOptions(**{**asdict(options), "class_raster": str(classes_path)})

    def progress(done: int, total: int) -> None:
        bar.set_postfix_str(f"{entry.name}: {done}/{total} tiles", refresh=True)

    collection = detect_scene(entry.scene, scene_options, model, client, progress=progress, cancel=cancel)
    path = write_geojson(collection, layout.geojson(entry))
    summary = collection["summary"]
    write_json(
        layout.done(entry),
        {
            "scene": entry.scene,
            "index": entry.index,
            "output": path.name,
            "class_raster": classes_path.name if class_raster else None,
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
            "counts": summary["counts"],
            "fingerprint": fp,
            "options": what,
            "inputs": inputs,
            "device": summary.get("device"),
            "total_s": summary.get("timings", {}).get("total_s"),
            "finished_at": now(),
        },
    )
    layout.error(entry).unlink(missing_ok=True)
    counts = ", ".join(f"{n} {cls}" for cls, n in summary["counts"].items())
    return f"{path}: {counts} ({summary['timings']['total_s']:.1f} s, {summary['device']})"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="detect in every scene of a list, one GeoJSON each; resumable",
        description="Run detect over a list of scenes (one path per line). Resumable: scenes already done "
        "in --out are skipped. With JOB_COMPLETION_INDEX set (Kubernetes Indexed Job) only that entry runs.",
    )
    p.add_argument("--scenes", required=True, metavar="LIST", help="text file, one scene path or URL per line")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for NAME.geojson files and summary.json")
    p.add_argument("--index", type=int, help="process only entry N of the list, from 0 (default: $JOB_COMPLETION_INDEX)")
    p.add_argument("--summarize", action="store_true", help="only rebuild DIR/summary.json from what is done")
    p.add_argument("--class-raster", action="store_true", help="also write NAME.classes.tif (class COG) per scene")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--concurrency", type=int, default=CONCURRENT_SCENES, metavar="N",
                   help=f"scenes at once (default {CONCURRENT_SCENES}: one scene's merge and writing, here, "
                   "overlap the next one's tiles on the workers)")
    add_scene_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    entries = read_scene_list(args.scenes)
    layout = Layout(args.out)
    if args.summarize:
        print(summary_line(layout, rebuild_summary(layout, entries)))
        return 0
    if args.concurrency < 1:
        raise BadOption(f"--concurrency must be at least 1, got {args.concurrency}")
    index = args.index if args.index is not None else job_index()
    selected = select(entries, index)
    settings = settings_from_args(args)
    options = scene_options_from_args(args, settings)
    single = len(selected) == 1
    try:
        outcome = process(
            selected,
            layout,
            options,
            model_spec_from_settings(settings),
            lambda: dask_client(settings),
            class_raster=args.class_raster,
            quiet=args.quiet,
            stop_on_error=single,
            concurrency=args.concurrency,
        )
    finally:
        # Indexed pods rebuild only once nothing is pending, so n pods do not each read n markers.
        if index is None or nothing_pending(layout, entries):
            with contextlib.suppress(OSError, RailsightError):
                summary = rebuild_summary(layout, entries)
                if index is None:
                    print(summary_line(layout, summary))
    if outcome.failed:
        raise BatchFailed(
            f"{outcome.failed} of {len(selected)} scenes failed (first: {outcome.first_error}); "
            f"the others were written, see {layout.summary}"
        )
    return 0
