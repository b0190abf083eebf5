"""``exlpose-detect`` (also ``exlpose detect``): train, evaluate and run the low-light person detector.

Under torchrun: ``torchrun --nproc_per_node 4 -m baselines.detect.cli train --variant lsbn-lupi --dataset ExLPose/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from exlpose_data.cli.common import choose, err_console, fail, finite_number, handle_errors, new_app, out_console, progress_bar, warn
from exlpose_data.errors import UsageError
from exlpose_data.threads import THREADS_HELP, use_threads

from ..cli_kit import DEFAULT_SPLITS, _epoch_progress, _size, _train_warnings
from ..cli_kit import (
    AmpOption,
    AnnotationsOption,
    BenchmarkStepsOption,
    ChannelsLastOption,
    ConfigOption,
    DatasetOption,
    DeterministicOption,
    DeviceOption,
    PackOption,
    PretrainedOption,
    ProgressOption,
    SeedOption,
    StepsPerEpochOption,
    SyncBnOption,
    TestOnlyOption,
    ThreadsOption,
    TrainAnnOption,
    WorkersOption,
)
from ..options import DEVICE_HELP, check_device
from ..splits import SPLIT_HELP

__all__ = ["app", "main"]

app = new_app("Train, evaluate and run the low-light person detector (CenterNet-style heads on the pose network's ResNet, "
              "with its LSBN and LUPI variants).")

VARIANT_HELP = "baseline-low | baseline-well | baseline-all | lsbn | lsbn-lupi (LSBN in the backbone, LUPI Gram loss between LL student and WL teacher)"


@app.command("train")
@handle_errors
def train(
    config: ConfigOption = None,
    variant: Annotated[str | None, typer.Option(help=VARIANT_HELP + "; default lsbn-lupi")] = None,
    dataset: DatasetOption = None,
    annotations: AnnotationsOption = None,
    train_ann: TrainAnnOption = None,
    pack: PackOption = None,
    val_splits: Annotated[str | None, typer.Option(help="comma-separated test splits evaluated periodically ('' for none; default LL-A,WL)")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "--out", help="run folder for checkpoint.pth, metrics.json and tensorboard/ (default runs/exlpose-detect): new or empty, or the folder of the --resume checkpoint")] = None,
    backbone: Annotated[str | None, typer.Option(help="resnet18 | resnet34 | resnet50 (default) | resnet101")] = None,
    pretrained: PretrainedOption = None,
    from_scratch: Annotated[bool | None, typer.Option("--from-scratch", help="train without ImageNet weights (otherwise --pretrained is required)")] = None,
    input_size: Annotated[str | None, typer.Option(help="network input HEIGHTxWIDTH, multiples of 32 (default 512x800); whole images are fitted inside")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs (default 140, CenterNet's)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="images (pairs) per step over all processes (default 32)")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 1.25e-4)", parser=finite_number)] = None,
    lupi_weight: Annotated[float | None, typer.Option(help="multiplier of the LUPI Gram term (default 1)", parser=finite_number)] = None,
    lupi_gram: Annotated[str | None, typer.Option(help="gram (Eq. 3 averaged; default) | gram-reference (the pose reference's weighting)")] = None,
    centre_radius: Annotated[str | None, typer.Option(help="exact (the radius keeping IoU 0.7; default) | centernet (CenterNet's published formula, about 3x larger)")] = None,
    sync_bn: SyncBnOption = None,
    amp: AmpOption = None,
    channels_last: ChannelsLastOption = None,
    workers: WorkersOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    deterministic: DeterministicOption = None,
    eval_every: Annotated[int | None, typer.Option(help="evaluate every N epochs (and after the last; default 10)")] = None,
    steps_per_epoch: StepsPerEpochOption = None,
    resume: Annotated[Path | None, typer.Option(help="continue from this detector checkpoint (or evaluate it with --test-only)")] = None,
    test_only: TestOnlyOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the detector run in --output-dir: the new run is built beside it and swapped in when it completes")] = False,
    benchmark_steps: BenchmarkStepsOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train one variant of the person detector; prints the last epoch's record as JSON on stdout."""
    torch_threads = use_threads(threads)  # before torch is imported
    from .config import load_detect_config, make_detect_config
    from .train import benchmark, resume_config, run
    from ..loop import Distributed

    if device is not None:
        check_device(device)
    overrides: dict[str, Any] = {
        "variant": variant, "dataset": dataset, "annotations": annotations, "train_ann": train_ann, "pack": pack,
        "val_splits": None if val_splits is None else [s for s in val_splits.split(",") if s.strip()],
        "output_dir": output_dir, "backbone": backbone, "pretrained": pretrained, "from_scratch": from_scratch,
        "input_size": _size(input_size, "--input-size"), "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "lupi_weight": lupi_weight, "lupi_gram": lupi_gram, "centre_radius": centre_radius, "sync_bn": sync_bn, "amp": amp, "channels_last": channels_last,
        "workers": workers, "seed": seed, "device": device, "deterministic": deterministic, "eval_every": eval_every,
        "steps_per_epoch": steps_per_epoch,
    }
    if test_only and resume is None:
        raise UsageError("--test-only needs --resume CHECKPOINT")
    if resume is not None:
        cfg = resume_config(resume, config, overrides, warn=warn)
    elif config is not None:
        cfg = load_detect_config(config, overrides)
    else:
        cfg = make_detect_config({k: v for k, v in overrides.items() if v is not None}, source="options")
    err_console.out(torch_threads.describe())
    with _train_warnings():
        if benchmark_steps is not None:
            typer.echo(json.dumps(benchmark(cfg, benchmark_steps)))
            return
        try:
            with _epoch_progress(cfg.epochs, disable=not progress) as on_step:
                record = run(cfg, resume=resume, test_only=test_only, on_step=on_step, overwrite=overwrite, config_file=config,
                             notify=lambda line: err_console.print(line, markup=False, soft_wrap=True))
        except FloatingPointError as exc:
            raise fail(str(exc), 1) from None
    if Distributed.from_env().is_main:
        typer.echo(json.dumps(record))


