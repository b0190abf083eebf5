"""Unpack speed of packed 12-bit frames (BayerRG12p) as SessionReader reads them; prints ONE JSON line.

A 1920x1200 frame of random 12-bit samples is packed the way the camera sends it (USB3 Vision "p" packing: two
pixels in three bytes, LSB first), unpacked with ``exlpose_data.packed12.unpack_12p`` ``--repeats`` times, and
checked bit-identical to the samples. Reports milliseconds per frame (median), frames/s and unpacked MB/s, against
a plain copy of the same uint16 frame for scale. At 46 fps per camera (the 12p ceiling of a 160 MB/s link) two
cameras need 92 unpacks/s to be read back as fast as they were recorded.

    python benchmarks/bench_unpack12p.py
    python benchmarks/bench_unpack12p.py --width 640 --height 400 --repeats 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from exlpose_data.packed12 import pack_12p, unpack_12p


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    raw = np.random.default_rng(0).integers(0, 4096, (args.height, args.width), dtype=np.uint16)
    packed = pack_12p(raw)
    identical = bool(np.array_equal(unpack_12p(packed), raw))
    unpack_s = timed(lambda: unpack_12p(packed), args.repeats)
    copy_s = timed(lambda: raw.copy(), args.repeats)
    print(json.dumps({
        "frame": f"{args.width}x{args.height}",
        "bit_identical": identical,
        "unpack_ms_per_frame": round(unpack_s * 1e3, 2),
        "unpack_frames_per_s": round(1 / unpack_s, 1),
        "unpacked_mb_per_s": round(raw.nbytes / unpack_s / 1e6, 1),
        "plain_copy_ms_per_frame": round(copy_s * 1e3, 2),
        "stored_bytes_ratio": round(packed.nbytes / raw.nbytes, 3),
        "repeats": args.repeats,
    }))


if __name__ == "__main__":
    main()
