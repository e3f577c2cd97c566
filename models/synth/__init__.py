"""The synthetic rail-yard data engine: georeferenced scenes with exact labels.

``render_scene(seed)`` builds a yard in local metres (tracks, trains, cargo, distractors), paints it
at a drawn pixel size under drawn conditions (season, sun, haze, sensor), and places it in a CRS.
``rasterize_labels`` burns its labels on any grid; ``write_scene`` writes the GeoTIFFs and the
truth GeoJSON. See ``railsight synth`` for the command line.
"""

from models.synth.io import scene_seed, truth_geojson, write_scene
from models.synth.labels import core_polygon, rasterize_labels
from models.synth.scene import ENGINE_VERSION, SyntheticScene, render_scene

__all__ = [
    "ENGINE_VERSION",
    "SyntheticScene",
    "core_polygon",
    "rasterize_labels",
    "render_scene",
    "scene_seed",
    "truth_geojson",
    "write_scene",
]