@app.command("eval")
@handle_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="detector checkpoint.pth written by exlpose-detect train")],
    dataset: Annotated[Path, typer.Option("--dataset", help="image root holding bright/ and dark/")],
    annotations: Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")] = None,
    splits: Annotated[str, typer.Option(help=f"comma-separated test splits: {SPLIT_HELP}")] = DEFAULT_SPLITS,
    batch_size: Annotated[int, typer.Option(min=1, help="images per batch")] = 8,
    workers: Annotated[int, typer.Option(min=0, help="data loader processes")] = 2,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    save_predictions: Annotated[Path | None, typer.Option(help="folder for boxes_<split>.json (COCO detection results) and evaluation.json (new or empty, or one this command wrote)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON on stdout")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the --save-predictions folder of an earlier evaluation with other settings")] = False,
) -> None:
    """COCO box AP@0.5:0.95 and AP@0.5 of a detector per split (pycocotools on the detector's own boxes)."""
    import contextlib

    torch_threads = use_threads(threads)
    import torch

    from exlpose_data.atomic import write_json_atomic

    from ..results import result_folder
    from ..splits import resolve_split
    from .evaluate import evaluate_split
    from .train import load_detector

    check_device(device)
    names = [s.strip() for s in splits.split(",") if s.strip()]
    if not names:
        raise UsageError("--splits is empty")
    plan = [(split, *resolve_split(dataset, annotations, split)) for split in names]
    err_console.out(torch_threads.describe())
    dev = torch.device(device)
    net, cfg = load_detector(checkpoint, dev)
    rows: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        folder = recorded = None
        if save_predictions is not None:
            folder, recorded = stack.enter_context(result_folder(
                save_predictions, command="exlpose-detect eval", produces="detector evaluation folder", settings={"splits": names},
                inputs={"checkpoint": checkpoint, "dataset": dataset}, read=[annotations, *(a for _, a, _ in plan)],
                files=[*(f"boxes_{s}.json" for s in names), "evaluation.json"], overwrite=overwrite, option="--save-predictions"))
        with progress_bar(transient=True, disable=as_json) as bar:
            for split, ann, condition in plan:
                task = bar.add_task(split, total=None)
                metrics, results = evaluate_split(net, cfg, dataset, ann, condition, dev, batch_size=batch_size, workers=workers,
                                                  on_start=lambda n, t=task: bar.update(t, total=n), on_batch=lambda n, t=task: bar.update(t, advance=n))
                rows[split] = {**metrics.summary(), "num_ground_truths": metrics.num_ground_truths, "num_detections": metrics.num_detections}
                if folder is not None:
                    write_json_atomic(folder / f"boxes_{split}.json", results)
                    recorded.own(f"boxes_{split}.json")  # type: ignore[union-attr]
        table = {"AP": {s: r["AP"] for s, r in rows.items()}, "AP50": {s: r["AP50"] for s, r in rows.items()}, "splits": rows,
                 "variant": cfg.variant, "backbone": cfg.backbone, "input_size": list(cfg.input_size)}
        if folder is not None:
            write_json_atomic(folder / "evaluation.json", table)
            recorded.own("evaluation.json")  # type: ignore[union-attr]
    if as_json:
        typer.echo(json.dumps(table))
        return
    out_console.print(f"{checkpoint.name} ({cfg.variant} {cfg.backbone} person detector, input {cfg.input_size[0]}x{cfg.input_size[1]}, COCO box AP)")
    out_console.print("split  |     AP |   AP50 | people | boxes")
    for split, r in rows.items():
        out_console.print(f"{split:<6} | {100 * r['AP']:6.1f} | {100 * r['AP50']:6.1f} | {r['num_ground_truths']:6d} | {r['num_detections']:5d}")


