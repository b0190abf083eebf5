"""A low-light person detector for the multi-person setting (ExLPose Table 6): CenterNet-style centre heatmap,
box size and centre offset on the pose network's ResNet backbone, with the same variants (LSBN in the backbone,
LUPI between the low-light student and the well-lit teacher of each pair).

Modules: :mod:`.config` (settings), :mod:`.model` (the network), :mod:`.losses`, :mod:`.decode` (peaks to boxes),
:mod:`.train` (on the shared machinery of :mod:`baselines.loop`), :mod:`.evaluate` (COCO box AP per split),
:mod:`.api` (detections for images: ``exlpose-predict --detector``), :mod:`.export` (ONNX) and :mod:`.cli`
(``exlpose-detect train | eval | predict``). docs/baselines.md says why this design and not the paper's
Cascade R-CNN.
"""
