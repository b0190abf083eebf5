"""The baselines' commands: ``exlpose-train``, ``exlpose-eval`` and ``exlpose-predict`` (also ``exlpose train``,
``exlpose eval``, ``exlpose predict``). Each parses its options, calls the library (:mod:`baselines.train`,
:mod:`baselines.engine`, :mod:`baselines.predict`) and prints what it returns.

Under torchrun, run the module with the tool's name first: ``torchrun --nproc_per_node 4 -m baselines.cli train
--variant lsbn-lupi --dataset ExLPose/``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from exlpose_data.cli.common import choose, err_console, fail, finite_number, handle_errors, new_app, out_console, progress_bar, warn
from exlpose_data.errors import UsageError
from exlpose_data.evaluation import PROTOCOLS, evaluate_keypoints
from exlpose_data.threads import THREADS_HELP, use_threads

from .cli_kit import DEFAULT_SPLITS, _epoch_progress, _size, _train_warnings
from .cli_kit import (
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
from .options import DEVICE_HELP, check_device
from .splits import SPLIT_HELP

__all__ = ["train_app", "eval_app", "predict_app", "train_main", "eval_main", "predict_main", "DEFAULT_SPLITS", "TOOLS"]

train_app = new_app("Train the ExLPose reference method (CPN on ResNet, with LSBN and LUPI variants).")
eval_app = new_app("Score keypoint predictions (CrowdPose protocol) or a trained model on the ExLPose test splits.")
predict_app = new_app("Predict keypoints in images with a trained checkpoint; write keypoints JSON and overlay PNGs.")



CROP_HELP = "ours (the float box warped with one affine) | official (the authors' integer box, cut and resized); default: official for an imported authors' checkpoint, else ours"
DECODE_HELP = "ours | official (a heatmap with no positive value divided by its negative maximum, as the authors); default as --crop"
INPUT_SCALE_HELP = "ours (crops divided by 255) | official (only when the crop's maximum exceeds 1, as the authors); default as --crop"


def _check_test_settings(crop: str | None, decode: str | None, input_scale: str | None) -> None:
    """Refuse a --crop, --decode or --input-scale value outside its choices before anything is loaded."""
    from exlpose_data.datasets.transforms import CROP_MODES, INPUT_SCALES

    from .decode import DECODES

    for value, choices, option in ((crop, CROP_MODES, "--crop"), (decode, DECODES, "--decode"), (input_scale, INPUT_SCALES, "--input-scale")):
        if value is not None:
            choose(value, choices, option)


@train_app.callback(invoke_without_command=True)
@handle_errors
def train(
    ctx: typer.Context,
    config: ConfigOption = None,
    variant: Annotated[str | None, typer.Option(help="baseline-low | baseline-well | baseline-all | lupi | lsbn | lsbn-lupi | lsbn-lupi-feat | lime-baseline-all | dann | advent | lsbn-lupi-unpaired | lsbn-lupi-uda")] = None,
    dataset: DatasetOption = None,
    annotations: AnnotationsOption = None,
    train_ann: TrainAnnOption = None,
    pack: PackOption = None,
    val_splits: Annotated[str | None, typer.Option(help="comma-separated test splits evaluated periodically, e.g. LL-A,WL ('' for none)")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "--out", help="run folder for checkpoint.pth, metrics.json and tensorboard/: new or empty, or the folder of the --resume checkpoint; never the dataset or a folder holding an input")] = None,
    backbone: Annotated[str | None, typer.Option(help="resnet18 | resnet34 | resnet50 | resnet101")] = None,
    pretrained: PretrainedOption = None,
    from_scratch: Annotated[bool | None, typer.Option("--from-scratch", help="train without ImageNet weights (otherwise --pretrained is required)")] = None,
    input_size: Annotated[str | None, typer.Option(help="crop HEIGHTxWIDTH (default 256x192)")] = None,
    heatmap_size: Annotated[str | None, typer.Option(help="heatmap HEIGHTxWIDTH (default 64x48)")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs (default 32)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="pairs per step over all processes (default 32)")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 5e-4)", parser=finite_number)] = None,
    lupi_weight: Annotated[float | None, typer.Option(help="multiplier of the Gram LUPI term (default 1)", parser=finite_number)] = None,
    lupi_gram: Annotated[str | None, typer.Option(help="gram-reference (the reference's 1e-4 x 0.2, summed over the batch; default) | gram (Eq. 3 averaged)")] = None,
    lupi_feat_weight: Annotated[float | None, typer.Option(help="multiplier of LUPI-feat's term (default 1)", parser=finite_number)] = None,
    wl_normalisation: Annotated[str | None, typer.Option(help="reference (the dataset's statistics; default) | imagenet")] = None,
    padding: Annotated[str | None, typer.Option(help="mean (the reference's pixel means; default) | zero")] = None,
    heatmap_convention: Annotated[str | None, typer.Option(help="ours (default) | reference (floor(x/4) targets, 4j+2 decoding)")] = None,
    head_init: Annotated[str | None, typer.Option(help="reference (heads' final BN at weight 1, bias 0; default) | target-scale (at the targets' std and mean)")] = None,
    global_mask: Annotated[str | None, typer.Option(help="visible (the reference: GlobalNet learns v=2 joints; default) | labelled")] = None,
    flip_test: Annotated[str | None, typer.Option(help="ours (default) | official (the reference's, for comparing with published numbers) | none")] = None,
    sync_bn: SyncBnOption = None,
    amp: AmpOption = None,
    channels_last: ChannelsLastOption = None,
    workers: WorkersOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    deterministic: DeterministicOption = None,
    eval_every: Annotated[int | None, typer.Option(help="evaluate every N epochs (and after the last)")] = None,
    steps_per_epoch: StepsPerEpochOption = None,
    enhancer: Annotated[str | None, typer.Option(help="enhance LL images (training and test): lime | onnx:MODEL.onnx")] = None,
    enhance_cache: Annotated[Path | None, typer.Option(help="folder caching enhanced images (default <output-dir>/enhanced)")] = None,
    lime_downscale: Annotated[float | None, typer.Option(help="LIME solves the illumination at this scale (default 1: full resolution)", parser=finite_number)] = None,
    adapt_weight: Annotated[float | None, typer.Option(help="dann: domain loss weight (default 1); advent: adversarial weight (default 1e-3)", parser=finite_number)] = None,
    resume: Annotated[Path | None, typer.Option(help="continue from this checkpoint (or evaluate it with --test-only)")] = None,
    test_only: TestOnlyOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the training run in --output-dir: the new run is built beside it and swapped in when it completes")] = False,
    benchmark_steps: BenchmarkStepsOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train one variant of the reference method; prints the last epoch's record as JSON on stdout."""
    if ctx.invoked_subcommand is not None:
        return
    torch_threads = use_threads(threads)  # before torch is imported: OpenMP reads its wait policy then
    from .config import load_config, make_config
    from .train import Distributed, benchmark, resume_config, run

    if device is not None:
        check_device(device)
    overrides: dict[str, Any] = {
        "variant": variant, "dataset": dataset, "annotations": annotations, "train_ann": train_ann, "pack": pack,
        "val_splits": None if val_splits is None else [s for s in val_splits.split(",") if s],
        "output_dir": output_dir, "backbone": backbone, "pretrained": pretrained, "from_scratch": from_scratch,
        "lupi_gram": lupi_gram, "lupi_feat_weight": lupi_feat_weight, "wl_normalisation": wl_normalisation, "padding": padding,
        "heatmap_convention": heatmap_convention, "head_init": head_init, "global_mask": global_mask, "flip_test": flip_test, "sync_bn": sync_bn,
        "amp": amp, "channels_last": channels_last,
        "input_size": _size(input_size, "--input-size"), "heatmap_size": _size(heatmap_size, "--heatmap-size"),
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "lupi_weight": lupi_weight, "workers": workers, "seed": seed,
        "device": device, "deterministic": deterministic, "eval_every": eval_every, "steps_per_epoch": steps_per_epoch,
        "enhancer": enhancer, "enhance_cache": enhance_cache, "lime_downscale": lime_downscale,
        "adapt_weight": adapt_weight,
    }
    if test_only and resume is None:
        raise UsageError("--test-only needs --resume CHECKPOINT")
    if resume is not None:
        cfg = resume_config(resume, config, overrides, warn=warn)
    elif config is not None:
        cfg = load_config(config, overrides)
    else:
        cfg = make_config({k: v for k, v in overrides.items() if v is not None}, source="options")
    err_console.out(torch_threads.describe())  # once the options are checked: a refused one stays one line
    with _train_warnings():
        if benchmark_steps is not None:
            typer.echo(json.dumps(benchmark(cfg, benchmark_steps)))
            return
        try:
            with _epoch_progress(cfg.epochs, disable=not progress) as on_step:
                record = run(cfg, resume=resume, test_only=test_only, on_step=on_step, overwrite=overwrite, config_file=config,
                             notify=lambda line: err_console.print(line, markup=False, soft_wrap=True))
        except FloatingPointError as exc:  # a diverged run: one line (from every process alike), exit 1
            raise fail(str(exc), 1) from None
    if Distributed.from_env().is_main:
        if test_only:
            err_console.print(" ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("AP/")), markup=False)
        typer.echo(json.dumps(record))


@train_app.command("import-official")
@handle_errors
def import_official_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="the authors' checkpoint (pytorch-cpn's .pth.tar: {'state_dict': ...})")],
    out: Annotated[Path, typer.Option("--out", help="our checkpoint to write (exlpose-eval model reads it)")],
    input_size: Annotated[str, typer.Option(help="crop HEIGHTxWIDTH the model was trained at")] = "256x192",
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="replace the checkpoint at --out (--force: the same)")] = False,
) -> None:
    """Convert the reference network's state_dict (its ResNet-LSBN or ResNet, globalNet, refineNet) to ours."""
    from exlpose_data.outputs import check_output

    from .official import import_official

    size = _size(input_size, "--input-size")
    assert size is not None
    check_output(out, inputs=[checkpoint], writes="file", produces="checkpoint", replaces=["checkpoint"], overwrite=overwrite)
    info = import_official(checkpoint, out, input_size=size)
    err_console.print(
        f"{checkpoint.name}: {info['tensors']} tensors mapped onto a {info['variant']} {info['backbone']} CPN -> {out} "
        f"(heatmap convention 'reference', inputs as the reference; evaluated with the authors' crop, flip test, decoding and input scale "
        f"unless told otherwise)", markup=False)


