"""``ExLPoseDetection``: whole images with CenterNet targets of every person box, for a one-class detector."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UsageError
from ..lighting import Lighting
from ..schema import load_document
from .centre_targets import (
    RADIUS_RULES,
    DetectionAugmentation,
    boxes_to_input,
    centre_targets,
    letterbox_affine,
    prepare_image,
    sample_detection_augmentation,
    warp_image,
)
from .lowlight import PIXEL_MEANS, LowLightScaling, Normalisation
from .open_source import open_source
from .records import InstanceEntry, build_index, needed_paths, record_sizes
from .topdown import ExLPoseTopDown

__all__ = ["ExLPoseDetection", "DetectionAugmentation", "prepare_image"]

_DEFAULT_LL = LowLightScaling()
_DEFAULT_WL = Normalisation()
_TARGET_KEYS = ("heatmap", "size", "offset", "index", "mask", "boxes")


class ExLPoseDetection(Dataset):
    """Whole ExLPose images letterboxed to one input size, with CenterNet targets of every person box.

    Every person box of the annotation file counts, with or without labelled joints (a detector finds people,
    not skeletons); crowd regions (``iscrowd: 1``) are not one person and get no target (the official files
    hold none; COCO evaluation treats them as regions where detections are neither right nor wrong). The image
    is fitted inside ``input_size`` keeping its aspect and centred (:func:`.centre_targets.letterbox_affine`);
    training adds a random scale about the input centre, a shift and a horizontal flip
    (:class:`DetectionAugmentation`). With ``condition="pair"`` the LL and WL images share one transform, so
    their inputs are pixel-aligned and augmented identically. Input values are scaled exactly as the pose
    datasets' (:mod:`.lowlight`: the LL gain from the whole image's means, before letterboxing; WL
    normalisation; the reference's pixel means as padding), and the test-time input equals
    :func:`prepare_image` of the same decoded image.

    A sample is a dict:

    - ``ll`` / ``wl``: float32 ``(3, H, W)`` inputs (the condition's, both for ``"pair"``).
    - ``heatmap`` float32 ``(1, H/stride, W/stride)``, ``size`` float32 ``(M, 2)`` (box w, h in output cells),
      ``offset`` float32 ``(M, 2)``, ``index`` int64 ``(M,)``, ``mask`` float32 ``(M,)``, ``boxes`` float32
      ``(M, 4)`` (xyxy input pixels): :func:`.centre_targets.centre_targets`, ``M = max_objects``.
    - ``meta``: ``image_id``, ``file_name``, ``ll_file``, ``wl_file``, ``affine`` float64 ``(2, 3)`` image ->
      input pixels, ``image_hw`` int64 ``(2,)``, ``num_boxes`` (boxes with targets), ``dropped`` (boxes the
      augmentation moved out of the input or shrank below a pixel), ``flipped``, ``gain_db``, ``split``.

    Every value is a tensor, array, number or string, so ``torch.utils.data.default_collate`` batches samples.

    Args:
        root: image root holding ``bright/`` and ``dark/`` (or the OC set's root), or a release root.
        ann_file: CrowdPose-style annotation file.
        condition: ``"LL"``, ``"WL"`` or ``"pair"``.
        input_size: input ``(height, width)``, multiples of ``stride``.
        stride: output stride of the detector.
        train: augment.
        augmentation: training augmentation (default :class:`DetectionAugmentation`'s).
        max_objects: rows of the per-object targets; None takes the most people of any image of the file, so no
            box is ever cut. A smaller value that an image exceeds is refused.
        radius_rule: the centre Gaussians' radius, ``"exact"`` or ``"centernet"`` (CenterNet's published formula;
            :func:`~exlpose_data.datasets.centre_targets.gaussian_radius`).
        ll_scaling: LL brightening, None for plain ``x / 255``.
        wl_normalisation: WL normalisation, None for plain ``x / 255``.
        pad: padding outside the image, RGB on the 0-255 scale (default the reference's pixel means; None: zeros).
        pack: a pack written by ``exlpose pack``.
        check_sizes: refuse images whose width/height differ from their annotation records.

    Raises:
        UsageError: an input size that is not a multiple of the stride, or ``max_objects`` below an image's
            person count (naming the image).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike,
        condition: Literal["LL", "WL", "pair"] = "LL",
        input_size: tuple[int, int] = (512, 800),
        stride: int = 4,
        train: bool = True,
        *,
        augmentation: DetectionAugmentation | None = None,
        max_objects: int | None = None,
        radius_rule: str = "exact",
        ll_scaling: LowLightScaling | None = _DEFAULT_LL,
        wl_normalisation: Normalisation | None = _DEFAULT_WL,
        pad: tuple[float, float, float] | None = PIXEL_MEANS,
        pack: str | os.PathLike | None = None,
        check_sizes: bool = True,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.stride = int(stride)
        if self.stride <= 0 or min(self.input_size) <= 0 or self.input_size[0] % self.stride or self.input_size[1] % self.stride:
            raise UsageError(f"input_size {tuple(input_size)} (H, W) must be positive multiples of the stride {stride}")
        if pad is not None and len(tuple(pad)) != 3:
            raise UsageError(f"pad must be three values (RGB, 0-255 scale) or None, got {pad!r}")
        self.condition = condition
        self.conditions = ("LL", "WL") if condition == "pair" else (condition,)
        self.train = train
        if radius_rule not in RADIUS_RULES:
            raise UsageError(f"radius_rule must be one of {', '.join(RADIUS_RULES)}, got {radius_rule!r}")
        self.radius_rule = radius_rule
        self.augmentation = (augmentation or DetectionAugmentation()) if train else None
        self.ll_scaling = ll_scaling
        self.wl_normalisation = wl_normalisation
        self.pad = None if pad is None else tuple(float(v) for v in pad)
        self.index = build_index(root, ann_file, condition, skip_unlabelled=False)
        self.boxes = self._person_boxes(ann_file)
        most = max((len(b) for b in self.boxes), default=0)
        if max_objects is None:
            max_objects = max(most, 1)
        elif most > max_objects:
            worst = max(range(len(self.boxes)), key=lambda i: len(self.boxes[i]))
            img = self.index.images[worst]
            raise UsageError(
                f"{ann_file}: image {img.image_id} ({img.file_name!r}) holds {most} people, more than max_objects={max_objects}; "
                "raise max_objects or leave it out (None takes the file's most)"
            )
        self.max_objects = int(max_objects)
        self.source = open_source(
            self.index.image_root,
            needed_paths(self.index, condition),
            pack=pack,
            cache_images=0,
            sizes=record_sizes(self.index, condition) if check_sizes else None,
            records=str(ann_file),
        )
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int | None] | None = None

    def _person_boxes(self, ann_file: str | os.PathLike) -> list[np.ndarray]:
        """Per image, the ``(N, 4)`` xywh boxes of its people (crowd regions left out)."""
        crowd = {(a.image_id, a.id) for a in load_document(ann_file).annotations if a.iscrowd}
        out = []
        for img, insts in zip(self.index.images, self.index.instances):
            people: list[InstanceEntry] = [inst for inst in insts if (img.image_id, inst.ann_id) not in crowd]
            out.append(np.array([inst.bbox for inst in people], dtype=np.float64).reshape(-1, 4))
        return out

    def __len__(self) -> int:
        return len(self.index.images)

    # The augmentation stream is ExLPoseTopDown's, one scheme for every dataset: set_epoch seeds the in-process
    # stream from (seed, epoch, rank), each DataLoader worker seeds its own from torch's per-worker seed, and a
    # pickled copy (a worker) never inherits the parent's stream.
    set_epoch = ExLPoseTopDown.set_epoch
    _generator = ExLPoseTopDown._generator
    __getstate__ = ExLPoseTopDown.__getstate__

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self.index.images[i]
        loaded = {cond: self.source.get(img.path(cond)) for cond in self.conditions}  # type: ignore[arg-type]
        hw = loaded[self.conditions[0]][1]
        scale, shift, flip = sample_detection_augmentation(self._generator(), self.augmentation) if self.augmentation else (1.0, (0.0, 0.0), False)
        affine = letterbox_affine(hw, self.input_size, scale=scale, shift=shift, flip=flip)
        sample: dict[str, Any] = {}
        for cond, (pixels, cond_hw, means) in loaded.items():
            image = warp_image(pixels, cond_hw, means, cond, affine, self.input_size, ll_scaling=self.ll_scaling,
                               wl_normalisation=self.wl_normalisation, pad=self.pad)
            sample[Lighting(cond).key] = torch.from_numpy(image)
        targets = centre_targets(boxes_to_input(self.boxes[i], affine), self.input_size, stride=self.stride, max_objects=self.max_objects,
                                 radius_rule=self.radius_rule)
        for key in _TARGET_KEYS:
            sample[key] = torch.from_numpy(targets[key])
        sample["meta"] = {
            "image_id": img.image_id,
            "file_name": img.file_name,
            "ll_file": img.ll_path or "",
            "wl_file": img.wl_path or "",
            "affine": affine,
            "image_hw": np.asarray(hw, dtype=np.int64),
            "num_boxes": targets["count"],
            "dropped": targets["dropped"],
            "flipped": flip,
            "gain_db": img.gain_db,
            "split": img.split,
        }
        return sample
