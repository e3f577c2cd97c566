"""Colour palettes (display RGB, 0..1) for paint, roofs, tarps and ground, and weighted draws from them."""

from __future__ import annotations

import numpy as np

PAINT = {
    "light_grey": (0.63, 0.64, 0.63),
    "white": (0.85, 0.85, 0.83),
    "silver": (0.72, 0.73, 0.75),
    "rust": (0.47, 0.28, 0.19),
    "brown": (0.36, 0.26, 0.20),
    "dark_grey": (0.27, 0.27, 0.28),
    "black": (0.13, 0.13, 0.14),
    "blue": (0.19, 0.30, 0.52),
    "light_blue": (0.47, 0.60, 0.72),
    "green": (0.22, 0.36, 0.26),
    "red": (0.58, 0.17, 0.13),
    "orange": (0.80, 0.43, 0.16),
    "yellow": (0.80, 0.70, 0.22),
    "beige": (0.71, 0.65, 0.53),
    "olive": (0.38, 0.40, 0.24),
    "tan": (0.58, 0.48, 0.33),
}

# Railcar roofs per kind, mostly light grey, white, rust and dark grey (USE_CASE.md), a few colours.
CAR_PALETTES = {
    "box": {"light_grey": 24, "white": 16, "silver": 10, "rust": 13, "brown": 9, "dark_grey": 10, "blue": 6,
            "light_blue": 4, "green": 4, "red": 3, "beige": 3},
    "tank": {"black": 22, "dark_grey": 20, "white": 12, "silver": 12, "light_grey": 8, "blue": 8, "rust": 6,
             "green": 4, "orange": 3, "yellow": 3, "light_blue": 2},
    "hopper": {"light_grey": 20, "rust": 20, "brown": 15, "dark_grey": 12, "silver": 10, "beige": 8, "white": 5,
               "yellow": 4, "green": 4, "red": 2},
    "gondola": {"rust": 30, "brown": 25, "dark_grey": 20, "black": 10, "green": 8, "blue": 7},
    "flat": {"brown": 40, "rust": 25, "dark_grey": 25, "black": 10},
    "locomotive": {"red": 22, "blue": 18, "green": 14, "yellow": 10, "orange": 10, "dark_grey": 10, "white": 8,
                   "light_blue": 8},
}  # fmt: skip
CONTAINER_PALETTE = {
    "red": 12, "blue": 12, "white": 12, "light_grey": 14, "green": 8, "orange": 5, "dark_grey": 10, "brown": 10,
    "yellow": 3, "light_blue": 6, "beige": 6, "rust": 6,
}  # fmt: skip
TARP_PALETTE = {
    "blue": 24, "light_blue": 8, "green": 14, "olive": 10, "dark_grey": 8, "light_grey": 8, "white": 7, "orange": 6,
    "tan": 7, "brown": 4, "black": 4, "red": 3, "yellow": 2,
}  # fmt: skip
ROOF_PALETTE = {
    "light_grey": 25, "white": 10, "dark_grey": 18, "silver": 10, "rust": 6, "brown": 6, "red": 8, "blue": 5,
    "green": 5, "beige": 7,
}  # fmt: skip
VEHICLE_PALETTE = {"white": 30, "black": 15, "silver": 18, "dark_grey": 12, "blue": 8, "red": 8, "light_grey": 5,
                   "green": 2, "yellow": 2}  # fmt: skip

# Ground materials per season: mean colour and the spread of a second tone mixed in by noise.
GROUND = {
    "summer": {"grass": ((0.33, 0.42, 0.22), (0.45, 0.47, 0.28)), "soil": ((0.50, 0.45, 0.37), (0.41, 0.37, 0.31))},
    "spring": {"grass": ((0.38, 0.48, 0.25), (0.30, 0.38, 0.20)), "soil": ((0.47, 0.42, 0.35), (0.38, 0.34, 0.29))},
    "autumn": {"grass": ((0.50, 0.47, 0.30), (0.40, 0.40, 0.24)), "soil": ((0.47, 0.41, 0.33), (0.37, 0.32, 0.26))},
    "winter": {"grass": ((0.52, 0.50, 0.40), (0.43, 0.41, 0.33)), "soil": ((0.45, 0.40, 0.34), (0.36, 0.32, 0.28))},
    "snow": {"grass": ((0.90, 0.91, 0.93), (0.82, 0.84, 0.88)), "soil": ((0.52, 0.48, 0.42), (0.40, 0.37, 0.33))},
    "arid": {"grass": ((0.66, 0.58, 0.44), (0.58, 0.50, 0.38)), "soil": ((0.72, 0.62, 0.48), (0.62, 0.52, 0.40))},
}
TREE = {
    "summer": (0.16, 0.26, 0.12), "spring": (0.26, 0.36, 0.16), "autumn": (0.45, 0.33, 0.15),
    "winter": (0.30, 0.27, 0.23), "snow": (0.32, 0.30, 0.28), "arid": (0.28, 0.32, 0.18),
}  # fmt: skip


# Keyed by the palette's contents, not id(): callers pass literal dicts too, and a freed dict's id
# is reused by the next one, which then drew from the wrong palette (renders differed run to run).
_CUMULATIVE: dict[tuple, tuple[list[str], np.ndarray]] = {}


def pick(rng: np.random.Generator, palette: dict) -> tuple[float, float, float]:
    """A colour drawn from ``palette`` (name -> weight), with a little jitter."""
    key = tuple(palette.items())
    table = _CUMULATIVE.get(key)
    if table is None:
        names = list(palette)
        cum = np.cumsum([palette[k] for k in names], dtype=float)
        table = _CUMULATIVE[key] = (names, cum / cum[-1])
    names, cum = table
    name = names[min(int(np.searchsorted(cum, rng.random(), side="right")), len(names) - 1)]
    return jitter(rng, PAINT[name])


def wide_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """A weathered paint anywhere from dark to light grey with a faint tint of any hue: the mid greys,
    beiges and browns of ballast and soil that the palettes above rarely give. Scenes drawn elsewhere
    have such cars, and a model that learnt cars only from their contrast with the ballast missed
    them (models.plain_yards)."""
    grey = float(rng.uniform(0.2, 0.8))
    tint = rng.normal(0.0, 0.06, 3)
    return tuple(float(min(0.98, max(0.02, grey * (1.0 + t)))) for t in tint)  # type: ignore[return-value]


def jitter(rng: np.random.Generator, colour, amount: float = 0.05) -> tuple[float, float, float]:
    r = rng.standard_normal(4)
    scale = 1.0 + amount * r[0]
    spread = amount / 2.5
    return tuple(min(0.98, max(0.02, c * scale + spread * d)) for c, d in zip(colour, r[1:], strict=True))  # type: ignore[return-value]


def weather(rng: np.random.Generator, colour, fade: tuple[float, float] = (0.1, 0.45), grime: float = 0.25):
    """Paint as it looks after years outdoors: faded towards its own grey, with some brown grime."""
    grey = 0.3 * colour[0] + 0.59 * colour[1] + 0.11 * colour[2]
    faded = mix(colour, (grey, grey, grey), float(rng.uniform(*fade)))
    return mix(faded, (0.36, 0.31, 0.26), float(rng.uniform(0.0, grime)))


def mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]