@eval_app.command("predictions")
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


@eval_app.command("model")
@handle_errors
def model(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pth written by exlpose-train")],
    dataset: Annotated[Path, typer.Option("--dataset", help="image root holding bright/ and dark/")],
    annotations: Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")] = None,
    splits: Annotated[str, typer.Option(help=f"comma-separated test splits: {SPLIT_HELP}")] = DEFAULT_SPLITS,
    boxes: Annotated[Path | None, typer.Option(help="person detections (COCO results JSON) instead of ground-truth boxes")] = None,
    protocol: Annotated[str, typer.Option(help="crowdpose or fixed")] = "crowdpose",
    flip_test: Annotated[str | None, typer.Option(help="ours | official (the reference's, to compare with published numbers) | none; default: the checkpoint's (official for an imported authors' checkpoint)")] = None,
    crop: Annotated[str | None, typer.Option(help=CROP_HELP)] = None,
    decode: Annotated[str | None, typer.Option(help=DECODE_HELP)] = None,
    input_scale: Annotated[str | None, typer.Option(help=INPUT_SCALE_HELP)] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="crops per batch")] = 32,
    workers: Annotated[int, typer.Option(min=0, help="data loader processes")] = 2,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    save_predictions: Annotated[Path | None, typer.Option(help="folder for predictions_<split>.json and evaluation.json (new or empty, or one this command wrote)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON on stdout")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the --save-predictions folder of an earlier evaluation with other settings")] = False,
) -> None:
    """Evaluate a checkpoint per split: AP@0.5:0.95, parameter count and latency per person crop."""
    torch_threads = use_threads(threads)  # before torch is imported
    import torch

    from exlpose_data.atomic import write_json_atomic

    from .checkpoint import load_model_and_origin
    from .config import FLIP_TESTS
    from .engine import evaluate_split, measure_latency
    from .inputs import inference_settings
    from .results import result_folder
    from .splits import resolve_split, split_detections

    choose(protocol, PROTOCOLS, "--protocol")
    if flip_test is not None:
        choose(flip_test, FLIP_TESTS, "--flip-test")
    _check_test_settings(crop, decode, input_scale)
    check_device(device)
    names = [s.strip() for s in splits.split(",") if s.strip()]
    if not names:
        raise UsageError("--splits is empty")
    plan = [(split, *resolve_split(dataset, annotations, split)) for split in names]  # every file before any inference
    err_console.out(torch_threads.describe())
    dev = torch.device(device)
    net, cfg, origin = load_model_and_origin(checkpoint, dev)
    chosen = inference_settings(cfg, origin, crop=crop, flip_test=flip_test, decode=decode, input_scale=input_scale)
    flip = chosen.flip_test
    with contextlib.ExitStack() as stack:
        folder = None
        if save_predictions is not None:
            settings = {"splits": names, "boxes": boxes is not None, "protocol": protocol, **chosen.as_dict()}
            folder, recorded = stack.enter_context(result_folder(
                save_predictions, command="exlpose-eval model", produces="evaluation folder", settings=settings,
                inputs={"checkpoint": checkpoint, "dataset": dataset, "boxes": boxes}, read=[annotations, *(a for _, a, _ in plan)],
                files=[*(f"predictions_{s}.json" for s in names), "evaluation.json"], overwrite=overwrite, option="--save-predictions"))
        rows: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp, progress_bar(transient=True, disable=as_json) as progress:
            for split, ann, condition in plan:
                dets = split_detections(boxes, ann, Path(tmp), split) if boxes is not None else None
                task = progress.add_task(split, total=None)
                metrics, results = evaluate_split(
                    net, cfg, dataset, ann, condition, dev, detections=dets, batch_size=batch_size, workers=workers, flip_test=flip,
                    protocol=protocol, settings=chosen, on_start=lambda n, t=task: progress.update(t, total=n),
                    on_batch=lambda n, t=task: progress.update(t, advance=n))
                rows[split] = metrics.AP
                if folder is not None:
                    write_json_atomic(folder / f"predictions_{split}.json", results)
                    recorded.own(f"predictions_{split}.json")
        latency = measure_latency(net, cfg.input_size, "ll", dev, flip_test=flip)
        params = sum(p.numel() for p in net.parameters())
        table = {"AP": rows, "params": params, "params_m": round(params / 1e6, 2), "latency_ms": round(1000 * latency, 2),
                 "variant": cfg.variant, "protocol": protocol, "boxes": "detections" if boxes else "ground truth", **chosen.as_dict(),
                 "heatmap_convention": cfg.heatmap_convention}
        if folder is not None:
            write_json_atomic(folder / "evaluation.json", table)
            recorded.own("evaluation.json")
    if as_json:
        typer.echo(json.dumps(table))
        return
    header = " | ".join(f"{s:>6}" for s in rows) + " | params | ms/crop"
    values = " | ".join(f"{100 * v:6.1f}" for v in rows.values()) + f" | {params / 1e6:5.2f}M | {1000 * latency:7.1f}"
    out_console.print(f"{checkpoint.name} ({cfg.variant}, {chosen.origin} checkpoint, {protocol} protocol, {table['boxes']} boxes, {chosen.describe()}, AP@0.5:0.95)")
    out_console.print(header)
    out_console.print(values)
    err_console.print(f"latency: batch 1 on {device}{', with flip test' if flip != 'none' else ''}", markup=False)


