"""``ExLPoseTopDown``: one sample per person instance, cropped as the ExLPose reference does."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..errors import UsageError
from ..keypoints import crowdpose14
from ..lighting import Lighting
from .detections import detection_instances, load_detections
from .lowlight import PIXEL_MEANS, LowLightScaling, Normalisation, bgr_to_input, input_affine, padding_value
from .records import InstanceEntry, build_index, needed_paths, record_sizes
from .official_crop import official_crop, undivided_input
from .open_source import open_source
from .targets import CPN_KERNELS, cpn_heatmaps, gaussian_heatmaps
from .transforms import (
    CROP_MODES,
    HEATMAP_CONVENTIONS,
    INPUT_SCALES,
    Augmentation,
    CropMode,
    CropSettings,
    HeatmapConvention,
    InputScale,
    apply_affine,
    crop_affine,
    crop_box,
    crop_roi,
    crop_to_heatmap,
    read_roi,
    sample_augmentation,
    train_crop_factor,
    warp_roi,
)

__all__ = ["ExLPoseTopDown"]

_DEFAULT_LL = LowLightScaling()
_DEFAULT_WL = Normalisation()


class ExLPoseTopDown(Dataset):
    """Person crops of ExLPose images with heatmap targets, for top-down pose estimation.

    One sample per person instance with at least one labelled joint (or per detection when ``detections`` is
    given). The crop is the box widened by 0.1 (x) / 0.15 (y) per side, enlarged x1.25 in training,
    aspect-fitted to ``input_size``; training draws a scale ``s`` (U(0.7, 1.35) by default) and, as the reference
    does, keeps a centred window covering ``min(1, s / 1.25)`` of the enlarged crop (so the training crop is
    ``min(s, 1.25)`` times the test crop), optionally a rotation and a horizontal flip (swapping the CrowdPose
    left/right joints). Outside the image crops are padded with the reference's pixel means (``pad``). With
    ``condition="pair"`` the LL and WL crops share one affine transform, so they are pixel-aligned and
    augmented identically.

    A sample is a dict:

    - ``ll`` / ``wl``: float32 ``(3, H, W)`` RGB crops (the condition's, both for ``"pair"``). LL is scaled so
      that each channel's whole-image mean is 0.4 (unclipped; see :mod:`.lowlight`), WL is mean/std-normalised.
    - ``heatmaps``: float32 ``(4, K, h, w)`` CPN targets (kernels 15/11/9/7, peak 255), or ``(K, h, w)`` plain
      Gaussians (peak 1) with ``target="gaussian"``.
    - ``target_weight``: float32 ``(K,)``, 1 for a labelled joint whose heatmap pixel is inside the heatmap
      (the RefineNet loss's mask).
    - ``visible_weight``: float32 ``(K,)``, ``target_weight`` restricted to joints marked visible (v = 2), the
      reference's GlobalNet mask (its ``valid > 1.1``).
    - ``keypoints``: float32 ``(K, 3)``, joint ``(x, y)`` in crop pixels and the annotation's visibility, in
      CrowdPose order after any flip.
    - ``meta``: ``image_id``, ``ann_id`` (-1 for a detection), ``file_name`` (as in the annotation file),
      ``ll_file``/``wl_file`` (image-root-relative, ``""`` when there is none), ``box`` float64 ``(4,)`` xywh,
      ``score``, ``affine`` float64 ``(2, 3)`` image -> crop pixels (invert it with
      :func:`~exlpose_data.datasets.transforms.invert_affine` to map predictions back), ``scale`` (the crop's
      size relative to the test-time crop: ``1.25 * min(1, s / 1.25)`` in training, 1 at test),
      ``rotation_deg``, ``flipped``, ``gain_db`` (well-lit gain, the split's key), ``ll_gain_db``,
      ``exposure_us``, ``ratio``, ``split`` (NaN / -1 / ``""`` when unknown, e.g. OC sets).

    With ``detections`` the samples have no ``heatmaps``, ``target_weight`` or ``keypoints``. Every value is a
    tensor, array, number or string, so ``torch.utils.data.default_collate`` batches samples as they are.

    Args:
        root: image root holding ``bright/`` and ``dark/`` (or the OC set's root), or a release root.
        ann_file: CrowdPose-style annotation file (official or ours; LL files may name the bright image).
        condition: ``"LL"``, ``"WL"`` or ``"pair"``.
        input_size: crop ``(height, width)``.
        heatmap_size: heatmap ``(height, width)``.
        train: enlarge boxes x1.25 and augment.
        augmentation: training augmentation (default: the reference's random scale only).
        widen: box widening per side (x, y).
        target: ``"cpn"`` multi-level targets or a plain ``"gaussian"``.
        kernels: CPN kernel sizes, one level each.
        sigma: Gaussian sigma in heatmap pixels for ``target="gaussian"``.
        peak: heatmap maximum (default 255 for CPN, 1 for Gaussian).
        heatmap_convention: ``"ours"`` (nearest pixel of ``x / 4``) or ``"reference"`` (the reference code's
            ``floor(u / 4)`` cell and ``cv2.GaussianBlur``'s reflected border); see
            :mod:`~exlpose_data.datasets.transforms`. Decode predictions with the same convention.
        ll_scaling: LL brightening, None for plain ``x / 255``.
        wl_normalisation: WL normalisation (default the reference's dataset statistics), None for plain
            ``x / 255``.
        pad: padding value outside the image, RGB on the 0-255 scale as the reference sees the image before
            cropping (after LL brightening); default the reference's pixel means, None for zeros.
        crop_mode: ``"ours"`` (the float box warped with one affine) or ``"official"`` (test only: the authors'
            integer rectangle cut and resized, :mod:`.official_crop`; ``meta["affine"]`` is then their joint map).
        input_scale: ``"ours"`` (crops divided by 255) or ``"official"`` (only when the crop's maximum on the
            0-255 scale exceeds 1, as the authors' ``im_to_torch``).
        detections: COCO detection results to crop instead of the ground-truth boxes.
        min_score: detections scoring below this are dropped.
        pack: a pack written by ``exlpose pack``; samples are bit-identical to those from the image files.
        cache_images: decoded images kept per worker on the file path.
        check_sizes: refuse images whose width/height differ from their annotation records (PNG/JPEG headers
            are read at construction, other formats are checked when decoded).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike,
        condition: Literal["LL", "WL", "pair"] = "LL",
        input_size: tuple[int, int] = (256, 192),
        heatmap_size: tuple[int, int] = (64, 48),
        train: bool = True,
        *,
        augmentation: Augmentation | None = None,
        widen: tuple[float, float] = (0.1, 0.15),
        target: Literal["cpn", "gaussian"] = "cpn",
        kernels: tuple[int, ...] = CPN_KERNELS,
        sigma: float = 2.0,
        peak: float | None = None,
        heatmap_convention: HeatmapConvention = "ours",
        ll_scaling: LowLightScaling | None = _DEFAULT_LL,
        wl_normalisation: Normalisation | None = _DEFAULT_WL,
        pad: tuple[float, float, float] | None = PIXEL_MEANS,
        crop_mode: CropMode = "ours",
        input_scale: InputScale = "ours",
        detections: str | os.PathLike | None = None,
        min_score: float = 0.0,
        pack: str | os.PathLike | None = None,
        cache_images: int = 4,
        check_sizes: bool = True,
    ) -> None:
        if target not in ("cpn", "gaussian"):
            raise UsageError(f"target must be 'cpn' or 'gaussian', got {target!r}")
        if any(k <= 0 or k % 2 == 0 for k in kernels) or sigma <= 0:
            raise UsageError(f"kernels must be positive odd sizes and sigma positive, got kernels={kernels} sigma={sigma}")
        if heatmap_convention not in HEATMAP_CONVENTIONS:
            raise UsageError(f"heatmap_convention must be one of {', '.join(HEATMAP_CONVENTIONS)}, got {heatmap_convention!r}")
        if crop_mode not in CROP_MODES or input_scale not in INPUT_SCALES:
            raise UsageError(f"crop_mode and input_scale must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}, {input_scale!r}")
        if crop_mode == "official" and train:
            raise UsageError("crop_mode 'official' is the authors' test crop; training crops are cut with crop_mode 'ours'")
        if pad is not None and len(tuple(pad)) != 3:
            raise UsageError(f"pad must be three values (RGB, 0-255 scale) or None, got {pad!r}")
        self.condition = condition
        self.conditions = ("LL", "WL") if condition == "pair" else (condition,)
        self.crop = CropSettings(input_size=tuple(input_size), widen=tuple(widen))  # type: ignore[arg-type]
        self.heatmap_size = tuple(heatmap_size)
        self.train = train
        self.augmentation = (augmentation or Augmentation()) if train else None
        self.target = target
        self.kernels = tuple(kernels)
        self.sigma = sigma
        self.peak = peak if peak is not None else (255.0 if target == "cpn" else 1.0)
        self.heatmap_convention = heatmap_convention
        self.ll_scaling = ll_scaling
        self.wl_normalisation = wl_normalisation
        self.pad = None if pad is None else tuple(float(v) for v in pad)
        self.crop_mode = crop_mode
        self.input_scale = input_scale
        self.with_targets = detections is None
        self.index = build_index(root, ann_file, condition)
        per_image = self.index.instances if detections is None else detection_instances(self.index, load_detections(detections, min_score=min_score), str(detections))
        self.samples: list[InstanceEntry] = [inst for insts in per_image for inst in insts]
        self.source = open_source(
            self.index.image_root,
            needed_paths(self.index, condition),
            pack=pack,
            cache_images=cache_images,
            sizes=record_sizes(self.index, condition) if check_sizes else None,
            records=str(ann_file),
        )
        self.flip_index = crowdpose14().flip_index()
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int | None] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int, *, seed: int = 0, rank: int = 0) -> None:
        """Seed this process's augmentation stream from ``(seed, epoch, rank)`` (for ``num_workers=0``).

        Without it the in-process stream is seeded once from torch and runs on across epochs, so a run resumed
        at epoch ``e`` would redraw epoch 0's augmentation. Calling this at the start of every epoch makes each
        epoch's draws depend on nothing else, as ``DataLoader`` workers' do when the loader's generator is seeded
        from the same triple. Workers ignore it: each seeds its own stream from torch's per-worker seed.
        """
        if epoch < 0 or rank < 0:
            raise UsageError(f"epoch and rank must be non-negative, got epoch={epoch} rank={rank}")
        self._rng = np.random.default_rng((seed % 2**64, epoch, rank))
        self._rng_owner = (os.getpid(), None)

    def _generator(self) -> np.random.Generator:
        # Each process (and each DataLoader worker) draws from its own stream seeded by torch: workers get
        # torch's per-worker seed, which changes every epoch, so augmentation neither repeats across workers
        # nor across epochs, and torch.manual_seed makes a run reproducible. In-process draws follow set_epoch
        # when it was called (a forked worker's pid differs, so it never inherits that stream).
        info = get_worker_info()
        owner = (os.getpid(), info.id if info is not None else None)
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng(torch.initial_seed())
            self._rng_owner = owner
        return self._rng

    def __getitem__(self, i: int) -> dict[str, Any]:
        inst = self.samples[i]
        img = self.index.images[inst.image]
        center, size = crop_box(inst.bbox, self.crop, train=self.train)
        draw, rotation, flip = sample_augmentation(self._generator(), self.augmentation) if self.augmentation else (1.0, 0.0, False)
        factor = train_crop_factor(draw, self.crop.train_enlarge) if self.augmentation and self.augmentation.scale_range else 1.0
        scale = factor * (self.crop.train_enlarge if self.train else 1.0)
        input_size = self.crop.input_size
        affine = crop_affine(center, size * factor, input_size, rotation_deg=rotation, flip=flip)
        sample: dict[str, Any] = {}
        for cond in self.conditions:
            pixels, hw, means = self.source.get(img.path(cond))  # type: ignore[arg-type]
            if self.crop_mode == "official":
                affine, crop = official_crop(pixels, hw, means, inst.bbox, cond, input_size=input_size, widen=self.crop.widen, ll_scaling=self.ll_scaling,
                                             wl_normalisation=self.wl_normalisation, pad_rgb_255=self.pad, divide=self.input_scale)
            else:
                roi = crop_roi(affine, input_size, hw)
                gain, offset = input_affine(cond, means, self.ll_scaling, self.wl_normalisation)
                border = padding_value(cond, self.pad, gain, offset)
                raw = warp_roi(read_roi(pixels, roi), roi, affine, input_size, border)
                crop = bgr_to_input(raw, gain, offset)
                if self.input_scale == "official":
                    crop = undivided_input(crop, raw, gain * 255.0 if cond == "LL" else np.ones(3), offset)
            sample[Lighting(cond).key] = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        if self.with_targets:
            kp = inst.keypoints[self.flip_index] if flip else inst.keypoints
            xy = apply_affine(kp[:, :2], affine)
            hm_xy = crop_to_heatmap(xy, input_size, self.heatmap_size, self.heatmap_convention)
            labelled = kp[:, 2] > 0
            if self.target == "cpn":
                border = "reflect101" if self.heatmap_convention == "reference" else "zero"
                heatmaps, weight = cpn_heatmaps(hm_xy, labelled, self.heatmap_size, kernels=self.kernels, peak=self.peak, border=border)
            else:
                heatmaps, weight = gaussian_heatmaps(hm_xy, labelled, self.heatmap_size, sigma=self.sigma, peak=self.peak)
            sample["heatmaps"] = torch.from_numpy(heatmaps)
            sample["target_weight"] = torch.from_numpy(weight)
            sample["visible_weight"] = torch.from_numpy(weight * (kp[:, 2] > 1).astype(np.float32))
            sample["keypoints"] = torch.from_numpy(np.column_stack([xy, kp[:, 2]]).astype(np.float32))
        sample["meta"] = {
            "image_id": img.image_id,
            "ann_id": inst.ann_id,
            "file_name": img.file_name,
            "ll_file": img.ll_path or "",
            "wl_file": img.wl_path or "",
            "box": np.asarray(inst.bbox, dtype=np.float64),
            "score": float(inst.score),
            "affine": affine,
            "scale": scale,
            "rotation_deg": rotation,
            "flipped": flip,
            "gain_db": img.gain_db,
            "ll_gain_db": img.ll_gain_db,
            "exposure_us": img.exposure_us,
            "ratio": img.ratio,
            "split": img.split,
        }
        return sample

    def __getstate__(self) -> dict:
        # A worker seeds its own generator; it must not inherit the parent's stream.
        return {**self.__dict__, "_rng": None, "_rng_owner": None}
