"""Speed of ``exlpose simulate release``: pairs per second on one core and on all cores; prints ONE JSON line.

Target: >= 5 pairs/s at 1920x1200 with all cores of a 2-core machine. The baseline, measured in the same run,
is the floor any release writer pays per pair: develop two raw frames through the ISP and encode and write two
PNGs. ``seconds_per_pair`` says where the simulator's time goes (one core, one scene).

    python benchmarks/bench_simulate.py                       # 1920x1200, 4 scenes x 2 frames x 5 steps
    python benchmarks/bench_simulate.py --width 960 --height 600 --scenes 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from exlpose_data.atomic import write_image_atomic
from exlpose_data.isp import raw_to_rgb
from exlpose_data.simulate.camera import capture_raw
from exlpose_data.simulate.config import SimulationConfig
from exlpose_data.simulate.pipeline import SceneSimulator
from exlpose_data.simulate.release import simulate_release
from exlpose_data.simulate.runner import default_workers

TARGET_PAIRS_PER_S = 5.0


def _release_rate(config: SimulationConfig, scenes: int, workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = simulate_release(config, Path(tmp) / "sim", scenes=scenes, seed=1, workers=workers, test_fraction=0.0)
        return summary.pairs / (time.perf_counter() - start), summary.pairs


def _breakdown(config: SimulationConfig) -> tuple[dict[str, float], float]:
    """Seconds per pair of each stage of one scene (one core), and the develop-and-write baseline in pairs/s."""
    cv2.setNumThreads(1)
    times = dict.fromkeys(("scene_setup", "render", "sensor_noise", "develop_align", "png_write"), 0.0)
    start = time.perf_counter()
    sim = SceneSimulator(config, 1, 0)
    times["scene_setup"] = time.perf_counter() - start
    pairs = 0
    baseline_raws = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t = time.perf_counter()
        frames = sim.frames()
        while True:
            try:
                record, captures = next(frames)  # renders the frame and records every step's raw pair
            except StopIteration:
                break
            times["render"] += time.perf_counter() - t
            for cap in captures:
                t = time.perf_counter()
                ll, wl = sim.develop_pair(cap)
                times["develop_align"] += time.perf_counter() - t
                t = time.perf_counter()
                write_image_atomic(out / f"{pairs}_ll.png", ll, rgb=True, fast=True)
                write_image_atomic(out / f"{pairs}_wl.png", wl, rgb=True, fast=True)
                times["png_write"] += time.perf_counter() - t
                pairs += 1
                baseline_raws = (cap.raw_ll, cap.raw_wl)
            t = time.perf_counter()
        # Split the frame loop's time between rendering and the two cameras by timing the cameras alone once.
        cam = sim.camera_rgb(sim.render(0)[0])
        t = time.perf_counter()
        signal = (sim.sensor_image(cam, "ll"), sim.sensor_image(cam, "wl"))
        for step, (ll_e, wl_e) in zip(sim.protocol.ladder, sim.electrons):
            capture_raw(signal[0] * np.float32(ll_e), step.ll_gain_db, config.sensor, np.random.default_rng(0))
            capture_raw(signal[1] * np.float32(wl_e), step.wl_gain_db, config.sensor, np.random.default_rng(1))
        sensor_per_frame = time.perf_counter() - t
        times["sensor_noise"] = sensor_per_frame * len(sim.frame_numbers)
        times["render"] -= times["sensor_noise"]
        t = time.perf_counter()
        isp = config.isp_params()
        for i in range(pairs):
            write_image_atomic(out / f"b{i}_ll.png", raw_to_rgb(baseline_raws[0], isp), rgb=True, fast=True)
            write_image_atomic(out / f"b{i}_wl.png", raw_to_rgb(baseline_raws[1], isp), rgb=True, fast=True)
        baseline_rate = pairs / (time.perf_counter() - t)
    return {k: round(v / pairs, 4) for k, v in times.items()}, baseline_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1200)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=2)
    args = ap.parse_args()
    config = SimulationConfig(width=args.width, height=args.height, frames_per_scene=args.frames)
    load_before = os.getloadavg()[0]  # other processes on the machine slow the all-cores number down
    stages, baseline = _breakdown(config)
    one, pairs = _release_rate(config, args.scenes, 1)
    workers = default_workers()
    many, _ = _release_rate(config, args.scenes, workers)
    print(json.dumps({
        "bench": "simulate", "width": args.width, "height": args.height, "pairs": pairs, "workers": workers,
        "pairs_per_s_one_core": round(one, 3), "pairs_per_s_all_cores": round(many, 3),
        "parallel_speedup": round(many / one, 3),
        "baseline_develop_and_write_pairs_per_s": round(baseline, 3),
        "ratio_one_core_vs_baseline": round(one / baseline, 3),
        "target_pairs_per_s": TARGET_PAIRS_PER_S, "meets_target": many >= TARGET_PAIRS_PER_S,
        "load_average_at_start": round(load_before, 2),
        "seconds_per_pair": stages,
    }))


if __name__ == "__main__":
    main()
