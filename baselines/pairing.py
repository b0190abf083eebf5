"""Table 3's pairing study: low-light and well-lit training samples drawn from unrelated images.

:class:`UnpairedPairs` yields, for every LL person crop, a WL person crop of another scene: never its own
twin, nor any image of its scene (the twin's exposure variants and neighbouring frames show the same people and
background). Each sample keeps its own targets (``heatmaps`` etc. for LL, ``heatmaps_wl`` etc. for WL), which
:func:`baselines.engine.compute_losses` uses per condition. The partner of LL crop ``i`` in epoch ``e`` is drawn
uniformly from the WL crops of the other scenes by a generator seeded with ``(seed, e, i)``, so a run repeats
and a resumed run draws what an unbroken one would.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from exlpose_data.errors import UsageError
from exlpose_data.naming import parse_name

__all__ = ["UnpairedPairs", "instance_scenes", "TARGET_KEYS"]

TARGET_KEYS = ("heatmaps", "target_weight", "visible_weight", "keypoints")


def instance_scenes(dataset: Any, condition: str) -> list[str]:
    """The scene id of each instance of an ``ExLPoseTopDown``, from its ``condition`` image's release name.

    Raises:
        UsageError: an image's name is not a release name (its scene is unknown).
    """
    scenes = []
    for inst in dataset.samples:
        img = dataset.index.images[inst.image]
        path = img.path(condition)
        try:
            scenes.append(parse_name(path).scene_id)
        except ValueError:
            raise UsageError(f"{img.file_name}: not a release file name, so its scene is unknown; unpaired sampling needs scenes") from None
    return scenes


class UnpairedPairs(Dataset):
    """LL crops of ``ll`` each with a WL crop of ``wl`` from another scene (see the module docstring).

    Args:
        ll: an ``ExLPoseTopDown`` with ``condition="LL"``.
        wl: an ``ExLPoseTopDown`` with ``condition="WL"``.
        seed: the partner draws' seed.

    Raises:
        UsageError: the WL crops come from one scene only (no partner is possible).
    """

    def __init__(self, ll: Any, wl: Any, seed: int = 0) -> None:
        self.ll, self.wl = ll, wl
        self.seed = seed
        self.epoch = 0
        self.conditions = ("LL", "WL")
        ll_scenes = instance_scenes(ll, "LL")
        wl_scenes = np.array(instance_scenes(wl, "WL"))
        if len(set(wl_scenes.tolist())) < 2:
            raise UsageError(f"unpaired sampling needs WL crops of at least two scenes, got {len(set(wl_scenes.tolist()))}")
        # WL crops ordered by scene, so each scene is one block [start, end) of `order` and a draw can skip it.
        self.order = np.argsort(wl_scenes, kind="stable")
        sorted_scenes = wl_scenes[self.order]
        blocks: dict[str, tuple[int, int]] = {}
        for pos, scene in enumerate(sorted_scenes.tolist()):
            start, _ = blocks.get(scene, (pos, pos))
            blocks[scene] = (start, pos + 1)
        self.blocks = [blocks.get(scene, (0, 0)) for scene in ll_scenes]

    def __len__(self) -> int:
        return len(self.ll)

    def set_epoch(self, epoch: int, *, seed: int = 0, rank: int = 0) -> None:
        """Select the epoch's partners and seed both datasets' augmentation (see ``ExLPoseTopDown.set_epoch``)."""
        self.epoch = epoch
        self.ll.set_epoch(epoch, seed=seed, rank=rank)
        self.wl.set_epoch(epoch, seed=seed + 1, rank=rank)

    def partner(self, i: int) -> int:
        """The index into ``wl`` of LL crop ``i``'s partner this epoch."""
        start, end = self.blocks[i]
        rng = np.random.default_rng((self.seed % 2**64, self.epoch, i))
        k = int(rng.integers(0, len(self.order) - (end - start)))
        return int(self.order[k if k < start else k + (end - start)])

    def __getitem__(self, i: int) -> dict[str, Any]:
        low = self.ll[i]
        high = self.wl[self.partner(i)]
        sample = {"ll": low["ll"], "wl": high["wl"], "meta": {**low["meta"], "wl_file": high["meta"]["wl_file"]}}
        for key in TARGET_KEYS:
            sample[key] = low[key]
            sample[f"{key}_wl"] = high[key]
        return sample

    @classmethod
    def from_annotation(cls, root: str | os.PathLike, ann_file: str | os.PathLike, *, seed: int = 0, pack: Any = None, **options: Any) -> "UnpairedPairs":
        """Both sides from one paired training file (its LL images and, as the WL side, their twins)."""
        from exlpose_data.datasets import ExLPoseTopDown

        ll = ExLPoseTopDown(root, ann_file, condition="LL", train=True, pack=pack, **options)
        wl = ExLPoseTopDown(root, ann_file, condition="WL", train=True, pack=pack, **options)
        return cls(ll, wl, seed=seed)
