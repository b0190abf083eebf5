"""``simulation.json`` beside a simulated release: the truth of every scene (the scene model is the feeds format's)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ..feeds_format import FORMAT_VERSION, SceneTruth

__all__ = ["SimulationDocument"]


class SimulationDocument(BaseModel):
    """``ROOT/simulation.json`` beside a simulated release: the truth of every scene and the settings used."""

    model_config = ConfigDict(extra="forbid")

    version: int = FORMAT_VERSION
    seed: int
    config: dict
    scenes: list[SceneTruth]
