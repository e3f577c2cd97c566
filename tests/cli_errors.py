"""Shared by the tests of commands that read scene sets: a user error seen the way a user sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import scenes


def one_error_line(argv: list[str], capsys) -> str:
    """`railsight ARGV` in this process must exit 2 with exactly one line on stderr; that line."""
    from service.cli import main

    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def scene_with_bad_truth(folder: Path, truth_text: str) -> Path:
    """A folder holding one small scene whose truth file holds ``truth_text`` (not GeoJSON)."""
    folder.mkdir()
    scenes.write(folder / "a.tif", scenes.blank(64, 64))
    (folder / "a.geojson").write_text(truth_text)
    return folder
