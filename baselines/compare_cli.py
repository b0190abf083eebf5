"""``exlpose-eval`` commands that compare several checkpoints: ``gaps`` (Fig. 6) and ``table`` (Table 2).

Registered on the ``exlpose-eval`` app by :func:`register`, so the evaluation CLI's own module stays small.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from exlpose_data.cli.common import err_console, handle_errors, out_console, progress_bar
from exlpose_data.errors import UsageError
from exlpose_data.threads import THREADS_HELP, use_threads

from .options import DEVICE_HELP, check_device
from .splits import SPLIT_HELP, resolve_split

__all__ = ["register", "gaps", "table", "checkpoint_labels", "enhancer_latency", "TABLE_SPLITS"]

TABLE_SPLITS = ("LL-N", "LL-H", "LL-E", "LL-A", "WL")


def checkpoint_labels(paths: list[Path]) -> list[str]:
    """Short unique labels for checkpoints: each run folder's name (``runs/lsbn/checkpoint.pth`` -> ``lsbn``),
    or the paths themselves when those names repeat."""
    names = [p.resolve().parent.name or str(p) for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _device(device: str):  # noqa: ANN202 (torch imported lazily)
    import torch

    return torch.device(check_device(device))


def gaps(
    checkpoints: Annotated[list[Path], typer.Argument(help="checkpoints to compare (e.g. runs/baseline-all/checkpoint.pth runs/lsbn/... runs/lsbn-lupi/...)")],
    dataset: Annotated[Path, typer.Option("--dataset", help="image root holding bright/ and dark/")],
    annotations: Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")] = None,
    split: Annotated[str, typer.Option(help="an LL test split with WL twins: LL-N, LL-H, LL-E or LL-A")] = "LL-A",
    out: Annotated[Path, typer.Option(help="folder for gaps.json and gaps.png")] = Path("gaps"),
    max_crops: Annotated[int, typer.Option(min=1, help="crops compared, evenly spaced over the split (ours; default 100)")] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="crops per batch")] = 16,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the --out folder of an earlier comparison with other settings")] = False,
) -> None:
    """Fig. 6: modified Hausdorff distances between LL and WL Gram matrices and features at R1-R4, per checkpoint."""
    torch_threads = use_threads(threads)  # before torch is imported
    from exlpose_data.atomic import write_json_atomic

    from .analysis import feature_gaps, plot_gaps
    from .checkpoint import load_model
    from .results import result_folder

    if not split.startswith("LL-"):
        raise UsageError(f"--split {split!r}: gaps compare LL crops with their WL twins; use LL-N, LL-H, LL-E or LL-A ({SPLIT_HELP})")
    ann, _ = resolve_split(dataset, annotations, split)
    dev = _device(device)
    err_console.out(torch_threads.describe())
    labels = checkpoint_labels(checkpoints)
    models = [load_model(p, dev) for p in checkpoints]  # every file checked before the slow part
    with result_folder(out, command="exlpose-eval gaps", produces="comparison folder",
                       settings={"split": split, "max_crops": max_crops, "labels": labels},
                       inputs={**{f"checkpoint {label}": p for label, p in zip(labels, checkpoints)}, "dataset": dataset, "annotations": ann},
                       read=[annotations], files=["gaps.json", "gaps.png"], overwrite=overwrite) as (folder, recorded):
        results = {}
        with progress_bar(transient=True) as progress:
            for label, (net, cfg) in zip(labels, models):
                task = progress.add_task(label, total=None)
                results[label] = feature_gaps(net, cfg, dataset, ann, dev, max_crops=max_crops, batch_size=batch_size,
                                              on_batch=lambda n, t=task: progress.update(t, advance=n))
        doc = {"split": split, "distance": "modified Hausdorff (Dubuisson and Jain)",
               "checkpoints": {label: {"path": str(p), "variant": cfg.variant, **results[label].to_dict()}
                               for label, p, (_, cfg) in zip(labels, checkpoints, models)}}
        write_json_atomic(folder / "gaps.json", doc, indent=1)
        plot_gaps(results, folder / "gaps.png", title=f"LL vs WL distances on {split}")
        recorded.own("gaps.json", "gaps.png")
    out_console.print(f"{'checkpoint':<20} " + " ".join(f"style {l:<5}" for l in ("R1", "R2", "R3", "R4"))
                      + " " + " ".join(f"feat {l:<6}" for l in ("R1", "R2", "R3", "R4")))
    for label, res in results.items():
        out_console.print(f"{label:<20} " + " ".join(f"{res.style[l]:<11.4g}" for l in res.style)
                          + " " + " ".join(f"{res.feature[l]:<11.4g}" for l in res.feature), markup=False)
    err_console.print(f"wrote {out / 'gaps.json'} and {out / 'gaps.png'}", markup=False)


def enhancer_latency(enhancer, root: Path, ann: Path, runs: int = 1) -> float:  # noqa: ANN001
    """Median seconds ``enhancer`` takes on the first image of an LL split, at its stored size."""
    import statistics
    import time

    from exlpose_data.datasets.records import build_index
    from exlpose_data.datasets.sources import decode_image

    from .enhance import enhance_bgr

    index = build_index(root, ann, "LL")
    if not index.images:
        raise UsageError(f"{ann}: no image to time the enhancer on")
    img = decode_image(index.image_root / index.images[0].ll_path)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        enhance_bgr(enhancer, img)
        times.append(time.perf_counter() - start)
    return float(statistics.median(times))


def _markdown(rows: list[dict], splits: list[str]) -> str:
    head = "| Method | " + " | ".join(splits) + " | Param. (M) | Latency (s) |"
    lines = [head, "|" + "---|" * (len(splits) + 3)]
    for row in rows:
        aps = " | ".join(f"{100 * row['AP'][s]:.1f}" for s in splits)
        lines.append(f"| {row['method']} | {aps} | {row['params_m']:.2f} | {row['latency_s']:.3f} |")
    return "\n".join(lines) + "\n"


def table(
    checkpoints: Annotated[list[Path], typer.Argument(help="checkpoints, one row each")],
    dataset: Annotated[Path, typer.Option("--dataset", help="image root holding bright/ and dark/")],
    annotations: Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")] = None,
    splits: Annotated[str, typer.Option(help=f"comma-separated columns: {SPLIT_HELP}")] = ",".join(TABLE_SPLITS),
    boxes: Annotated[Path | None, typer.Option(help="person detections (COCO results JSON): each checkpoint gets a second row scored on them")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for table.md and table.json")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="crops per batch")] = 32,
    workers: Annotated[int, typer.Option(min=0, help="data loader processes")] = 2,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the --out folder of an earlier table with other settings")] = False,
) -> None:
    """Table 2 of the paper: AP@0.5:0.95 on LL-N/H/E/A and WL, parameters and latency, one row per checkpoint.

    Param. (M) counts the pose network's learnable parameters. Latency (s) is one person crop through it (batch 1,
    its flip test) plus, for a checkpoint trained with an enhancer, the enhancement of one test image (the first
    LL-A image, at its size).
    """
    torch_threads = use_threads(threads)  # before torch is imported
    import tempfile

    from exlpose_data.atomic import write_json_atomic, write_text_atomic

    from .checkpoint import load_model_and_origin
    from .engine import evaluate_split, measure_latency
    from .enhance import config_enhancer
    from .inputs import inference_settings
    from .results import result_folder
    from .splits import split_detections

    names = [s.strip() for s in splits.split(",") if s.strip()]
    if not names:
        raise UsageError("--splits is empty")
    plan = [(split, *resolve_split(dataset, annotations, split)) for split in names]
    ll_ann = next((ann for split, ann, condition in plan if condition == "LL"), None)
    dev = _device(device)
    err_console.out(torch_threads.describe())
    labels = checkpoint_labels(checkpoints)
    # an imported official checkpoint runs with the authors' crop, flip, decode and input scale (as in eval model)
    models = [(net, cfg, inference_settings(cfg, origin)) for net, cfg, origin in (load_model_and_origin(p, dev) for p in checkpoints)]
    box_modes = [None] + ([boxes] if boxes is not None else [])
    with contextlib.ExitStack() as stack:
        if out is not None:  # checked before the slow part; marked incomplete until the table is written
            folder, recorded = stack.enter_context(result_folder(
                out, command="exlpose-eval table", produces="table folder", settings={"splits": names, "labels": labels},
                inputs={**{f"checkpoint {label}": p for label, p in zip(labels, checkpoints)}, "dataset": dataset, "boxes": boxes},
                read=[annotations, *(a for _, a, _ in plan)], files=["table.md", "table.json"], overwrite=overwrite))
        rows = []
        with tempfile.TemporaryDirectory() as tmp, progress_bar(transient=True) as progress:
            for label, path, (net, cfg, chosen) in zip(labels, checkpoints, models):
                enhancer = config_enhancer(cfg)
                if enhancer is not None and ll_ann is None:
                    raise UsageError(f"{path}: trained with an enhancer; its latency is timed on an LL split, add one to --splits")
                enhance_s = enhancer_latency(enhancer, dataset, ll_ann) if enhancer is not None else 0.0
                crop_s = measure_latency(net, cfg.input_size, "ll", dev, flip_test=chosen.flip_test)
                params = sum(p.numel() for p in net.parameters())
                for mode in box_modes:
                    aps = {}
                    for split, ann, condition in plan:
                        task = progress.add_task(f"{label} {split}", total=None)
                        dets = split_detections(mode, ann, Path(tmp), split) if mode is not None else None
                        metrics, _ = evaluate_split(net, cfg, dataset, ann, condition, dev, detections=dets, batch_size=batch_size, workers=workers, settings=chosen,
                                                    on_start=lambda n, t=task: progress.update(t, total=n),
                                                    on_batch=lambda n, t=task: progress.update(t, advance=n))
                        aps[split] = metrics.AP
                        progress.remove_task(task)
                    boxes_name = "ground truth" if mode is None else "detections"
                    rows.append({"method": label if len(box_modes) == 1 else f"{label} ({boxes_name} boxes)", "checkpoint": str(path),
                                 "variant": cfg.variant, "enhancer": cfg.enhancer or cfg.spec.enhancer, "boxes": boxes_name, "AP": aps,
                                 "params": params, "params_m": round(params / 1e6, 2), "latency_s": round(enhance_s + crop_s, 4),
                                 "latency_enhancer_s": round(enhance_s, 4), "latency_crop_s": round(crop_s, 4), "flip_test": chosen.flip_test,
                                 "crop": chosen.crop, "decode": chosen.decode, "input_scale": chosen.input_scale, "origin": chosen.origin})
        text = _markdown(rows, names)
        typer.echo(text, nl=False)
        if out is not None:
            write_text_atomic(folder / "table.md", text)
            write_json_atomic(folder / "table.json", {"splits": names, "rows": rows}, indent=1)
            recorded.own("table.md", "table.json")
    if out is not None:
        err_console.print(f"wrote {out / 'table.md'} and {out / 'table.json'}", markup=False)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app`` (the ``exlpose-eval`` app)."""
    app.command("gaps")(handle_errors(gaps))
    app.command("table")(handle_errors(table))
