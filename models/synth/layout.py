"""Yard geometry in metres: track fields, ladders, main lines, sidings, branch curves, platforms,
catenary masts and the ballast bed.

Everything is laid out first in *yard coordinates* ``(u, v)``: ``u`` along the tracks, ``v`` across
them, so parallel track fields, ladders and rows of masts are plain arithmetic. A :class:`YardFrame`
then maps yard coordinates to the scene's local metres (x east, y north): an optional bend into
concentric arcs (a curved yard keeps its track spacing), a rotation and a translation. Rigid things
(buildings, containers, cargo) are placed by their centre and take the local direction of ``u``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

TRACK_SPACING_M = (4.5, 5.5)
# Rail centre offsets from the track centre line (m); the centre line is midway between the outer rails.
RAIL_OFFSETS = {
    "1435": (-0.7535, 0.7535),
    "1520": (-0.7960, 0.7960),
    "dual3": (-0.7960, 0.7110, 0.7960),  # 1435 and 1520 sharing the left rail
    "dual4": (-0.7960, -0.5500, 0.9570, 0.7960),  # 1435 pair set off-centre inside the 1520 pair
}


@dataclass(frozen=True)
class YardFrame:
    """Yard coordinates -> local metres: bend (radius ``radius``, None for straight), rotate by
    ``theta`` (radians anticlockwise from east), translate to ``(ox, oy)``."""

    theta: float
    ox: float
    oy: float
    radius: float | None = None

    def warp(self, u, v):
        u = np.asarray(u, dtype=float)
        v = np.asarray(v, dtype=float)
        if self.radius is None:
            x, y = u, v
        else:
            r = self.radius
            a = u / r
            x = (r - v) * np.sin(a)
            y = r - (r - v) * np.cos(a)
        c, s = math.cos(self.theta), math.sin(self.theta)
        return self.ox + c * x - s * y, self.oy + s * x + c * y

    def angle(self, u: float) -> float:
        """Direction of +u at ``u`` (radians anticlockwise from east)."""
        return self.theta + (u / self.radius if self.radius else 0.0)

    def line(self, pts_uv, step: float = 4.0) -> LineString:
        """A polyline given in yard coordinates, densified every ``step`` m so bends stay smooth."""
        line = LineString(pts_uv)
        if self.radius is not None:
            line = shapely.segmentize(line, step)
        x, y = self.warp(*np.asarray(line.coords).T)
        return LineString(np.column_stack([x, y]))

    def area(self, u0: float, u1: float, v0: float, v1: float, step: float = 8.0) -> Polygon:
        ring = Polygon([(u0, v0), (u1, v0), (u1, v1), (u0, v1)])
        if self.radius is not None:
            ring = shapely.segmentize(ring, step)
        x, y = self.warp(*np.asarray(ring.exterior.coords).T)
        return Polygon(np.column_stack([x, y]))

    def rigid(self, u: float, v: float, rel_angle: float = 0.0) -> tuple[float, float, float]:
        """Centre (x, y) and direction for a rigid object at (u, v) turned ``rel_angle`` from +u."""
        x, y = self.warp(u, v)
        return float(x), float(y), self.angle(u) + rel_angle


@dataclass
class Track:
    line: LineString  # centre line, local metres
    gauge: str  # key of RAIL_OFFSETS
    role: str  # yard | main | ladder | siding | branch
    parkable: bool
    sleeper: str  # concrete | wood
    electrified: bool


@dataclass
class Layout:
    frame: YardFrame
    half_domain: float  # yard coordinates run over [-half_domain, half_domain]
    tracks: list[Track]
    ballast: object  # shapely geometry, local metres
    platforms: list[Polygon]
    paths: list[Polygon]
    masts: list[tuple[float, float, float]]  # x, y, height
    portals: list[tuple[LineString, float]]  # beam, height
    occupied_v: tuple[float, float]  # yard v range taken by tracks and their margins
    branch_side: float = 0.0  # side (+1/-1 in v) a branch line curves away to, 0 for none
    siding_zones: list[tuple[float, float, float, float]] = field(default_factory=list)  # u0, u1, v0, v1


def _track_gauges(rng: np.random.Generator, scene_gauge: str, n: int) -> list[str]:
    if scene_gauge != "dual":
        return [scene_gauge] * n
    pool = ("1435", "1520", "dual3", "dual4")
    return [str(g) for g in rng.choice(pool, size=n, p=(0.3, 0.3, 0.25, 0.15))]


def _ladder_ends(
    rng: np.random.Generator,
    v_tracks: np.ndarray,
    half: float,
    end: float,
    ladders: list,
    p_ladder: float,
    groups: list[np.ndarray],
    starts: np.ndarray | None = None,
    min_len: float = 120.0,
) -> np.ndarray:
    """Where each track of the field starts (``end`` -1) or stops (+1) in u. Tracks come in groups
    of 3-12; a group either runs off the domain or fans out of a ladder: a diagonal track at
    7-14 degrees from which each track of the group branches, its lead track running on. Stops
    keep every track at least ``min_len`` long after its ``starts``."""
    ends = np.full(len(v_tracks), end * half)
    base = float(rng.uniform(-0.9, 0.2)) * half * -end
    for group in groups:
        if group.size < 2 or rng.random() >= p_ladder:
            continue
        alpha = math.radians(rng.uniform(7.0, 14.0))
        lead = int(group[0] if rng.random() < 0.5 else group[-1])
        u_l = float(np.clip(base + rng.uniform(-80.0, 80.0), -half, half))
        offsets = np.abs(v_tracks[group] - v_tracks[lead]) / math.tan(alpha)
        if starts is not None:  # move the stop ladder out until every track keeps min_len
            deficit = float(np.max(starts[group] + min_len - (u_l - offsets)))
            u_l += max(0.0, deficit)
            if u_l > half:
                continue
        ends[group] = u_l - end * offsets
        ends[lead] = end * half
        far = int(group[np.argmax(offsets)])
        ladders.append([(u_l, float(v_tracks[lead])), (float(ends[far]), float(v_tracks[far]))])
    return ends


def build_layout(rng: np.random.Generator, extent_m: float, cond: dict, min_tracks: int = 0) -> Layout:
    """Lay out a yard covering a square scene ``extent_m`` metres across, centred on the origin."""
    offset = rng.uniform(-0.15, 0.15, size=2) * extent_m
    half = extent_m * math.sqrt(0.5) + 40.0 + float(np.hypot(*offset))
    # a fifth of yards run along the grid axes (staircase edges), the rest at any angle
    axis_aligned = rng.random() < 0.2
    theta = float(rng.choice([0.0, math.pi / 2])) if axis_aligned else float(rng.uniform(0.0, math.pi))
    radius = None
    if cond.get("curved"):
        radius = float(rng.uniform(max(350.0, 1.6 * half), max(2500.0, 2.0 * half))) * float(rng.choice([-1, 1]))
    frame = YardFrame(theta=theta, ox=float(offset[0]), oy=float(offset[1]), radius=radius)
    electrified = bool(cond.get("electrified"))
    # Many yards mix sleeper kinds track by track (Muttenz: wooden and concrete side by side);
    # ``sleeper`` is the yard's majority, for ladders and sidings.
    concrete_share = float(rng.choice([1.0, 0.0, rng.uniform(0.3, 0.9)], p=(0.45, 0.15, 0.4)))
    sleeper = "concrete" if concrete_share >= 0.5 else "wood"

    # --- the track field: spacings, wider gaps for mast rows and platforms
    max_tracks = int(np.clip(0.5 * extent_m / 5.0, 4, 44))
    n = cond.get("n_tracks") or int(rng.integers(3, max_tracks + 1))
    n = max(int(n), int(min_tracks), 1)
    base = rng.uniform(*TRACK_SPACING_M)
    mast_every = int(rng.integers(2, 5)) if electrified and rng.random() < 0.6 else 0
    platform_gap = int(rng.integers(1, n)) if n >= 3 and rng.random() < 0.25 else -1
    gaps, platform_widths = [], {}
    for k in range(1, n):
        g = float(np.clip(base + rng.normal(0.0, 0.08), *TRACK_SPACING_M))
        if k == platform_gap:
            w = float(rng.uniform(4.0, 9.0))
            platform_widths[k] = w
            g = w + 2 * 1.75
        elif mast_every and k % mast_every == 0:
            g = float(rng.uniform(6.0, 7.5))
        elif rng.random() < 0.06:
            g = float(rng.uniform(6.0, 9.0))  # service path between groups
        gaps.append(g)
    v_tracks = np.concatenate([[0.0], np.cumsum(gaps)]) if gaps else np.zeros(1)
    v_tracks = v_tracks - v_tracks.mean() + rng.uniform(-0.2, 0.2) * extent_m
    gauges = _track_gauges(rng, cond.get("gauge", "1435"), n + 8)

    # --- ends of the field: groups of tracks fanning out of ladders (switches), stubs, or off-scene
    tracks: list[Track] = []
    ladders: list[list[tuple[float, float]]] = []
    cuts = np.cumsum(rng.integers(3, 13, size=n))
    groups = [g for g in np.split(np.arange(n), cuts[cuts < n]) if g.size]
    u_start = _ladder_ends(rng, v_tracks, half, -1.0, ladders, 0.65, groups)
    end_kind = rng.choice(["ladder", "stubs", "open"], p=(0.45, 0.25, 0.3))
    if end_kind == "ladder":
        u_end = _ladder_ends(rng, v_tracks, half, 1.0, ladders, 1.0, groups, starts=u_start)
    elif end_kind == "stubs":
        u_end = np.maximum(rng.uniform(0.1, 1.0, size=n) * half, u_start + 120.0)
    else:
        u_end = np.full(n, half)
    spans = []  # (u0, u1, v) of each yard track, for masts and portals
    for k in range(n):
        u0, u1 = float(u_start[k]), float(max(u_end[k], u_start[k]))
        if u1 - u0 < 30.0:
            continue
        spans.append((u0, u1, float(v_tracks[k])))
        tracks.append(
            Track(
                frame.line([(u0, v_tracks[k]), (u1, v_tracks[k])]),
                gauges[k],
                "yard",
                True,
                "concrete" if rng.random() < concrete_share else "wood",
                electrified,
            )
        )
    for pts in ladders:
        tracks.append(Track(frame.line(pts), gauges[n], "ladder", False, sleeper, electrified))

    v_lo, v_hi = float(v_tracks.min()), float(v_tracks.max())
    siding_zones: list[tuple[float, float, float, float]] = []

    # --- main line(s) along one side, sometimes joined to the field by a crossover
    alpha = math.radians(rng.uniform(7.0, 14.0))
    main_side = float(rng.choice([-1.0, 1.0]))
    branch_side = 0.0
    if rng.random() < 0.75:
        gap = float(rng.uniform(6.0, 14.0))
        v_edge = v_lo if main_side < 0 else v_hi
        v_main = v_edge + main_side * gap
        n_main = int(rng.integers(1, 3))
        for j in range(n_main):
            vm = v_main + main_side * j * float(rng.uniform(4.0, 4.6))
            tracks.append(
                Track(frame.line([(-half, vm), (half, vm)]), gauges[n + 1 + j], "main", True, "concrete", electrified)
            )
            spans.append((-half, half, vm))
        if rng.random() < 0.5:
            uc = float(rng.uniform(-0.5, 0.3) * half)
            tracks.append(
                Track(
                    frame.line([(uc, v_main), (uc + gap / math.tan(alpha), v_edge)]),
                    gauges[n + 1],
                    "ladder",
                    False,
                    sleeper,
                    electrified,
                )
            )
        far_main = v_main + main_side * (n_main - 1) * 4.6
        v_lo, v_hi = (far_main, v_hi) if main_side < 0 else (v_lo, far_main)
        # a branch curving away from the main line
        if rng.random() < 0.3:
            r = float(rng.uniform(200.0, 700.0))
            sweep = math.radians(rng.uniform(12.0, 45.0))
            ub = float(rng.uniform(-0.6, 0.2) * half)
            phi = np.linspace(0.0, sweep, 24)
            pu = ub + r * np.sin(phi)
            pv = far_main + main_side * r * (1 - np.cos(phi))
            tail = 2.5 * half
            pu = np.append(pu, pu[-1] + tail * math.cos(sweep))
            pv = np.append(pv, pv[-1] + main_side * tail * math.sin(sweep))
            tracks.append(
                Track(frame.line(np.column_stack([pu, pv])), gauges[n + 3], "branch", True, "concrete", electrified)
            )
            branch_side = main_side

    # --- sidings on the other side, to a loading area
    side = -main_side
    if rng.random() < 0.6:
        v_edge = v_hi if side > 0 else v_lo
        dv = float(rng.uniform(8.0, 28.0))
        us = float(rng.uniform(-0.7, 0.3) * half)
        u_join = us + dv / math.tan(alpha)
        ue = min(u_join + float(rng.uniform(60.0, 320.0)), half)
        vs = v_edge + side * dv
        tracks.append(
            Track(frame.line([(us, v_edge), (u_join, vs), (ue, vs)]), gauges[n + 4], "siding", True, sleeper, False)
        )
        siding_zones.append((u_join, ue, vs, vs + side * 30.0))
        v_lo, v_hi = (v_lo, max(v_hi, vs)) if side > 0 else (min(v_lo, vs), v_hi)

    # --- platforms in platform gaps
    platforms = []
    for k, w in platform_widths.items():
        vc = (v_tracks[k - 1] + v_tracks[k]) / 2.0
        lo = max(u_start[k - 1], u_start[k], -half) + 10.0
        hi = min(u_end[k - 1], u_end[k], half) - 10.0
        if hi - lo > 40.0:
            length = float(rng.uniform(0.4, 1.0) * (hi - lo))
            u0 = float(rng.uniform(lo, hi - length))
            platforms.append(frame.area(u0, u0 + length, vc - w / 2, vc + w / 2))

    # --- catenary: masts beside the outermost tracks and in mast gaps, wherever tracks run at that u;
    # sometimes portals spanning the tracks instead
    masts: list[tuple[float, float, float]] = []
    portals: list[tuple[LineString, float]] = []
    if electrified and spans:
        step = float(rng.uniform(45.0, 65.0))
        phase = float(rng.uniform(0.0, step))
        mast_h = float(rng.uniform(8.0, 12.0))
        gap_rows = []
        if mast_every:
            gap_rows = [
                (float(v_tracks[k - 1]), float(v_tracks[k]))
                for k in range(1, n)
                if k % mast_every == 0 and k != platform_gap
            ]
        use_portals = rng.random() < 0.4
        span_arr = np.array(spans)
        for u in np.arange(-half + phase, half, step):
            here = span_arr[(span_arr[:, 0] <= u) & (span_arr[:, 1] >= u), 2]
            if here.size == 0:
                continue
            lo_v, hi_v = float(here.min()) - 3.3, float(here.max()) + 3.3
            if use_portals:
                x0, y0 = frame.warp(u, lo_v)
                x1, y1 = frame.warp(u, hi_v)
                masts += [(float(x0), float(y0), mast_h), (float(x1), float(y1), mast_h)]
                portals.append((LineString([(x0, y0), (x1, y1)]), mast_h - 0.5))
                continue
            rows_v = [lo_v, hi_v] + [(a + b) / 2 for a, b in gap_rows if a in here and b in here]
            for vr in rows_v:
                x, y = frame.warp(u, vr)
                masts.append((float(x), float(y), mast_h + float(rng.normal(0, 0.3))))

    # --- ballast bed and service paths
    hw = float(rng.uniform(2.1, 2.8))
    ballast = shapely.union_all([t.line.buffer(hw, cap_style="flat", quad_segs=2) for t in tracks])
    if rng.random() < 0.75:  # one continuous bed across the field, mast rows and switch areas too:
        close = float(rng.uniform(1.5, 5.0))  # gaps narrower than 3-10 m are ballasted
        ballast = ballast.buffer(close, quad_segs=2).buffer(-close, quad_segs=2)
    paths = []
    if rng.random() < 0.7:
        w = float(rng.uniform(2.5, 5.0))
        vp = v_hi + 2.6 + w / 2 if rng.random() < 0.5 else v_lo - 2.6 - w / 2
        paths.append(frame.area(-half, half, vp - w / 2, vp + w / 2))
    return Layout(
        frame=frame,
        half_domain=half,
        tracks=tracks,
        ballast=ballast,
        platforms=platforms,
        paths=paths,
        masts=masts,
        portals=portals,
        occupied_v=(v_lo - 6.0, v_hi + 6.0),
        siding_zones=siding_zones,
        branch_side=branch_side,
    )