@app.command("predict")
@handle_errors
def predict(
    checkpoint: Annotated[str, typer.Argument(help="detector checkpoint.pth, or onnx:MODEL.onnx (any person detector under the ONNX contract of docs/baselines.md)")],
    images: Annotated[list[Path] | None, typer.Argument(help="images to run on (instead of --split)")] = None,
    out: Annotated[Path, typer.Option("--out", help="COCO detection results JSON to write (exlpose-eval model --boxes reads it)")] = Path("boxes.json"),
    dataset: Annotated[Path | None, typer.Option(help="image root of --split")] = None,
    annotations: Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")] = None,
    split: Annotated[str | None, typer.Option(help=f"run on every image of this test split ({SPLIT_HELP}); image_id from its annotation file")] = None,
    ann: Annotated[Path | None, typer.Option(help="with IMAGES: take each image's image_id from this annotation file (matched by file name)")] = None,
    condition: Annotated[str | None, typer.Option(help="with IMAGES: LL (default) or WL (a split has its own)")] = None,
    min_score: Annotated[float, typer.Option(help="leave out boxes scoring below this, 0 to 1 (default 0: all, as COCO evaluation wants)", parser=finite_number)] = 0.0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an earlier results file at --out")] = False,
) -> None:
    """Person boxes as COCO detection results: for a test split (--dataset, --split) or for IMAGES."""
    torch_threads = use_threads(threads)
    from .predict import predict_boxes

    check_device(device)
    if (split is None) == (not images):
        raise UsageError("give either IMAGES or --dataset ROOT --split NAME")
    if split is not None and dataset is None:
        raise UsageError("--split needs --dataset ROOT")
    if split is not None and ann is not None:
        raise UsageError("--ann goes with IMAGES; a --split takes its image ids from its own annotation file")
    if split is not None and condition is not None:
        raise UsageError(f"--condition goes with IMAGES; split {split} has its own ({'WL' if split == 'WL' else 'LL'})")
    if images and (dataset is not None or annotations is not None):
        raise UsageError("--dataset and --annotations go with --split; for IMAGES take image ids from an annotation file with --ann")
    if not 0.0 <= min_score <= 1.0:
        raise UsageError(f"--min-score {min_score:g}: must lie in [0, 1]")
    condition = choose((condition or "LL").upper(), ("LL", "WL"), "--condition")
    err_console.out(torch_threads.describe())
    count, images_done = predict_boxes(checkpoint, out, images=images or None, dataset=dataset, annotations=annotations, split=split, ann=ann,
                                       condition=condition, min_score=min_score, device=device, overwrite=overwrite)
    err_console.print(f"{count} boxes on {images_done} images -> {out}", markup=False)


def main() -> None:
    """Console-script entry point (``exlpose-detect``)."""
    app(prog_name="exlpose-detect")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        app(args=sys.argv[1:], prog_name="exlpose-detect")
    else:
        main()
