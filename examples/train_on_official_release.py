"""Train the paper's LSBN + LUPI model (or a baseline) on the official ExLPose release, then score it per split.

The release as downloaded: images under ``data/ExLPose/`` (``bright/``, ``dark/``, ``brightPath2darkPath.txt``) and
the annotation files under ``data/Annotations/``. Older releases ship only ``ExLPose_test_LL-All.json``; this
script then derives ``LL-N/H/E`` and ``WL`` with the toolkit's splitter first (ids renumbered from 1, which the
COCO-style evaluators need). ImageNet weights come from a local torchvision checkpoint you downloaded.

    python examples/train_on_official_release.py --dataset data/ExLPose --annotations data/Annotations \\
        --pretrained resnet50-0676ba61.pth --variant lsbn-lupi --out runs/lsbn-lupi

    # a 2-minute smoke run on a simulated release (no download needed):
    python examples/train_on_official_release.py --simulate 2 --out /tmp/smoke
"""

from __future__ import annotations

import argparse
from pathlib import Path

from baselines.config import TrainConfig
from baselines.train import run
from exlpose_data.release import open_release
from exlpose_data.schema import load_document
from exlpose_data.split import PairMap, split_by_gain


def ensure_gain_splits(dataset: Path, annotations: Path | None) -> Path:
    """Make sure LL-N/H/E/A and WL test files exist; write them beside LL-A (or LL-All) when missing."""
    release = open_release(dataset, annotations)
    files = release.annotation_files()
    if all(f"test_LL-{s}" in files for s in "NHE") and "test_WL" in files:
        return release.annotation_dir  # type: ignore[return-value]
    ll_all = release.annotation_file("test_LL-A")
    result = split_by_gain(load_document(ll_all), pairs=PairMap(release.bright_to_dark()), source=str(ll_all))
    for key, doc in result.documents.items():
        target = ll_all.parent / f"ExLPose_test_{key}.json"
        if not target.exists():
            target.write_text(doc.model_dump_json(exclude_none=True))
    return ll_all.parent


def simulated_release(out: Path, scenes: int) -> Path:
    from exlpose_data.simulate import load_config, simulate_release

    root = out / "ExLPose"
    if not root.exists():
        simulate_release(load_config(None, width=320, height=200), root, scenes=scenes, seed=0, workers=1)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="image root holding bright/ and dark/")
    parser.add_argument("--annotations", type=Path, help="annotation folder (found beside the dataset when omitted)")
    parser.add_argument("--pretrained", type=Path, help="local torchvision ImageNet checkpoint of the backbone")
    parser.add_argument("--variant", default="lsbn-lupi")
    parser.add_argument("--out", type=Path, default=Path("runs/exlpose"))
    parser.add_argument("--simulate", type=int, metavar="SCENES", help="train briefly on a simulated release instead")
    args = parser.parse_args()

    if args.simulate:
        dataset = simulated_release(args.out, args.simulate)
        cfg = TrainConfig(variant=args.variant, dataset=dataset, output_dir=args.out / "run", backbone="resnet18",
                          input_size=(64, 48), heatmap_size=(16, 12), epochs=1, steps_per_epoch=2, batch_size=4,
                          workers=0, val_splits=["LL-A", "WL"], from_scratch=True)
    else:
        if args.dataset is None:
            parser.error("give --dataset (or --simulate N for a smoke run)")
        annotations = ensure_gain_splits(args.dataset, args.annotations)
        cfg = TrainConfig(variant=args.variant, dataset=args.dataset, annotations=annotations, pretrained=args.pretrained,
                          output_dir=args.out, val_splits=["LL-N", "LL-H", "LL-E", "LL-A", "WL"])
    record = run(cfg)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})


if __name__ == "__main__":
    main()
