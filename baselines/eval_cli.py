"""``exlpose-eval``: score keypoint predictions (no model needed) or a trained checkpoint on the test splits."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from exlpose_data.cli.common import choose, err_console, handle_errors, new_app, out_console, progress_bar
from exlpose_data.errors import InputError, UsageError
from exlpose_data.evaluation import PROTOCOLS, evaluate_keypoints

from .splits import SPLIT_HELP, resolve_split

__all__ = ["app", "cli", "DEFAULT_SPLITS"]

app = new_app("Score keypoint predictions (CrowdPose protocol) or a trained model on the ExLPose test splits.")

DEFAULT_SPLITS = "LL-N,LL-H,LL-E,LL-A,WL"


@app.command("predictions")
@handle_errors
def predictions(
    pred: Annotated[Path, typer.Argument(help="COCO keypoint results JSON: [{image_id, keypoints[42], score}, ...]")],
    gt: Annotated[Path, typer.Option("--gt", help="CrowdPose-style annotation file")],
    protocol: Annotated[str, typer.Option(help="crowdpose (as CrowdPose's evaluator scores) or fixed (every ground truth can match)")] = "crowdpose",
    as_json: Annotated[bool, typer.Option("--json", help='print {"AP", "AP50", "AP75", "AR"} (fractions) on stdout')] = False,
) -> None:
    """Score a predictions file against a ground-truth file (AP@0.5:0.95 is the paper's number)."""
    metrics = evaluate_keypoints(gt, pred, protocol=choose(protocol, PROTOCOLS, "--protocol"))  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(metrics.summary()))
        return
    out_console.print(f"{pred.name} vs {gt.name} ({protocol} protocol, {metrics.num_ground_truths} ground truths, {metrics.num_predictions} predictions)")
    for key, value in metrics.summary().items():
        out_console.print(f"  {key:<5} {100 * value:6.2f}")


def _split_detections(boxes: Path, ann: Path, workdir: Path, split: str) -> Path:
    """The detections of ``boxes`` on the images of ``ann`` (one file serves every split of a test set)."""
    from exlpose_data.atomic import write_json_atomic
    from exlpose_data.datasets.detections import load_detections
    from exlpose_data.schema import load_document

    image_ids = {img.id for img in load_document(ann).images}
    dets = load_detections(boxes)
    kept = [
        {"image_id": image_id, "category_id": 1, "bbox": list(bbox), "score": score}
        for image_id, items in dets.items() if image_id in image_ids for bbox, score in items
    ]
    if not kept:
        raise InputError(f"{boxes}: no detection on an image of {ann.name} (split {split})")
    return write_json_atomic(workdir / f"boxes_{split}.json", kept)


@app.command("model")
@handle_errors
def model(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pth written by exlpose-train")],
    dataset: Annotated[Path, typer.Option("--dataset", help="image root holding bright/ and dark/")],
    annotations: Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")] = None,
    splits: Annotated[str, typer.Option(help=f"comma-separated test splits: {SPLIT_HELP}")] = DEFAULT_SPLITS,
    boxes: Annotated[Path | None, typer.Option(help="person detections (COCO results JSON) instead of ground-truth boxes")] = None,
    protocol: Annotated[str, typer.Option(help="crowdpose or fixed")] = "crowdpose",
    flip_test: Annotated[str | None, typer.Option(help="ours | official (the reference's, to compare with published numbers) | none; default: the checkpoint's")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="crops per batch")] = 32,
    workers: Annotated[int, typer.Option(min=0, help="data loader processes")] = 2,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
    save_predictions: Annotated[Path | None, typer.Option(help="folder to write predictions_<split>.json into")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON on stdout")] = False,
) -> None:
    """Evaluate a checkpoint per split: AP@0.5:0.95, parameter count and latency per person crop."""
    import torch

    from exlpose_data.atomic import write_json_atomic

    from .checkpoint import load_model
    from .config import FLIP_TESTS
    from .engine import evaluate_split, measure_latency

    choose(protocol, PROTOCOLS, "--protocol")
    if flip_test is not None:
        choose(flip_test, FLIP_TESTS, "--flip-test")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    names = [s.strip() for s in splits.split(",") if s.strip()]
    if not names:
        raise UsageError("--splits is empty")
    plan = [(split, *resolve_split(dataset, annotations, split)) for split in names]  # every file before any inference
    dev = torch.device(device)
    net, cfg = load_model(checkpoint, dev)
    flip = flip_test if flip_test is not None else cfg.flip_test
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, progress_bar(transient=True, disable=as_json) as progress:
        for split, ann, condition in plan:
            dets = _split_detections(boxes, ann, Path(tmp), split) if boxes is not None else None
            task = progress.add_task(split, total=None)
            metrics, results = evaluate_split(
                net, cfg, dataset, ann, condition, dev, detections=dets, batch_size=batch_size, workers=workers, flip_test=flip,
                protocol=protocol, on_start=lambda n, t=task: progress.update(t, total=n),
                on_batch=lambda n, t=task: progress.update(t, advance=n))
            rows[split] = metrics.AP
            if save_predictions is not None:
                write_json_atomic(save_predictions / f"predictions_{split}.json", results)
    latency = measure_latency(net, cfg.input_size, "ll", dev, flip_test=flip)
    params = sum(p.numel() for p in net.parameters())
    table = {"AP": rows, "params": params, "params_m": round(params / 1e6, 2), "latency_ms": round(1000 * latency, 2),
             "variant": cfg.variant, "protocol": protocol, "boxes": "detections" if boxes else "ground truth", "flip_test": flip,
             "heatmap_convention": cfg.heatmap_convention}
    if save_predictions is not None:
        write_json_atomic(save_predictions / "evaluation.json", table)
    if as_json:
        typer.echo(json.dumps(table))
        return
    header = " | ".join(f"{s:>6}" for s in rows) + " | params | ms/crop"
    values = " | ".join(f"{100 * v:6.1f}" for v in rows.values()) + f" | {params / 1e6:5.2f}M | {1000 * latency:7.1f}"
    out_console.print(f"{checkpoint.name} ({cfg.variant}, {protocol} protocol, {table['boxes']} boxes, flip test {flip}, AP@0.5:0.95)")
    out_console.print(header)
    out_console.print(values)
    err_console.print(f"latency: batch 1 on {device}{', with flip test' if flip != 'none' else ''}", markup=False)


def _register_comparisons() -> None:
    from .compare_cli import register

    register(app)


_register_comparisons()


def cli() -> None:
    """Console-script entry point (``exlpose-eval``)."""
    app(prog_name="exlpose-eval")
