"""The annotation layer: labels in from annotation tools, strict CrowdPose files for both images of a pair, review.

Builds on the core (:mod:`exlpose_data`) only; never imports ``rig`` or ``baselines``.
"""
