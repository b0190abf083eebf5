"""Paired whole-image detector samples per second: a naive loader vs ``ExLPoseDetection`` from files vs from a pack.

(a) naive: decodes both full PNGs, scales/normalises the whole 1920x1200 images in float, then warps them into the
    input (what a straightforward letterbox loader does);
(b) files: ``ExLPoseDetection(condition="pair", train=True)`` reading the PNGs (warps the raw pixels, scales only
    the warped input);
(c) packed: the same dataset reading an ``exlpose pack`` file (no PNG decoding).

Same generated data (1920x1200 pairs, five people each), same process, DataLoader with 0 workers (one worker's
rate: multiply by the workers a training run gives it), input 512x800 (the detector's default), after a warm-up
epoch. Prints one JSON line with the rates and the ratios against (a). What it tells a GPU user: how many
pairs/s one worker makes, to compare with ``exlpose-detect train --benchmark-steps`` on the GPU.

    python benchmarks/bench_detector_data.py [--pairs 6] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from exlpose_data.datasets import ExLPoseDetection, write_pack
from exlpose_data.datasets.centre_targets import boxes_to_input, centre_targets, letterbox_affine, sample_detection_augmentation
from exlpose_data.datasets.lowlight import bgr_to_input, input_affine, rgb_means, value_scale
from exlpose_data.datasets.records import needed_paths
from exlpose_data.datasets.sources import decode_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_datasets import make_data  # noqa: E402  (the same 1920x1200 generated pairs as the top-down benchmark)

INPUT = (512, 800)


class NaiveLoader(ExLPoseDetection):
    """Decode both full images, scale them whole in float, warp the scaled images into the input."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self.index.images[i]
        scale, shift, flip = sample_detection_augmentation(self._generator(), self.augmentation)  # type: ignore[arg-type]
        hw = (img.height, img.width)
        affine = letterbox_affine(hw, self.input_size, scale=scale, shift=shift, flip=flip)
        sample: dict[str, Any] = {}
        for cond in self.conditions:
            bgr = decode_image(self.index.image_root / img.path(cond))  # type: ignore[operator]
            gain, offset = input_affine(cond, rgb_means(bgr), self.ll_scaling, self.wl_normalisation)
            full = bgr_to_input(bgr.astype(np.float32), gain * value_scale(bgr.dtype), offset)
            warped = cv2.warpAffine(full, affine, (self.input_size[1], self.input_size[0]), flags=cv2.INTER_LINEAR)
            sample[cond.lower()] = torch.from_numpy(np.ascontiguousarray(warped.transpose(2, 0, 1)))
        targets = centre_targets(boxes_to_input(self.boxes[i], affine), self.input_size, stride=self.stride, max_objects=self.max_objects)
        sample.update({k: torch.from_numpy(np.asarray(v)) for k, v in targets.items() if k in ("heatmap", "size", "offset", "index", "mask")})
        return sample


def rate(ds: Any, epochs: int) -> float:
    loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0),
                        collate_fn=lambda batch: len(batch))
    sum(loader)  # warm-up
    start = time.perf_counter()
    n = sum(sum(loader) for _ in range(epochs))
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per loader (after one warm-up epoch)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # one DataLoader worker's rate
    with tempfile.TemporaryDirectory(prefix="bench-detector-data-") as tmp:
        root = Path(tmp)
        ann = make_data(root, args.pairs, 5)
        files = ExLPoseDetection(root, ann, condition="pair", input_size=INPUT, train=True)
        write_pack(root, needed_paths(files.index, "pair"), root / "pack.h5")
        packed = ExLPoseDetection(root, ann, condition="pair", input_size=INPUT, train=True, pack=root / "pack.h5")
        naive = NaiveLoader(root, ann, condition="pair", input_size=INPUT, train=True)
        same = True
        for i in range(len(files)):
            files.set_epoch(0, seed=i)
            packed.set_epoch(0, seed=i)
            a, b = files[i], packed[i]
            same &= all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in ("ll", "wl", "heatmap", "size", "offset"))
        rates = {"naive": rate(naive, args.epochs), "files": rate(files, args.epochs), "packed": rate(packed, args.epochs)}
    print(json.dumps({
        "benchmark": "detector_data_pair", "image_size": [1920, 1200], "input_size": list(INPUT), "pairs": args.pairs, "workers": 0,
        "pairs_per_s": {k: round(v, 2) for k, v in rates.items()},
        "files_vs_naive": round(rates["files"] / rates["naive"], 2), "packed_vs_naive": round(rates["packed"] / rates["naive"], 2),
        "pack_identical_to_files": bool(same),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
