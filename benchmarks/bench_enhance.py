"""LIME's latency per 1920x1200 low-light image (the paper's Table 2 reports 1.65 s for LIME + CPN); prints ONE
JSON line.

The image is synthetic but shaped like an ExLPose LL frame: a smooth textured scene scaled to a mean of
2.0 / 255 (the release's LL mean) with Poisson-like noise, as 8-bit. Each setting of ``--downscale`` is timed
``--runs`` times (median reported), including the 8-bit -> float -> 16-bit conversions the dataset path does.

Usage: ``python benchmarks/bench_enhance.py [--size 1920x1200] [--downscale 1,0.5,0.25] [--runs 1]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2
import numpy as np

from baselines.enhance import enhance_bgr
from baselines.enhance.lime import Lime, LimeSettings


def dark_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A BGR uint8 frame with the ExLPose LL mean intensity (2.0) and shot noise."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.uniform(0, 1, (height // 16, width // 16, 3)), (width, height), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(scene, 0, None) * (2.0 / max(scene.mean(), 1e-9))
    return np.clip(rng.poisson(scene * 4) / 4, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1200")
    parser.add_argument("--downscale", default="1,0.5,0.25")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    frame = dark_frame(width, height)
    seconds = {}
    for scale in (float(v) for v in args.downscale.split(",")):
        lime = Lime(LimeSettings(downscale=scale))
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            enhance_bgr(lime, frame)
            times.append(time.perf_counter() - start)
        seconds[str(scale)] = round(statistics.median(times), 2)
    print(json.dumps({"benchmark": "lime", "size": [width, height], "mean_intensity": round(float(frame.mean()), 2),
                      "seconds_per_image_by_downscale": seconds, "runs": args.runs}))


if __name__ == "__main__":
    main()
