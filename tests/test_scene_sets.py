"""What `railsight eval` and `railsight floors` share: scenes detected ahead of the caller, in order."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.commands.scene_sets import detecting_ahead

IMAGES = [Path(f"scene_{i}.tif") for i in range(5)]


class Recorder:
    """A stand-in for the pipeline: records which scenes ran and how many ran at once."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.started: list[Path] = []
        self.running = self.most = 0
        self.events: set[int] = set()
        self.stopped: list[Path] = []
        self.lock = threading.Lock()

    def __call__(self, image: Path, cancel: threading.Event) -> dict:
        with self.lock:
            self.started.append(image)
            self.running += 1
            self.most = max(self.most, self.running)
            self.events.add(id(cancel))
        try:
            if cancel.wait(self.seconds):
                with self.lock:
                    self.stopped.append(image)
                raise RuntimeError(f"{image} stopped")
            return {"scene": image.name}
        finally:
            with self.lock:
                self.running -= 1


def test_scenes_come_back_in_order_with_two_running_at_once():
    record = Recorder()
    with detecting_ahead(IMAGES, record, ahead=2) as detect:
        got = [detect(image)["scene"] for image in IMAGES]
    assert got == [image.name for image in IMAGES]
    assert record.most == 2 and sorted(record.started) == sorted(IMAGES) and len(record.events) == 1


def test_one_ahead_runs_them_one_at_a_time():
    record = Recorder(seconds=0.01)
    with detecting_ahead(IMAGES, record, ahead=1) as detect:
        for image in IMAGES:
            detect(image)
    assert record.most == 1 and record.started == IMAGES


def test_asking_out_of_order_is_refused():
    with detecting_ahead(IMAGES[:2], Recorder(seconds=0.0)) as detect, pytest.raises(ValueError, match="out of order"):
        detect(IMAGES[1])


def test_leaving_early_stops_the_running_scenes_and_drops_the_rest():
    record = Recorder(seconds=30.0)  # would run for half a minute unless told to stop
    with pytest.raises(KeyboardInterrupt), detecting_ahead(IMAGES, record, ahead=2):
        while len(record.started) < 2:
            time.sleep(0.01)
        raise KeyboardInterrupt
    assert sorted(record.stopped) == sorted(record.started)  # both running scenes were told to stop
    assert len(record.started) == 2  # the other three never started
