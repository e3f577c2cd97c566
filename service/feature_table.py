"""A scene's output features kept as columns, built as GeoJSON dicts only when read.

A large scene has many features (about 112,000 at 20,000 x 20,000 px). As dicts of nested lists they
took about 240 MB of the client before the file was written; as an array of output geometries and a
few numpy columns they take about a tenth of that. The geometries wait as WKB: a shapely object is
several hundred bytes of Python and GEOS objects, a railcar's WKB 93 bytes. Reading (iteration,
indexing, ``len``) gives the same dicts as before, built a chunk at a time, and
``service.geojson.write_geojson`` streams them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import shapely

from service.geojson import feature, geometry_members

# Properties in the order they appear in a feature; a NaN in a column means "not for this feature".
NUMERIC_PROPERTIES = ("confidence", "length_m", "bridged_m", "width_m", "heading_deg", "area_m2")
CHUNK = 4096


class FeatureTable(Sequence[dict[str, Any]]):
    """Features as columns: output geometries (shapely, already in output coordinates; kept as WKB),
    ``id`` and ``class`` strings, and numeric properties (NaN where a property does not apply)."""

    def __init__(self, geometries: np.ndarray, ids: np.ndarray, classes: np.ndarray,
                 numeric: dict[str, np.ndarray]) -> None:  # fmt: skip
        self._set(shapely.to_wkb(np.asarray(geometries, dtype=object)), ids, classes, numeric)

    def _set(self, wkb: np.ndarray, ids: np.ndarray, classes: np.ndarray, numeric: dict[str, np.ndarray]) -> None:
        n = len(wkb)
        unknown = set(numeric) - set(NUMERIC_PROPERTIES)
        if unknown:
            raise ValueError(f"unknown feature properties: {sorted(unknown)}")
        if len(ids) != n or len(classes) != n or any(len(v) != n for v in numeric.values()):
            raise ValueError("every feature column must have one value per geometry")
        self._wkb = wkb
        self._ids = np.asarray(ids, dtype=object)
        self._classes = np.asarray(classes, dtype=object)
        self._numeric = {k: np.asarray(numeric[k], dtype=np.float64) for k in NUMERIC_PROPERTIES if k in numeric}

    @classmethod
    def from_wkb(cls, wkb: np.ndarray, ids: np.ndarray, classes: np.ndarray,
                 numeric: dict[str, np.ndarray]) -> FeatureTable:  # fmt: skip
        """A table of geometries already WKB (see ``GeometryMapper.to_output_wkb``)."""
        table = cls.__new__(cls)
        table._set(np.asarray(wkb, dtype=object), ids, classes, numeric)
        return table

    @classmethod
    def empty(cls) -> FeatureTable:
        none = np.zeros(0, dtype=object)
        return cls(none, none, none, {})

    @classmethod
    def concat(cls, tables: Sequence[FeatureTable]) -> FeatureTable:
        """One table of the features of ``tables``, in order; a property missing from a table is NaN."""
        keys = [k for k in NUMERIC_PROPERTIES if any(k in t._numeric for t in tables)]
        numeric = {k: np.concatenate([t._numeric.get(k, np.full(len(t), np.nan)) for t in tables] or [np.zeros(0)])
                   for k in keys}  # fmt: skip
        def column(name: str) -> np.ndarray:
            return np.concatenate([getattr(t, name) for t in tables] or [np.zeros(0, dtype=object)])

        return cls.from_wkb(column("_wkb"), column("_ids"), column("_classes"), numeric)

    def __len__(self) -> int:
        return len(self._wkb)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            return self._build(start, stop) if step == 1 else [self[i] for i in range(start, stop, step)]
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError("feature index out of range")
        return self._build(i, i + 1)[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self), CHUNK):
            yield from self._build(start, min(start + CHUNK, len(self)))

    def _build(self, start: int, stop: int) -> list[dict[str, Any]]:
        if stop <= start:
            return []
        geometries = geometry_members(shapely.from_wkb(self._wkb[start:stop]))
        columns = [(k, v[start:stop].tolist()) for k, v in self._numeric.items()]
        out = []
        for j, (fid, cls, geometry) in enumerate(zip(self._ids[start:stop].tolist(), self._classes[start:stop].tolist(),
                                                     geometries, strict=True)):  # fmt: skip
            props: dict[str, Any] = {"id": fid, "class": cls}
            props.update((k, values[j]) for k, values in columns if values[j] == values[j])  # NaN: not set
            out.append(feature(fid, geometry, props))
        return out
