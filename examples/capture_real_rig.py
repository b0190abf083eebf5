"""Capture a scene on the real dual-camera rig: check the config, record a reference pair, record the ladder.

Rig: two Basler daA1920-160uc (USB3) behind a beam splitter, the low-light (LL) camera behind a 1% ND filter.

Wiring for master-slave hardware sync (USB3 darts have no PTP or action commands, so real sync is a wire):

    WL camera (master)                         LL camera (slave)
    GPIO Line2 (output)  --------------------> GPIO Line1 (input, opto-coupled on the dart's I/O cable)
    GPIO GND             --------------------> GPIO GND

The master free-runs and drives Line2 high while it exposes (LineMode=Output, LineSource=ExposureActive); the
slave starts each exposure on the rising edge (TriggerSelector=FrameStart, TriggerMode=On, TriggerSource=Line1,
TriggerActivation=RisingEdge). Check the pin-out of your I/O cable in Basler's dart documentation; both cameras
must share ground. With an external generator instead, wire its output to Line1 of both cameras and use the
``external`` topology (start the generator only when the tool says so).

On Linux raise the USB buffer memory first (two cameras at speed need more than the default 16 MB):

    sudo sh -c 'echo 1000 > /sys/module/usbcore/parameters/usbfs_memory_mb'

Run (add ``--emulate`` to try it on pylon's emulated cameras without hardware):

    python examples/capture_real_rig.py --ll-serial 40123456 --wl-serial 40123457 --scene park --site 3 --out park.h5
    python examples/capture_real_rig.py --emulate --scene demo --out /tmp/demo.h5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml


def rig_config(ll_serial: str, wl_serial: str, mirrored: str) -> dict:
    """The rig file: which camera is which, raw 12-bit Bayer, master-slave sync with the WL camera as master."""
    return {
        "ll": {"serial": ll_serial, "reverse_x": mirrored == "ll"},
        "wl": {"serial": wl_serial, "reverse_x": mirrored == "wl"},
        "nd_factor": 100,
        "pixel_format": "BayerRG12",
        "frame_rate_hz": 10,
        "trigger": {"topology": "master-slave", "master": "wl", "master_line": "Line2",
                    "master_line_source": "ExposureActive", "slave_line": "Line1"},
    }


def capture(*args: str) -> None:
    cmd = [sys.executable, "-m", "exlpose", "capture", *args]
    print("$", "exlpose-capture", " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ll-serial", default="40123456")
    parser.add_argument("--wl-serial", default="40123457")
    parser.add_argument("--mirrored", choices=["ll", "wl", "none"], default="wl", help="camera on the mirrored path")
    parser.add_argument("--scene", required=True)
    parser.add_argument("--site", default="")
    parser.add_argument("--exposure-us", type=float, default=5000, help="well-exposing WL exposure at k = 1")
    parser.add_argument("--gain-db", type=float, default=4.5, help="WL gain at k = 1")
    parser.add_argument("--preset", choices=["outdoor", "indoor"], default="outdoor")
    parser.add_argument("--frames", type=int, default=10, help="pairs per exposure step")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--emulate", action="store_true", help="use pylon's emulated cameras (no hardware)")
    args = parser.parse_args()

    if args.emulate:
        rig = ["--emulate", "--roi", "640x400"]
    else:
        config = args.out.with_suffix(".rig.yaml")
        config.write_text(yaml.safe_dump(rig_config(args.ll_serial, args.wl_serial, args.mirrored), sort_keys=False))
        capture("config", "check", str(config))
        rig = ["--config", str(config)]
    capture("plan", "--preset", args.preset, "--exposure-us", str(args.exposure_us), "--gain-db", str(args.gain_db))
    # A static reference for alignment: the LL camera exposes 100x longer to make up for its ND filter.
    capture("reference", *rig, "--name", "setup", "--exposure-us", str(args.exposure_us),
            "--ll-exposure-us", str(args.exposure_us * 100), "--gain-db", str(args.gain_db), "--frames", "5", "--out", str(args.out))
    capture("record", *rig, "--scene", args.scene, "--site", args.site, "--preset", args.preset,
            "--exposure-us", str(args.exposure_us), "--gain-db", str(args.gain_db), "--frames", str(args.frames), "--out", str(args.out))
    capture("inspect", str(args.out))
    print(f"next: exlpose-align estimate {args.out} --out ALIGN.json && exlpose-align apply {args.out} ALIGN.json --out dataset/")


if __name__ == "__main__":
    main()
