"""The ExLPose reference method (CVPR 2023): CPN on a ResNet with LSBN and LUPI, its trainer and evaluation.

Public API: :class:`baselines.lsbn.LSBN2d`, :func:`baselines.lsbn.convert_lsbn`, :func:`baselines.lsbn.lighting`,
:func:`baselines.models.build_cpn`, :func:`baselines.losses.lupi_gram_loss`. Command lines: ``exlpose-train``
(:mod:`baselines.train`), ``exlpose-eval`` (:mod:`baselines.eval_cli`), ``exlpose predict``
(:mod:`baselines.predict`). See ``baselines/README.md`` for one command per experiment.
"""
