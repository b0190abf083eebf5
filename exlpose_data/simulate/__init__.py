"""A physically based simulator of paired low-light / well-lit captures with exact pose ground truth.

Scenes (backgrounds, articulated people) are rendered as linear radiance in the low-light camera's frame, seen by
two modelled cameras (beam-splitter geometry, 1% ND filter, shot/read/row noise, 12-bit Bayer raw) under the
ExLPose exposure protocol, and written either as a release dataset (``simulate_release``) or as raw feeds for the
pylon camera emulator (``simulate_feeds``). See docs/simulate.md.
"""

from ..feeds_format import FeedsDocument, SceneTruth
from .config import SimulationConfig, load_config
from .feeds import simulate_feeds
from .release import simulate_release
from .truth import SimulationDocument

__all__ = ["SimulationConfig", "load_config", "simulate_release", "simulate_feeds", "FeedsDocument", "SceneTruth", "SimulationDocument"]
