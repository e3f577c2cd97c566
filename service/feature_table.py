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

# Numeric properties (a NaN means "not for this feature"), the counts among them written as integers,
# and text ones (None means "not for this feature"); PROPERTIES is the order they appear in.
NUMERIC_PROPERTIES = ("confidence", "length_m", "bridged_m", "width_m", "heading_deg", "area_m2",
                      "consist_position", "consist_cars")
INTEGER_PROPERTIES = frozenset({"consist_position", "consist_cars"})
TEXT_PROPERTIES = ("colour", "track_id", "consist_id")
PROPERTIES = (*NUMERIC_PROPERTIES[:6], "colour", "track_id", "consist_id", "consist_position", "consist_cars")
CHUNK = 4096


class FeatureTable(Sequence[dict[str, Any]]):
    """Features as columns: output geometries (shapely, already in output coordinates; kept as WKB),
    ``id`` and ``class`` strings, numeric properties (NaN where a property does not apply) and text
    ones (None where it does not)."""

    def __init__(self, geometries: np.ndarray, ids: np.ndarray, classes: np.ndarray,
                 numeric: dict[str, np.ndarray], text: dict[str, np.ndarray] | None = None) -> None:  # fmt: skip
        self._set(shapely.to_wkb(np.asarray(geometries, dtype=object)), ids, classes, numeric, text or {})

    def _set(self, wkb: np.ndarray, ids: np.ndarray, classes: np.ndarray, numeric: dict[str, np.ndarray],
             text: dict[str, np.ndarray]) -> None:
        n = len(wkb)
        unknown = (set(numeric) - set(NUMERIC_PROPERTIES)) | (set(text) - set(TEXT_PROPERTIES))
        if unknown:
            raise ValueError(f"unknown feature properties: {sorted(unknown)}")
        columns = [*numeric.values(), *text.values()]
        if len(ids) != n or len(classes) != n or any(len(v) != n for v in columns):
            raise ValueError("every feature column must have one value per geometry")
        self._wkb = wkb
        self._ids = np.asarray(ids, dtype=object)
        self._classes = np.asarray(classes, dtype=object)
        self._numeric = {k: np.asarray(numeric[k], dtype=np.float64) for k in NUMERIC_PROPERTIES if k in numeric}
        self._text = {k: np.asarray(text[k], dtype=object) for k in TEXT_PROPERTIES if k in text}

    @classmethod
    def from_wkb(cls, wkb: np.ndarray, ids: np.ndarray, classes: np.ndarray,
                 numeric: dict[str, np.ndarray], text: dict[str, np.ndarray] | None = None) -> FeatureTable:  # fmt: skip
        """A table of geometries already WKB (see ``GeometryMapper.to_output_wkb``)."""
        table = cls.__new__(cls)
        table._set(np.asarray(wkb, dtype=object), ids, classes, numeric, text or {})
        return table

    @classmethod
    def empty(cls) -> FeatureTable:
        none = np.zeros(0, dtype=object)
        return cls(none, none, none, {})

    @classmethod
    def concat(cls, tables: Sequence[FeatureTable]) -> FeatureTable:
        """One table of the features of ``tables``, in order; a property missing from a table is NaN
        (or None)."""
        def joined(name: str, keys: Sequence[str], missing: Any, dtype: Any) -> dict[str, np.ndarray]:
            present = [k for k in keys if any(k in getattr(t, name) for t in tables)]
            return {k: np.concatenate([getattr(t, name).get(k, np.full(len(t), missing, dtype=dtype)) for t in tables])
                    for k in present}  # fmt: skip

        def column(name: str) -> np.ndarray:
            return np.concatenate([getattr(t, name) for t in tables] or [np.zeros(0, dtype=object)])

        return cls.from_wkb(column("_wkb"), column("_ids"), column("_classes"),
                            joined("_numeric", NUMERIC_PROPERTIES, np.nan, np.float64),
                            joined("_text", TEXT_PROPERTIES, None, object))

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

    def encodable(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Features ``start:stop`` as ``service.geojson.write_geojson`` encodes them: the dicts that
        reading gives, but with coordinates as numpy arrays, which its encoder writes as the same text."""
        return self._build(start, stop, arrays=True)

    def _build(self, start: int, stop: int, *, arrays: bool = False) -> list[dict[str, Any]]:
        if stop <= start:
            return []
        geometries = geometry_members(shapely.from_wkb(self._wkb[start:stop]), arrays=arrays)
        keys, rows = self._property_rows(start, stop)
        ids, classes = self._ids[start:stop].tolist(), self._classes[start:stop].tolist()
        return [feature(fid, geometry, {"id": fid, "class": cls,
                                        **{k: v for k, v in zip(keys, row, strict=True) if v is not None}})
                for fid, cls, geometry, row in zip(ids, classes, geometries, rows, strict=True)]  # fmt: skip

    def _property_rows(self, start: int, stop: int) -> tuple[list[str], Iterator[tuple]]:
        """The property names in output order, and for each feature its values in that order, None
        where the property is not for that feature (a NaN number, a None text)."""
        keys, columns = [], []
        for k in PROPERTIES:
            if k in self._numeric:
                values = self._numeric[k][start:stop]
                missing = np.isnan(values)
                listed = (np.where(missing, 0, values).astype(np.int64) if k in INTEGER_PROPERTIES else values).tolist()
                if missing.any():
                    for i in np.flatnonzero(missing).tolist():
                        listed[i] = None
            elif k in self._text:
                listed = self._text[k][start:stop].tolist()
            else:
                continue
            keys.append(k)
            columns.append(listed)
        return keys, zip(*columns, strict=True) if columns else iter([()] * (stop - start))
