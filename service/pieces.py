"""Objects and track pieces of any number of tiles, as flat arrays: the form they travel from the
workers in and wait in on the client until the merge.

A shapely geometry is a Python object and a few GEOS allocations, several hundred bytes; a railcar's
rectangle is five coordinates, 80 bytes. A 20,000 x 20,000 px scene has about 100,000 objects and
74,000 track pieces: held as shapely objects they were 110 MB of the client before the merge, and
each arrived as its own pickled geometry. Here a batch's pieces are shapely's ragged arrays (one
coordinate array and its offsets) plus a class and a confidence per piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import GeometryType

from kernels.object_colour import NO_COLOUR
from kernels.vectorise import PixelLine, PixelObject
from models.interface import ALL_CLASSES

# Offset arrays per geometry type, outermost last (see shapely.to_ragged_array).
_LEVELS = {GeometryType.LINESTRING: 1, GeometryType.POLYGON: 2}


@dataclass(frozen=True)
class Pieces:
    """Geometries of one type (grid pixel coordinates), each with a class (index into
    ``ALL_CLASSES``), a confidence and a colour (``NO_COLOUR`` where not known: always for lines)."""

    kind: GeometryType
    coords: np.ndarray  # (N, 2) float64
    offsets: tuple[np.ndarray, ...]
    classes: np.ndarray  # uint8
    confidence: np.ndarray  # float64
    colours: np.ndarray  # (N, 3) int16, mean RGB (kernels.object_colour)

    @classmethod
    def empty(cls, kind: GeometryType) -> Pieces:
        offsets = tuple(np.zeros(1, dtype=np.int64) for _ in range(_LEVELS[kind]))
        return cls(kind, np.zeros((0, 2)), offsets, np.zeros(0, dtype=np.uint8), np.zeros(0), _colours([]))

    @classmethod
    def of(cls, kind: GeometryType, geometries: Sequence, classes: Sequence[str], confidence: Sequence[float],
           colours: Sequence[tuple[int, int, int] | None] | None = None) -> Pieces:
        if not len(geometries):
            return cls.empty(kind)
        geoms = np.asarray(geometries, dtype=object)
        found = set(shapely.get_type_id(geoms).tolist())
        if found != {kind}:
            raise ValueError(f"expected only {kind.name} geometries, got {sorted(GeometryType(t).name for t in found)}")
        _, coords, offsets = shapely.to_ragged_array(geoms, include_z=False)
        index = {name: i for i, name in enumerate(ALL_CLASSES)}
        return cls(kind, coords, tuple(offsets), np.array([index[c] for c in classes], dtype=np.uint8),
                   np.asarray(confidence, dtype=np.float64), _colours(colours or [None] * len(geoms)))

    @classmethod
    def from_objects(cls, objects: Sequence[PixelObject]) -> Pieces:
        """An outline that is not one polygon (or is empty) cannot be a feature; the merge always
        dropped such objects, and they are dropped here."""
        objects = [o for o in objects if o.polygon.geom_type == "Polygon" and not o.polygon.is_empty]
        return cls.of(GeometryType.POLYGON, [o.polygon for o in objects], [o.cls for o in objects],
                      [o.confidence for o in objects], [o.colour for o in objects])

    @classmethod
    def from_lines(cls, lines: Sequence[PixelLine]) -> Pieces:
        return cls.of(GeometryType.LINESTRING, [p.line for p in lines], ["track"] * len(lines),
                      [p.confidence for p in lines])

    def __len__(self) -> int:
        return len(self.confidence)

    def geometries(self) -> np.ndarray:
        """The shapely geometries, built in one call."""
        if not len(self):
            return np.zeros(0, dtype=object)
        return shapely.from_ragged_array(self.kind, self.coords, self.offsets)

    def take(self, order: np.ndarray) -> Pieces:
        """The line pieces at ``order``, in that order, without making their geometries."""
        if self.kind != GeometryType.LINESTRING:
            raise ValueError("take is for line pieces")
        start, size = self.offsets[0][:-1][order], np.diff(self.offsets[0])[order]
        offsets = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
        rows = np.repeat(start - offsets[:-1], size) + np.arange(offsets[-1])
        return Pieces(self.kind, self.coords[rows], (offsets,), self.classes[order], self.confidence[order],
                      self.colours[order])

    def line_lengths(self) -> np.ndarray:
        """Length of each line piece, from the coordinates."""
        step = np.hypot(*np.diff(self.coords, axis=0).T)
        step[self.offsets[0][1:-1] - 1] = 0.0  # no step from one piece's last point to the next one's first
        return np.add.reduceat(np.append(step, 0.0), self.offsets[0][:-1]) if len(self) else np.zeros(0)

    def class_names(self) -> np.ndarray:
        return np.array(ALL_CLASSES, dtype=object)[self.classes]

    @classmethod
    def concat(cls, parts: Sequence[Pieces], kind: GeometryType) -> Pieces:
        """One set of the pieces of ``parts``, in order. Each offset array counts elements of the
        level below it (coordinates, then rings), so each part's offsets move by what came before."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(kind)
        if any(p.kind != kind for p in parts):
            raise ValueError(f"cannot join pieces of other types into {kind.name}")
        offsets = []
        for level in range(_LEVELS[kind]):
            below = [len(p.coords) if level == 0 else len(p.offsets[level - 1]) - 1 for p in parts]
            shift = np.cumsum([0, *below[:-1]])
            offsets.append(np.concatenate(
                [parts[0].offsets[level][:1].astype(np.int64)]
                + [p.offsets[level][1:].astype(np.int64) + s for p, s in zip(parts, shift, strict=True)]))
        return cls(kind, np.concatenate([p.coords for p in parts]), tuple(offsets),
                   np.concatenate([p.classes for p in parts]), np.concatenate([p.confidence for p in parts]),
                   np.concatenate([p.colours for p in parts]))


def _colours(colours: Sequence[tuple[int, int, int] | None]) -> np.ndarray:
    """(N, 3) int16 colours, ``NO_COLOUR`` in each channel of an unknown one."""
    out = np.full((len(colours), 3), NO_COLOUR, dtype=np.int16)
    for i, colour in enumerate(colours):
        if colour is not None:
            out[i] = colour
    return out
