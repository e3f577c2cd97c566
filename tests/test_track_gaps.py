"""Bridging gaps in track centre lines (kernels.track_gaps)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from shapely.geometry import LineString

from kernels.track_gaps import BridgeRules, bridge_gaps

RULES = BridgeRules(max_gap=100.0, tangent=12.0, end_skip=0.0, lateral=0.0, max_shift=4.0, max_bend_deg=8.0)


def _arc(radius: float, start_deg: float, end_deg: float) -> LineString:
    t = np.radians(np.linspace(start_deg, end_deg, 40))
    return LineString(np.column_stack([radius * np.cos(t), radius * np.sin(t)]))


def test_a_straight_gap_is_bridged_into_one_line():
    lines = [LineString([(0, 0), (50, 0)]), LineString([(90, 0.5), (200, 1)])]
    joined, line_of, bridged = bridge_gaps(np.array(lines, dtype=object), RULES)
    assert len(joined) == 1 and line_of.tolist() == [0, 0]
    assert joined[0].length == pytest.approx(50 + 40 + lines[1].length, abs=0.01)
    assert bridged[0] == pytest.approx(40.0, abs=0.01)
    assert joined[0].coords[0] in ((0, 0), (200, 1))  # the ends are the outer ends, untouched


def test_a_gap_on_a_gentle_curve_is_bridged():
    # A 1,000 px radius: a gap of 60 px turns the track by under 4 degrees.
    first, second = _arc(1000, 0, 10), _arc(1000, 13.5, 25)
    joined, _, bridged = bridge_gaps(np.array([first, second], dtype=object), RULES)
    gap = np.hypot(*np.subtract(second.coords[0], first.coords[-1]))
    assert len(joined) == 1 and bridged[0] == pytest.approx(gap)


def test_no_jump_across_to_the_neighbouring_track():
    """One track stops, and the next one over (9 px to the side) starts further on: the straight
    between the ends turns one way off the first and the other way onto the second, an S."""
    lines = [LineString([(0, 0), (100, 0)]), LineString([(160, 9), (300, 9)])]
    joined, _, bridged = bridge_gaps(np.array(lines, dtype=object), RULES)
    assert len(joined) == 2 and not bridged.any()


def test_no_long_jump_across_that_bends_too_little_to_be_refused_by_the_bend():
    """Over a gap of 220 px the S onto a track 9 px to the side bends by 4.7 degrees, under a 5
    degree bend limit: the 9 px sideways step is what refuses it. The same gap straight on is bridged."""
    rules = replace(RULES, max_gap=300.0, max_bend_deg=5.0)
    first = LineString([(0, 0), (100, 0)])
    beside, ahead = LineString([(320, 9), (450, 9)]), LineString([(320, 1), (450, 1)])
    for shift, other, bridged_lines in ((4.0, beside, 2), (4.0, ahead, 1), (10.0, beside, 1)):
        joined, _, _ = bridge_gaps(np.array([first, other], dtype=object), replace(rules, max_shift=shift))
        assert len(joined) == bridged_lines, (shift, other)


def test_a_short_gap_to_the_side_is_bridged_within_the_lateral_reach_only():
    """Ends 4 px apart and 2 px to the side: the straight between them turns by 27 degrees, but
    moves only 2 px sideways. The same gap onto a line 9 px aside (the next track) is not bridged."""
    first = LineString([(0, 0), (100, 0)])
    for lateral, other, expected in ((3.0, (2, 2), 1), (0.0, (2, 2), 2), (3.0, (9, 9), 2)):
        second = LineString([(104, other[0]), (200, other[1])])
        joined, _, _ = bridge_gaps(np.array([first, second], dtype=object), replace(RULES, lateral=lateral))
        assert len(joined) == expected, (lateral, other)


def test_an_ends_direction_leaves_out_its_frayed_last_pixels():
    """The first line's last 4 px turn 45 degrees off it (a frayed skeleton end). Read from its very
    end, its direction misses the line ahead; read from 6 px back, it points along the track."""
    frayed = LineString([(0, 0), (100, 0), (103, 3)])
    ahead = LineString([(160, 0), (260, 0)])
    for end_skip, expected in ((0.0, 2), (6.0, 1)):
        joined, _, _ = bridge_gaps(np.array([frayed, ahead], dtype=object), replace(RULES, end_skip=end_skip))
        assert len(joined) == expected, end_skip


def test_a_second_pass_bridges_from_the_end_of_a_line_the_first_pass_made():
    """A short piece tilted 27 degrees just past a line's end: the first pass joins the two (the
    nearest pair). The piece alone points off the line ahead; the joined line, read 6 px back from
    its end, points along it, so the second pass bridges that gap too."""
    lines = [LineString([(0, 0), (100, 0)]), LineString([(103, 1), (107, 3)]), LineString([(170, 3), (270, 3)])]
    rules = replace(RULES, end_skip=6.0, lateral=3.0)
    one, _, _ = bridge_gaps(np.array(lines, dtype=object), replace(rules, passes=1))
    joined, line_of, bridged = bridge_gaps(np.array(lines, dtype=object), rules)
    assert len(one) == 2 and len(joined) == 1 and line_of.tolist() == [0, 0, 0]
    assert bridged[0] == pytest.approx(np.hypot(3, 1) + 63, abs=0.01)


def test_ends_too_far_apart_or_pointing_elsewhere_stay_apart():
    far = [LineString([(0, 0), (100, 0)]), LineString([(210, 0), (300, 0)])]
    crossing = [LineString([(0, 0), (100, 0)]), LineString([(130, -50), (130, 50)])]
    for lines in (far, crossing):
        joined, _, bridged = bridge_gaps(np.array(lines, dtype=object), RULES)
        assert len(joined) == 2 and not bridged.any()


def test_an_end_at_a_junction_is_not_bridged():
    """Two lines meet at (0, 0), so that end is not free, though a third line points straight at it."""
    lines = [LineString([(-100, 0), (0, 0)]), LineString([(0, 0), (0, 100)]), LineString([(40, 0), (140, 0)])]
    joined, _, bridged = bridge_gaps(np.array(lines, dtype=object), RULES)
    assert len(joined) == 3 and not bridged.any()


def test_each_end_is_bridged_once():
    """A track ends where two branches start a little further on: one of them is joined to it, the
    other stays a line of its own."""
    lines = [LineString([(-100, 0), (0, 0)]), LineString([(30, 2), (130, 8)]), LineString([(30, -2), (130, -8)])]
    joined, line_of, bridged = bridge_gaps(np.array(lines, dtype=object), RULES)
    assert len(joined) == 2 and len(set(line_of.tolist())) == 2
    assert line_of[0] in (line_of[1], line_of[2])
    assert sorted(bridged.round(2).tolist()) == [0.0, pytest.approx(30.07, abs=0.01)]


def test_nothing_to_bridge():
    one = np.array([LineString([(0, 0), (10, 0)])], dtype=object)
    joined, line_of, bridged = bridge_gaps(one, RULES)
    assert joined[0].equals(one[0]) and line_of.tolist() == [0] and bridged.tolist() == [0.0]
    empty = bridge_gaps(np.zeros(0, dtype=object), RULES)
    assert [len(a) for a in empty] == [0, 0, 0]


def test_a_bridge_does_not_cross_a_long_line():
    """A gap of 60 px with a line crossing it 45 degrees across: a line of 200 px blocks the bridge
    (at a block length of 100 px), one of 40 px does not, and with no block length either is crossed."""
    first, second = LineString([(0, 0), (100, 0)]), LineString([(160, 0), (300, 0)])
    for half, block, bridged_lines in ((70.7, 100.0, 3), (14.1, 100.0, 2), (70.7, np.inf, 2)):
        across = LineString([(130 - half, -half), (130 + half, half)])
        joined, _, bridged = bridge_gaps(np.array([first, second, across], dtype=object),
                                         replace(RULES, block_length=block))
        assert len(joined) == bridged_lines, (half, block)
        assert (bridged > 0).sum() == 3 - bridged_lines


def test_a_bridge_along_a_long_line_that_draws_the_gap_already_is_refused():
    """The gap between two pieces of a track is drawn by a third, longer line that wanders a pixel
    either side of it (the track found twice): a bridge would draw the gap a second time."""
    first, second = LineString([(0, 0), (100, 0)]), LineString([(160, 0), (300, 0)])
    x = np.arange(60.0, 221.0, 10.0)
    wander = LineString(np.column_stack([x, np.where(np.arange(x.size) % 2, 1.0, -1.0)]))
    joined, _, bridged = bridge_gaps(np.array([first, second, wander], dtype=object), replace(RULES, block_length=100.0))
    assert len(joined) == 3 and not bridged.any()
    joined, _, bridged = bridge_gaps(np.array([first, second, wander], dtype=object), RULES)
    assert len(joined) == 2 and bridged.max() == pytest.approx(60.0)


def test_an_end_whose_nearest_bridge_is_blocked_takes_the_next_one():
    """The nearest end ahead (a gap of 60 px) lies past a long line that crosses the way there; the
    next one (75 px, a little to the side, the long line ends short of its way) is bridged instead."""
    first = LineString([(0, 0), (100, 0)])
    nearest = LineString([(160, 0), (300, 0)])
    next_one = LineString([(175, 2.5), (300, 6.67)])
    blocking = LineString([(120, -60), (135, 0.6)])
    lines = np.array([first, nearest, next_one, blocking], dtype=object)
    joined, line_of, bridged = bridge_gaps(lines, replace(RULES, block_length=50.0))
    assert line_of[0] == line_of[2] and len(set(line_of.tolist())) == 3
    assert bridged[line_of[0]] == pytest.approx(np.hypot(75, 2.5), abs=0.01)
    joined, line_of, _ = bridge_gaps(lines, RULES)
    assert line_of[0] == line_of[1]
