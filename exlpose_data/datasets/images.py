"""``ExLPoseImages``: whole images with their annotations, for detectors and bottom-up methods."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..keypoints import crowdpose14
from ..lighting import Lighting
from .lowlight import LowLightScaling, Normalisation, bgr_to_input, input_affine, value_scale
from .records import build_index, needed_paths, record_sizes
from .open_source import open_source

__all__ = ["ExLPoseImages", "collate_images"]

_DEFAULT_LL = LowLightScaling()
_DEFAULT_WL = Normalisation()


class ExLPoseImages(Dataset):
    """Whole ExLPose images and every person annotation of each.

    A sample is a dict: ``ll`` / ``wl`` float32 ``(3, H, W)`` RGB images (LL scaled to a per-channel mean of 0.4,
    WL normalised, as in :class:`~exlpose_data.datasets.topdown.ExLPoseTopDown`), ``boxes`` float32 ``(N, 4)``
    xywh, ``keypoints`` float32 ``(N, K, 3)`` in image pixels, ``ann_ids`` int64 ``(N,)`` and ``meta`` (the
    image fields of the top-down meta: ``image_id``, ``file_name``, ``ll_file``, ``wl_file``, ``gain_db``,
    ``ll_gain_db``, ``exposure_us``, ``ratio``, ``split``). Images differ in size and person count, so batch
    with :func:`collate_images`.

    Args:
        root: image root (or the OC set's root).
        ann_file: CrowdPose-style annotation file.
        condition: ``"LL"``, ``"WL"`` or ``"pair"``.
        transforms: called on each sample dict, returning the sample to use.
        ll_scaling: LL brightening, None for plain ``x / 255``.
        wl_normalisation: WL normalisation, None for plain ``x / 255``.
        pack: a pack written by ``exlpose pack``.
        check_sizes: refuse images whose width/height differ from their annotation records.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike,
        condition: Literal["LL", "WL", "pair"] = "LL",
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        *,
        ll_scaling: LowLightScaling | None = _DEFAULT_LL,
        wl_normalisation: Normalisation | None = _DEFAULT_WL,
        pack: str | os.PathLike | None = None,
        check_sizes: bool = True,
    ) -> None:
        self.conditions = ("LL", "WL") if condition == "pair" else (condition,)
        self.transforms = transforms
        self.ll_scaling = ll_scaling
        self.wl_normalisation = wl_normalisation
        # Detectors learn from every person box, labelled joints or not.
        self.index = build_index(root, ann_file, condition, skip_unlabelled=False)
        self.source = open_source(
            self.index.image_root,
            needed_paths(self.index, condition),
            pack=pack,
            cache_images=0,
            sizes=record_sizes(self.index, condition) if check_sizes else None,
            records=str(ann_file),
        )

    def __len__(self) -> int:
        return len(self.index.images)

    def _load_image(self, relpath: str, condition: str) -> torch.Tensor:
        pixels, _, means = self.source.get(relpath)
        gain, offset = input_affine(condition, means, self.ll_scaling, self.wl_normalisation)
        # The gains map 0-255 values; 16-bit pixels are brought to that scale within the same pass.
        image = bgr_to_input(np.asarray(pixels, dtype=np.float32), gain * value_scale(pixels.dtype), offset)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def _load_target(self, i: int) -> dict[str, torch.Tensor]:
        insts = self.index.instances[i]
        k = crowdpose14().num_keypoints
        return {
            "boxes": torch.tensor(np.array([inst.bbox for inst in insts], dtype=np.float32).reshape(-1, 4)),
            "keypoints": torch.tensor(np.array([inst.keypoints for inst in insts], dtype=np.float32).reshape(len(insts), k, 3)),
            "ann_ids": torch.tensor([inst.ann_id for inst in insts], dtype=torch.int64),
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self.index.images[i]
        sample: dict[str, Any] = {Lighting(cond).key: self._load_image(img.path(cond), cond) for cond in self.conditions}  # type: ignore[arg-type]
        sample.update(self._load_target(i))
        sample["meta"] = {
            "image_id": img.image_id,
            "file_name": img.file_name,
            "ll_file": img.ll_path or "",
            "wl_file": img.wl_path or "",
            "gain_db": img.gain_db,
            "ll_gain_db": img.ll_gain_db,
            "exposure_us": img.exposure_us,
            "ratio": img.ratio,
            "split": img.split,
        }
        return self.transforms(sample) if self.transforms is not None else sample


def collate_images(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batch whole-image samples as a list (sizes and person counts differ)."""
    return list(batch)
