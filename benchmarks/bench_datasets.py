"""Paired top-down samples per second: reference-style loader vs our default path vs the packed path.

(a) reference: decodes both full PNGs for every person crop, scales/normalises the whole images, warps the crop
    from them (what the ExLPose reference loader does);
(b) default: ``ExLPoseTopDown(condition="pair")`` reading the PNGs (ROI warp, small per-worker image cache);
(c) packed: the same dataset reading an ``exlpose pack`` file.

All three run in the same process on the same generated data (1920x1200 pairs, several people per image),
with DataLoader workers 0 and 2, after one warm-up epoch. Memory per worker is the peak resident set (RSS,
which includes pages shared with the parent) and the peak private memory (what the worker itself adds).
Prints one JSON line; target: (c)/(a) >= 10.

    python benchmarks/bench_datasets.py [--pairs 6] [--people 5] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from exlpose_data.datasets import ExLPoseTopDown, write_pack
from exlpose_data.datasets.lowlight import bgr_to_input, input_affine, rgb_means, value_scale
from exlpose_data.datasets.records import needed_paths
from exlpose_data.datasets.sources import decode_image
from exlpose_data.datasets.targets import cpn_heatmaps
from exlpose_data.datasets.transforms import apply_affine, crop_affine, crop_box, crop_to_heatmap, sample_augmentation
from exlpose_data.keypoints import crowdpose14
from exlpose_data.layout import write_pairs
from exlpose_data.naming import ImageName

W, H = 1920, 1200
TARGET = 10.0


def make_data(root: Path, pairs: int, people: int, seed: int = 0) -> Path:
    """Write ``pairs`` textured 1920x1200 WL PNGs, dark LL twins with sensor-like noise, and an annotation file."""
    rng = np.random.default_rng(seed)
    k = crowdpose14().num_keypoints
    images, anns, pair_list = [], [], []
    for i in range(pairs):
        bright = ImageName(date="0212", site="bench", video=1, ratio=800, frame=i, gain_db=22.56, exposure_us=625, condition="WL")
        dark = bright.twin()
        base = cv2.resize(rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
        wl = np.clip(base.astype(np.int16) + rng.normal(0, 6, (H, W, 3)), 0, 255).astype(np.uint8)
        ll = np.clip(wl / 45.0 + rng.normal(0, 1.2, (H, W, 3)), 0, 255).astype(np.uint8)
        for name, img in ((bright, wl), (dark, ll)):
            (root / name.relpath).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name.relpath), img)
        pair_list.append((bright.relpath, dark.relpath))
        images.append({"id": i + 1, "file_name": dark.relpath, "width": W, "height": H})
        for _ in range(people):
            w, h = rng.uniform(120, 300), rng.uniform(300, 700)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            kp = np.column_stack([x + rng.uniform(0, w, k), y + rng.uniform(0, h, k), np.full(k, 2.0)])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "keypoints": kp.ravel().tolist(), "bbox": [x, y, w, h], "num_keypoints": k, "iscrowd": 0})
    write_pairs(root / "brightPath2darkPath.txt", pair_list)
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [crowdpose14().coco_category()]}))
    return ann


class ReferenceLoader(ExLPoseTopDown):
    """The reference approach: decode both full PNGs per sample, scale the whole images, warp from them."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        inst = self.samples[i]
        img = self.index.images[inst.image]
        center, size = crop_box(inst.bbox, self.crop, train=self.train)
        scale, rotation, flip = sample_augmentation(self._generator(), self.augmentation) if self.augmentation else (1.0, 0.0, False)
        in_h, in_w = self.crop.input_size
        affine = crop_affine(center, size * scale, (in_h, in_w), rotation_deg=rotation, flip=flip)
        sample: dict[str, Any] = {}
        for cond in self.conditions:
            bgr = decode_image(self.index.image_root / img.path(cond))  # type: ignore[operator]
            gain, offset = input_affine(cond, rgb_means(bgr), self.ll_scaling, self.wl_normalisation)
            full = bgr_to_input(bgr.astype(np.float32), gain * value_scale(bgr.dtype), offset)
            crop = cv2.warpAffine(full, affine, (in_w, in_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            sample[cond.lower()] = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        kp = inst.keypoints[self.flip_index] if flip else inst.keypoints
        xy = apply_affine(kp[:, :2], affine)
        heatmaps, weight = cpn_heatmaps(crop_to_heatmap(xy, (in_h, in_w), self.heatmap_size), kp[:, 2] > 0, self.heatmap_size)
        sample.update(heatmaps=torch.from_numpy(heatmaps), target_weight=torch.from_numpy(weight))
        return sample


def _rss_mb() -> float:
    """Resident set of this process in MB (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _private_mb() -> float:
    """Private (unshared) memory of this process in MB, from /proc (Linux)."""
    private = 0.0
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("Private_Clean", "Private_Dirty"):
                private += int(rest.split()[0]) / 1024
    return private


class Measured(Dataset):
    """Wraps a dataset; every sample carries (worker id, RSS, private MB) of the process that made it."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner
        self.calls = 0

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.inner[i]
        info = get_worker_info()
        # Reading smaps costs ~3 ms, so private memory is sampled every 8th call; statm is cheap.
        self.calls += 1
        rss = _rss_mb()
        private = _private_mb() if self.calls % 8 == 1 else 0.0
        s["mem"] = torch.tensor([info.id if info is not None else -1, rss, private], dtype=torch.float64)
        # The reference-style loader makes no meta; leave it out everywhere so all three collate the same.
        s.pop("meta", None)
        return s


def run(ds: Dataset, workers: int, epochs: int) -> tuple[float, dict[str, float]]:
    """Samples per second over ``epochs`` timed epochs after a warm-up one, and peak memory per worker."""
    loader = DataLoader(
        Measured(ds), batch_size=4, shuffle=True, num_workers=workers, persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0)
    )
    peak_rss: dict[int, float] = {}
    peak_private: dict[int, float] = {}

    def epoch() -> int:
        n = 0
        for batch in loader:
            n += len(batch["ll"])
            for wid, rss, private in batch["mem"].tolist():
                peak_rss[int(wid)] = max(peak_rss.get(int(wid), 0.0), rss)
                peak_private[int(wid)] = max(peak_private.get(int(wid), 0.0), private)
        return n

    epoch()
    t0 = time.perf_counter()
    n = sum(epoch() for _ in range(epochs))
    rate = n / (time.perf_counter() - t0)
    return rate, {"rss_mb": round(max(peak_rss.values()), 1), "private_mb": round(max(peak_private.values()), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--people", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per configuration (after one warm-up epoch)")
    args = ap.parse_args(argv)
    # One intra-op thread, as in DataLoader workers: on a small shared machine extra threads only add noise.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as tmp:
        root = Path(tmp)
        ann = make_data(root, args.pairs, args.people)
        t0 = time.perf_counter()
        default = ExLPoseTopDown(root, ann, condition="pair")
        write_pack(root, needed_paths(default.index, "pair"), root / "pack.h5")
        pack_s = time.perf_counter() - t0
        packed = ExLPoseTopDown(root, ann, condition="pair", pack=root / "pack.h5")
        reference = ReferenceLoader(root, ann, condition="pair")
        identical = True
        for i in range(len(default)):
            torch.manual_seed(i)
            a = default[i]
            torch.manual_seed(i)
            b = packed[i]
            identical &= all(torch.equal(a[key], b[key]) for key in ("ll", "wl", "heatmaps", "target_weight", "keypoints"))
        rates: dict[str, float] = {}
        memory: dict[str, dict[str, float]] = {}
        for workers in (0, 2):
            for label, ds in (("reference", reference), ("default", default), ("packed", packed)):
                rate, mem = run(ds, workers, args.epochs)
                rates[f"{label}_w{workers}"] = round(rate, 1)
                memory[f"{label}_w{workers}"] = mem
    ratios = {f"{p}_vs_reference_w{w}": round(rates[f"{p}_w{w}"] / rates[f"reference_w{w}"], 2) for w in (0, 2) for p in ("packed", "default")}
    worst = min(ratios["packed_vs_reference_w0"], ratios["packed_vs_reference_w2"])
    print(
        json.dumps(
            {
                "benchmark": "datasets_topdown_pair",
                "image_size": [W, H],
                "pairs": args.pairs,
                "samples_per_epoch": args.pairs * args.people,
                "timed_epochs": args.epochs,
                "batch_size": 4,
                "cpu_count": os.cpu_count(),
                "samples_per_s": rates,
                "ratios": ratios,
                "memory_per_worker": memory,
                "pack_build_s": round(pack_s, 2),
                "packed_identical_to_default": bool(identical),
                "target": {"packed_vs_reference_min": TARGET, "met": bool(worst >= TARGET and identical)},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
