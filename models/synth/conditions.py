"""Randomised imaging conditions of a scene: pixel size, season, sun, atmosphere and sensor.

Everything a scene's look depends on apart from its contents is drawn here, from its own random
stream, into one plain dict that travels with the scene (and into its truth GeoJSON). Callers fix
any of it through ``overrides`` with the same keys.
"""

from __future__ import annotations

import numpy as np

PIXEL_SIZE_RANGE_M = (0.25, 1.0)
SEASONS = ("summer", "spring", "autumn", "winter", "snow", "arid")
SEASON_WEIGHTS = (0.28, 0.14, 0.16, 0.14, 0.16, 0.12)
GAUGES = ("1435", "1520", "dual")
# Share of yards standing (nearly) empty: bare track fields on ballast are what a model must not
# take for cars (the real Muttenz picture's false railcars were mostly empty track pairs).
EMPTY_YARD_SHARE = 0.15

# Share of scenes drawn from straight above (orthophotos, near-nadir passes); the others are seen
# OFF_NADIR_RANGE_DEG off nadir, as satellite archives mostly hold them (see models.synth.lean).
NADIR_SHARE = 0.4
OFF_NADIR_RANGE_DEG = (5.0, 30.0)

# Keys that change the scene's contents rather than its look; also accepted as overrides.
CONTENT_KEYS = frozenset({"electrified", "nodata", "curved", "occupancy", "n_tracks", "hide_objects"})


def _blur(rng: np.random.Generator) -> float:
    """Optical blur (Gaussian sigma in pixels): none, sharp, or soft."""
    if rng.random() < 0.2:
        return 0.0
    return float(rng.uniform(0.3, 0.8) if rng.random() < 0.75 else rng.uniform(0.8, 1.3))


def _sharpening(rng: np.random.Generator) -> tuple[float, float]:
    """Ground-processing sharpening (MTF compensation, an unsharp mask): (amount, radius in pixels).
    Many vendor products carry it; without it the engine's scenes had half the local contrast of the
    real Muttenz picture (mean gradient on the model grid 0.027 against 0.063)."""
    if rng.random() < 0.4:
        return 0.0, 0.0
    return float(rng.uniform(0.3, 1.5)), float(rng.uniform(0.7, 1.6))


def sample_conditions(rng: np.random.Generator, pixel_size_m: float | None = None, overrides: dict | None = None) -> dict:
    """Draw a scene's conditions. ``overrides`` replaces any drawn value; ``clean=True`` switches off
    every sensor effect (haze, blur, sharpening, noise, JPEG, pan-sharpening, colour balance)."""
    overrides = dict(overrides or {})
    clean = bool(overrides.pop("clean", False))
    lo, hi = PIXEL_SIZE_RANGE_M
    season = str(rng.choice(SEASONS, p=SEASON_WEIGHTS))
    cold = season in ("winter", "snow")
    # mostly a mid-morning pass of a sun-synchronous satellite in the northern hemisphere
    morning = rng.random() < 0.65
    azimuth = float(rng.normal(150.0, 35.0)) % 360.0 if morning else float(rng.uniform(0.0, 360.0))
    haze_draw = rng.random()
    haze = (
        float(rng.uniform(0.0, 0.08))
        if haze_draw < 0.6
        else float(rng.uniform(0.08, 0.3))
        if haze_draw < 0.9
        else float(rng.uniform(0.3, 0.55))
    )
    sharpen, sharpen_px = _sharpening(rng)
    conditions: dict = {
        "pixel_size_m": float(pixel_size_m) if pixel_size_m is not None else float(rng.uniform(lo, hi)),
        "season": season,
        "sun_elevation_deg": float(rng.uniform(12.0, 38.0) if cold else rng.uniform(18.0, 68.0)),
        "sun_azimuth_deg": azimuth,
        "haze": haze,
        # share of the light that shadows lose: clear sun mostly, sometimes thin cloud
        "shadow_depth": float(rng.uniform(0.5, 0.85) if rng.random() < 0.88 else rng.uniform(0.15, 0.35)),
        "haze_colour": [float(v) for v in rng.uniform([0.72, 0.75, 0.78], [0.9, 0.92, 0.97])],
        "blur_px": _blur(rng),
        "sharpen": sharpen,
        "sharpen_px": sharpen_px,
        "noise": float(rng.uniform(0.5, 5.0)),
        "jpeg_quality": None if rng.random() < 0.5 else int(rng.integers(40, 96)),
        "pansharpen_px": 0.0 if rng.random() < 0.5 else float(rng.uniform(0.6, 1.8)),
        "gains": [float(v) for v in rng.uniform(0.9, 1.1, size=3)],
        "gamma": float(rng.uniform(0.8, 1.25)),
        "contrast": float(rng.uniform(0.8, 1.2)),
        "brightness": float(rng.uniform(-0.06, 0.06)),
        "saturation": float(rng.uniform(0.55, 1.3)),
        "gauge": str(rng.choice(GAUGES, p=(0.5, 0.3, 0.2))),
        "electrified": bool(rng.random() < 0.5),
        "nodata": bool(rng.random() < 0.3),
        "curved": bool(rng.random() < 0.3),
        "occupancy": float(rng.uniform(0.15, 0.95) if rng.random() >= EMPTY_YARD_SHARE else rng.uniform(0.0, 0.15)),
        "n_tracks": None,
        "hide_objects": False,
        # Drawn last, so every draw above is as it was before the engine leaned (1.6.0).
        "off_nadir_deg": 0.0 if rng.random() < NADIR_SHARE else float(rng.uniform(*OFF_NADIR_RANGE_DEG)),
        "lean_azimuth_deg": float(rng.uniform(0.0, 360.0)),
    }
    if clean:
        conditions.update(
            haze=0.0, blur_px=0.0, sharpen=0.0, sharpen_px=0.0, noise=0.0, jpeg_quality=None, pansharpen_px=0.0,
            gains=[1.0, 1.0, 1.0], gamma=1.0, contrast=1.0, brightness=0.0, saturation=1.0,
        )  # fmt: skip
    unknown = set(overrides) - set(conditions)
    if unknown:
        raise TypeError(f"unknown scene override(s): {', '.join(sorted(unknown))}")
    conditions.update(overrides)
    if conditions["season"] not in SEASONS:
        raise ValueError(f"season must be one of {', '.join(SEASONS)}, got {conditions['season']!r}")
    if conditions["gauge"] not in GAUGES:
        raise ValueError(f"gauge must be one of {', '.join(GAUGES)}, got {conditions['gauge']!r}")
    if not 0.0 <= float(conditions["off_nadir_deg"]) <= 60.0:
        raise ValueError(f"off_nadir_deg must be in [0, 60], got {conditions['off_nadir_deg']}")
    if not 0.0 <= float(conditions["haze"]) < 1.0:
        raise ValueError(f"haze must be in [0, 1), got {conditions['haze']}")
    return conditions
