"""exlpose-data: build and use paired low-light / well-lit human-pose datasets (after ExLPose, CVPR 2023).

The core package: domain model, release I/O, splits, statistics, simulator, alignment and torch datasets.
It never imports ``rig``, ``annotation`` or ``baselines``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
