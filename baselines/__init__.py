"""The ExLPose reference method (CVPR 2023): CPN on a ResNet with LSBN and LUPI, its trainer and evaluation.

Public API: :class:`baselines.lsbn.LSBN2d`, :func:`baselines.lsbn.convert_lsbn`, :func:`baselines.lsbn.lighting`,
:func:`baselines.models.build_cpn`, :func:`baselines.losses.lupi_gram_loss`, :func:`baselines.train.run`,
:func:`baselines.engine.evaluate_split`, :func:`baselines.predict.predict`. Command lines, all in :mod:`baselines.cli`:
``exlpose-train``, ``exlpose-eval``, ``exlpose-predict`` (``exlpose predict``). See ``baselines/README.md`` for one
command per experiment.
"""
