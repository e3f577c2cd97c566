"""Where job outputs live: ``RESULTS/<job id>/detections.geojson`` (and ``classes.tif``).

Files are written under a temporary name and renamed (``service.geojson.write_geojson``), so a
reader sees the whole result or none, and a retried job replaces, never duplicates, its features.
The store keeps paths relative to the results folder, so the folder may be mounted anywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from service.geojson import write_geojson

GEOJSON = "detections.geojson"
CLASSES = "classes.tif"


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def classes_target(self, job_id: str) -> Path:
        path = self.job_dir(job_id) / CLASSES
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_geojson(self, job_id: str, collection: dict[str, Any]) -> str:
        """Write atomically; returns the path relative to the results folder."""
        path = write_geojson(collection, self.job_dir(job_id) / GEOJSON)
        return path.relative_to(self.root).as_posix()

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def path_of(self, relative: str) -> Path:
        """Absolute path of a stored result; refuses anything that would leave the results folder."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"result path {relative!r} escapes the results folder")
        return path

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
