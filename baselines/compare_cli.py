"""``exlpose-eval`` commands that compare several checkpoints: ``gaps`` (Fig. 6).

Registered on the ``exlpose-eval`` app by :func:`register`, so the evaluation CLI's own module stays small.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from exlpose_data.cli.common import err_console, handle_errors, out_console, progress_bar
from exlpose_data.errors import UsageError

from .splits import SPLIT_HELP, resolve_split

__all__ = ["register", "gaps", "checkpoint_labels"]


def checkpoint_labels(paths: list[Path]) -> list[str]:
    """Short unique labels for checkpoints: each run folder's name (``runs/lsbn/checkpoint.pth`` -> ``lsbn``),
    or the paths themselves when those names repeat."""
    names = [p.resolve().parent.name or str(p) for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _device(device: str):  # noqa: ANN202 (torch imported lazily)
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return torch.device(device)


def gaps(
    checkpoints: Annotated[list[Path], typer.Argument(help="checkpoints to compare (e.g. runs/baseline-all/checkpoint.pth runs/lsbn/... runs/lsbn-lupi/...)")],
    dataset: Annotated[Path, typer.Option("--dataset", help="image root holding bright/ and dark/")],
    annotations: Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")] = None,
    split: Annotated[str, typer.Option(help="an LL test split with WL twins: LL-N, LL-H, LL-E or LL-A")] = "LL-A",
    out: Annotated[Path, typer.Option(help="folder for gaps.json and gaps.png")] = Path("gaps"),
    max_crops: Annotated[int, typer.Option(min=1, help="crops compared, evenly spaced over the split (ours; default 100)")] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="crops per batch")] = 16,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
) -> None:
    """Fig. 6: modified Hausdorff distances between LL and WL Gram matrices and features at R1-R4, per checkpoint."""
    from exlpose_data.atomic import write_json_atomic

    from .analysis import feature_gaps, plot_gaps
    from .checkpoint import load_model

    if not split.startswith("LL-"):
        raise UsageError(f"--split {split!r}: gaps compare LL crops with their WL twins; use LL-N, LL-H, LL-E or LL-A ({SPLIT_HELP})")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    ann, _ = resolve_split(dataset, annotations, split)
    dev = _device(device)
    labels = checkpoint_labels(checkpoints)
    models = [load_model(p, dev) for p in checkpoints]  # every file checked before the slow part
    results = {}
    with progress_bar(transient=True) as progress:
        for label, (net, cfg) in zip(labels, models):
            task = progress.add_task(label, total=None)
            results[label] = feature_gaps(net, cfg, dataset, ann, dev, max_crops=max_crops, batch_size=batch_size,
                                          on_batch=lambda n, t=task: progress.update(t, advance=n))
    doc = {"split": split, "distance": "modified Hausdorff (Dubuisson and Jain)",
           "checkpoints": {label: {"path": str(p), "variant": cfg.variant, **results[label].to_dict()}
                           for label, p, (_, cfg) in zip(labels, checkpoints, models)}}
    os.makedirs(out, exist_ok=True)
    write_json_atomic(out / "gaps.json", doc, indent=1)
    plot_gaps(results, out / "gaps.png", title=f"LL vs WL distances on {split}")
    out_console.print(f"{'checkpoint':<20} " + " ".join(f"style {l:<5}" for l in ("R1", "R2", "R3", "R4"))
                      + " " + " ".join(f"feat {l:<6}" for l in ("R1", "R2", "R3", "R4")))
    for label, res in results.items():
        out_console.print(f"{label:<20} " + " ".join(f"{res.style[l]:<11.4g}" for l in res.style)
                          + " " + " ".join(f"{res.feature[l]:<11.4g}" for l in res.feature), markup=False)
    err_console.print(f"wrote {out / 'gaps.json'} and {out / 'gaps.png'}", markup=False)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app`` (the ``exlpose-eval`` app)."""
    app.command("gaps")(handle_errors(gaps))