def _register_comparisons() -> None:
    # exlpose-eval gaps and table live in their own command module (baselines.compare_cli).
    from .compare_cli import register

    register(eval_app)


_register_comparisons()


@predict_app.command()
@handle_errors
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pth written by exlpose-train, or MODEL.onnx written by `exlpose export onnx`")],
    images: Annotated[list[Path], typer.Argument(help="images to run on")],
    boxes: Annotated[Path | None, typer.Option(help='JSON {"image.png": [[x, y, w, h(, score)], ...]}; default: whole image')] = None,
    detector: Annotated[str | None, typer.Option(help="find the people with a person detector instead of --boxes: DET.pth (exlpose-detect train) or onnx:MODEL.onnx")] = None,
    min_box_score: Annotated[float | None, typer.Option(help="with --detector: keep boxes scoring at least this (default 0.3)", parser=finite_number)] = None,
    out: Annotated[Path, typer.Option(help="folder for keypoints.json and <image>_pose.png overlays")] = Path("predictions"),
    condition: Annotated[str, typer.Option(help="LL (low-light scaling, LL branch) or WL")] = "LL",
    flip_test: Annotated[str | None, typer.Option(help="ours | official | none; default: the checkpoint's (official for an imported authors' checkpoint)")] = None,
    crop: Annotated[str | None, typer.Option(help=CROP_HELP)] = None,
    decode: Annotated[str | None, typer.Option(help=DECODE_HELP)] = None,
    input_scale: Annotated[str | None, typer.Option(help=INPUT_SCALE_HELP)] = None,
    overlays: Annotated[bool, typer.Option("--overlays/--no-overlays", help="write overlay PNGs")] = True,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "cpu",
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the --out folder of an earlier prediction with other settings or images")] = False,
) -> None:
    """Predict keypoints of the people in IMAGES (in --boxes, in the boxes of --detector, or each whole image) with
    a checkpoint or an ONNX pose model; write OUT/keypoints.json and overlay PNGs.

    OUT is new or empty, or a folder this command wrote with the same settings and images (rewritten); never an
    input's folder."""
    torch_threads = use_threads(threads)  # before torch is imported
    from .config import FLIP_TESTS
    from .predict import DEFAULT_MIN_BOX_SCORE, load_boxes, predict_to_folder

    if flip_test is not None:
        choose(flip_test, FLIP_TESTS, "--flip-test")
    _check_test_settings(crop, decode, input_scale)
    check_device(device)
    if detector is not None and boxes is not None:
        raise UsageError("--detector and --boxes exclude each other: give one")
    err_console.out(torch_threads.describe())
    records = predict_to_folder(checkpoint, images, out, boxes=load_boxes(boxes) if boxes is not None else None, boxes_file=boxes,
                                condition=condition, flip_test=flip_test, crop=crop, decode=decode, input_scale=input_scale, overlays=overlays,
                                device=device, overwrite=overwrite, notify=lambda line: err_console.print(line, markup=False, soft_wrap=True),
                                detector=detector, min_box_score=min_box_score)
    err_console.print(f"{len(records)} people in {len(images)} images -> {out / 'keypoints.json'}", markup=False)
    if detector is not None and not records:
        err_console.print(f"hint: no box of {detector} scored {min_box_score if min_box_score is not None else DEFAULT_MIN_BOX_SCORE:g} or more; "
                          "a lower --min-box-score keeps weaker ones", markup=False, soft_wrap=True)



# console scripts and ``python -m baselines.cli TOOL``: tool name -> (app, program name)
TOOLS = {"train": (train_app, "exlpose-train"), "eval": (eval_app, "exlpose-eval"), "predict": (predict_app, "exlpose-predict")}


def train_main() -> None:
    """Console-script entry point (``exlpose-train``)."""
    train_app(prog_name="exlpose-train")


def eval_main() -> None:
    """Console-script entry point (``exlpose-eval``)."""
    eval_app(prog_name="exlpose-eval")


def predict_main() -> None:
    """Console-script entry point (``exlpose-predict``)."""
    predict_app(prog_name="exlpose-predict")


def _module_main(argv: list[str]) -> None:
    if not argv or argv[0] not in TOOLS:
        err_console.print(f"usage: python -m baselines.cli {{{','.join(TOOLS)}}} [OPTIONS]", markup=False)
        sys.exit(2)
    app, prog = TOOLS[argv[0]]
    app(args=argv[1:], prog_name=prog)


if __name__ == "__main__":
    _module_main(sys.argv[1:])
