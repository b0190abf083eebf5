"""``exlpose demo --out DIR [--quick]``: simulate -> capture on emulated cameras -> align -> annotate -> split ->
stats -> pack -> train two models -> evaluate -> report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from exlpose_data.cli.common import err_console, handle_errors, new_app
from exlpose_data.outputs import building_folder, check_output
from exlpose_data.provenance import recorded_run
from exlpose_data.threads import check_threads
from exlpose_data.naming import ANNOTATION_PREFIX, annotation_file_name

from .pipeline import FULL, QUICK, DemoSettings, Runner, read_json

app = new_app("Run the whole pipeline end to end on the emulated rig and write a report.")

EMULATOR_ENV = {"PYLON_CAMEMU": "2"}
MODELS = ("baseline-all", "lsbn-lupi")
SPLITS = ("LL-N", "LL-H", "LL-E", "LL-A", "WL")
NO_TEST_IMAGES = "no test images"


@app.command()
@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo makes (must be new or empty).")],
    quick: Annotated[bool, typer.Option("--quick", help="A smoke run: small frames, two scenes, 12 training steps (under a minute).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulation and the training.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier demo folder at --out: the new run is built beside it and swapped in when it succeeds.")] = False,
    threads: Annotated[int | None, typer.Option(help="torch intra-op threads of the training and evaluation commands, passed on to each (0 or absent: each chooses from the CPUs allowed and the load)")] = None,
) -> None:
    """The whole toolkit on realistic synthetic data: simulated scenes recorded on pylon's camera emulator,
    aligned, annotated through the CVAT importer, split, packed, used to train baseline-all and lsbn-lupi, and
    evaluated per split. Leaves report.html / report.md with PNGs in OUT."""
    requested = check_threads(threads)
    torch_threads = [] if requested is None else ["--threads", str(requested)]
    check_output(out, writes="folder", produces="demo folder", replaces=["demo folder"], overwrite=overwrite)
    settings = QUICK if quick else FULL
    settings = DemoSettings(**{**settings.__dict__, "seed": seed})
    with building_folder(out, overwrite=overwrite) as build, recorded_run(
        build, "demo", command="exlpose demo", settings={**settings.__dict__, "quick": quick}, inputs={}
    ):
        runner = Runner(build, echo=lambda m: err_console.print(m, markup=False))
        try:
            results = _run(runner, settings, quick, torch_threads)
        finally:
            _write_partial_stages(runner)
    err_console.print(f"report: {out / 'report.html'} (and report.md)", markup=False)
    typer.echo(json.dumps(results["ap"]))


def _write_partial_stages(runner: Runner) -> None:
    from exlpose_data.atomic import write_json_atomic

    write_json_atomic(runner.out / "stages.json", runner.stages, indent=1)


def _run(runner: Runner, s: DemoSettings, quick: bool, torch_threads: list[str]) -> dict[str, Any]:
    """Every stage; ``torch_threads`` (``--threads N`` or nothing) goes to each command that runs torch."""
    out = runner.out
    feeds = out / "feeds"
    sessions = out / "sessions"
    aligns = out / "align"
    root = out / "dataset"
    sessions.mkdir(exist_ok=True)
    aligns.mkdir(exist_ok=True)

    runner.stage("simulate", lambda: runner.command("simulate", [
        "simulate", "feeds", "--out", str(feeds), "--scenes", str(s.scenes), "--size", s.size,
        "--frames", str(s.frames), "--seed", str(s.seed)]))
    truth = read_json(feeds / "feeds.json")

    def capture() -> None:
        for scene in truth["scenes"]:
            session = sessions / f"{scene['scene']}.h5"
            ref = scene["reference"]
            runner.command("capture", [
                "capture", "reference", "--emulate", "--feeds", str(feeds), "--feed-scene", scene["scene"], "--name", "reference",
                "--exposure-us", str(ref["wl_exposure_us"]), "--ll-exposure-us", str(ref["ll_exposure_us"]),
                "--gain-db", str(ref["wl_gain_db"]), "--ll-gain-db", str(ref["ll_gain_db"]), "--frames", "1", "--out", str(session)],
                env=EMULATOR_ENV)
            runner.command("capture", [
                "capture", "record", "--emulate", "--feeds", str(feeds), "--scene", scene["scene"],
                "--k", ",".join(_k_text(st["k"]) for st in scene["steps"]),
                "--exposure-us", str(scene["base_exposure_us"]), "--gain-db", str(scene["base_gain_db"]),
                "--frames", str(len(scene["frames"])), "--date", scene["date"], "--site", scene["site"],
                "--video-id", str(scene["video"]), "--out", str(session)], env=EMULATOR_ENV)

    runner.stage("capture", capture)

    crops: dict[str, list[int]] = {}
    checks: dict[str, Any] = {}

    def align() -> None:
        for scene in truth["scenes"]:
            name = scene["scene"]
            session, model = sessions / f"{name}.h5", aligns / f"{name}.json"
            runner.command("align", ["align", "estimate", str(session), "--out", str(model)])
            checks[name] = json.loads(runner.command("align", [
                "align", "check", str(model), str(session), "--plots", str(aligns / f"{name}_plots"), "--json"], capture=True))
            runner.command("align", ["align", "apply", str(session), str(model), "--out", str(root), "--frames", "all", "--quiet"])
            crops[name] = read_json(model)["crop"]

    runner.stage("align", align)

    def annotate() -> None:
        from exlpose_data.release import open_release
        from exlpose_data.session_format import SessionReader

        from .groundtruth import truth_document, write_cvat

        meta = {}
        for scene in truth["scenes"]:
            with SessionReader(sessions / f"{scene['scene']}.h5") as reader:
                meta[scene["scene"]] = reader.scene_meta(scene["scene"])
        doc = truth_document(truth, crops, open_release(root), meta)
        write_cvat(doc, out / "cvat_export.json")
        runner.command("annotate", ["annotate", "import", str(out / "cvat_export.json"), "--format", "cvat",
                                    "--dataset", str(root), "--out", str(root / "annotations"), "--split-name", "all",
                                    # the simulator's truth: a frame without people has nobody in it
                                    "--allow-empty"])

    runner.stage("annotate", annotate)

    ann = root / "annotations"

    def split() -> None:
        runner.command("split", ["split", "by-scene", str(ann / annotation_file_name("all", "WL")), "--out", str(ann),
                                 "--test-fraction", str(s.test_fraction), "--seed", str(s.seed), "--pairs", str(root)])
        # by-gain reads the LL test file: its WL output (<prefix>_WL.json) would otherwise be the very file it reads
        runner.command("split", ["split", "by-gain", str(ann / annotation_file_name("test", "LL")), "--out", str(ann),
                                 "--prefix", f"{ANNOTATION_PREFIX}_test", "--pairs", str(root)])

    runner.stage("split", split)
    stats = runner.stage("stats", lambda: json.loads(runner.command("stats", ["stats", str(root), "--json"], capture=True)))
    runner.stage("pack", lambda: runner.command("pack", ["pack", str(root), "--out", str(out / "pack.h5")]))

    train_root, pack = root, ["--pack", str(out / "pack.h5")]
    if s.train_scenes:
        train_root, pack = out / "training-scenes", []
        runner.stage("simulate training scenes", lambda: runner.command("simulate", [
            "simulate", "release", "--out", str(train_root), "--scenes", str(s.train_scenes), "--size", s.size, "--frames", "1",
            "--seed", str(s.seed + 1), "--test-fraction", "0", "--quiet"]))

    def train() -> dict[str, Any]:
        records = {}
        for variant in MODELS:
            runner.command("train", [
                "train", "--variant", variant, "--dataset", str(train_root), *pack,
                "--output-dir", str(out / "train" / variant), "--backbone", s.backbone, "--input-size", s.input_size,
                "--heatmap-size", s.heatmap_size, "--epochs", str(s.epochs), "--steps-per-epoch", str(s.steps_per_epoch),
                "--batch-size", str(s.batch_size), "--lr", str(s.lr), "--workers", "0", "--seed", str(s.seed), "--val-splits", "",
                "--deterministic", "--from-scratch", *(["--channels-last"] if s.channels_last else []), *torch_threads])
            records[variant] = read_json(out / "train" / variant / "metrics.json")
        return records

    history = runner.stage("train", train)

    def evaluate() -> dict[str, Any]:
        splits = _nonempty_splits(ann)
        table = {}
        for variant in MODELS:
            table[variant] = json.loads(runner.command("eval", [
                "eval", "model", str(out / "train" / variant / "checkpoint.pth"), "--dataset", str(root),
                "--splits", ",".join(splits), "--workers", "0", "--json", *torch_threads], capture=True))
        return table

    ap = runner.stage("evaluate", evaluate)
    results = runner.stage("report", lambda: _report(out, truth, crops, checks, stats, history, ap, sessions, root, runner, quick, s))
    return results


def _k_text(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k)


def _nonempty_splits(ann: Path) -> list[str]:
    splits = []
    for split in SPLITS:
        f = ann / annotation_file_name("test", split)
        if f.is_file() and read_json(f)["annotations"]:
            splits.append(split)
    return splits


def _report(out: Path, truth: dict, crops: dict, checks: dict, stats: dict, history: dict, ap: dict, sessions: Path,
            root: Path, runner: Runner, quick: bool, s: DemoSettings) -> dict[str, Any]:
    from exlpose_data.align.estimate import corner_error
    from exlpose_data.session_format import summarise

    from .report import plot_curves, write_report

    sections: list[dict[str, Any]] = []
    ladder = []
    for scene in truth["scenes"]:
        recorded = summarise(sessions / f"{scene['scene']}.h5")["scenes"][scene["scene"]]["steps"]
        for step, st in recorded.items():
            ladder.append({
                "scene": scene["scene"], "k": step, "R": st["ratio"], "exposure_us": st["nominal_exposure_us"],
                "WL gain planned": st["planned_wl_gain_db"], "WL gain read back": _read_back(st["wl_gain_db"]),
                "LL gain read back": _read_back(st["ll_gain_db"]), "exposure read back": _read_back(st["exposure_us"]),
                "pairs kept": st["pairs"], "dropped": _dropped(st["dropped"]),
            })
    sections.append({"title": "Capture ladder as recorded", "table": ladder,
                     "text": "Both emulated cameras at the same exposure; the WL gain rises by 20 log10(k), the LL gain stays. "
                             "Values read back from the cameras per pair (the emulator applies settings but does not model their effect on pixels)."})
    align_rows = []
    for scene in truth["scenes"]:
        name = scene["scene"]
        model = read_json(out / "align" / f"{name}.json")
        size = tuple(scene["geometry"]["size"])
        err = corner_error(np.asarray(model["homography"]), np.asarray(scene["geometry"]["homography"]), size)
        chk = checks.get(name, {})
        align_rows.append({"scene": name, "corner error vs truth (px)": err, "crop": str(crops.get(name)),
                           "held-out residual median (px)": chk.get("heldout_median_px"), "held-out residual p95 (px)": chk.get("heldout_p95_px"),
                           "PSNR (dB)": chk.get("psnr_db"), "SSIM": chk.get("ssim")})
    sections.append({"title": "Alignment against the simulator's true homography", "table": align_rows})

    samples = _sample_pairs(out, root, runner)
    sections.append({"title": "Sample pairs (WL | LL brightened, ground truth skeletons)", "images": samples})
    d = stats["dataset"]
    sections.append({"title": "Dataset statistics", "table": [{
        "scenes": d["scenes"], "pairs": d["pairs"], "mean LL": d["mean_intensity_ll"], "mean WL": d["mean_intensity_wl"],
        **{f"R={r}": n for r, n in d["per_ratio"].items()}}]})
    sections.append({"title": "Annotation files", "table": [
        {"file": k, "scenes": v["scenes"], "images": v["images"], "instances": v["instances"],
         "mean LL": v.get("mean_intensity_ll"), "mean WL": v.get("mean_intensity_wl")} for k, v in stats["annotation_files"].items()]})
    series = {variant: [float(r.get("loss", r.get("loss/total", np.nan))) for r in recs] for variant, recs in history.items()}
    plot_curves(series, out / "training_loss.png", title="mean training loss per epoch (peak-255 heatmaps)", x_label="epoch")
    sections.append({"title": "Training curves", "images": ["training_loss.png"]})
    ap_rows = []
    for variant, table in ap.items():
        row: dict[str, Any] = {"model": variant}
        for split in SPLITS:
            row[split] = table["AP"].get(split, NO_TEST_IMAGES)
        ap_rows.append(row)
    steps = s.epochs * s.steps_per_epoch
    text = (f"A smoke run: {steps} training steps from scratch on a handful of tiny synthetic images, to show that every stage "
            "runs; near-zero AP is expected here." if quick else
            f"{steps} training steps of {s.batch_size} pairs from scratch (no ImageNet weights), ResNet-18 at {s.input_size}, on "
            + (f"{s.train_scenes} further scenes the simulator wrote straight into the release layout (training-scenes/); evaluated on "
               "the captured, aligned and imported held-out scenes. " if s.train_scenes else "the captured training scenes; evaluated on the held-out scenes. ")
            + "A short run on synthetic data: it shows that the trainer learns, not how well the method does on ExLPose.")
    if any(v == NO_TEST_IMAGES for r in ap_rows for v in r.values()):
        text += (f" '{NO_TEST_IMAGES}': none of the held-out images falls in that split's gain range in this run "
                 "(the simulator draws each scene's gains at random), so it has no AP.")
    sections.append({"title": "AP@0.5:0.95 per split (CrowdPose protocol, GT boxes)", "table": ap_rows, "text": text})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    sections.append({"title": "Models", "table": [
        {"model": v, "parameters (M)": t["params_m"], "latency per crop (ms)": t["latency_ms"], "protocol": t["protocol"]} for v, t in ap.items()],
        "text": "Latency: one person crop, batch 1, on this machine's CPU while the demo ran"
                + (f" (load average {load:.1f} when the report was written)" if load is not None else "")
                + ": other stages and processes shared the cores, so it is an upper bound, not a benchmark "
                  "(benchmarks/ measures speed on an idle machine, against a baseline in the same run)."})
    results = {"title": f"exlpose demo ({'quick' if quick else 'full'})", "sections": sections, "stages": runner.stages,
               "ap": {r["model"]: {k: (None if v == NO_TEST_IMAGES else v) for k, v in r.items() if k != "model"} for r in ap_rows}}
    write_report(out, results)
    return results


def _read_back(value: float) -> float | None:
    """A read-back mean for the report: None (an empty cell) for a step that kept no pair."""
    return None if np.isnan(value) else value


def _dropped(value: Any) -> str:
    """The rig's per-reason drop counts (a JSON object) as text."""
    counts = json.loads(value) if isinstance(value, str) else dict(value or {})
    return ", ".join(f"{reason}: {n}" for reason, n in counts.items()) or "none"


def _sample_pairs(out: Path, root: Path, runner: Runner, count: int = 3) -> list[str]:
    review = out / "review"
    runner.command("report", ["annotate", "review", str(root), "--out", str(review)])
    tiles = sorted((review / "pairs").glob("*.png"))
    picked = [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, min(count, len(tiles)))] if tiles else []
    names: list[dict[str, str]] = []
    for t in picked:
        path = f"sample_{len(names)}.png"
        shutil.copyfile(t, out / path)
        names.append({"path": path, "caption": sample_caption(t.stem)})
    return names


def sample_caption(stem: str) -> str:
    """What a review tile shows, from the release name of its well-lit image."""
    from exlpose_data.naming import parse_name

    try:
        n = parse_name(f"bright/{stem}.png")
    except ValueError:
        return f"{stem}: well-lit image (left), low-light twin brightened for display (right), ground-truth skeletons"
    site = f" {n.site}" if n.site else ""
    return (f"scene {n.date}{site} video {n.video}, frame {n.frame}: R = {n.ratio} (exposure cut k = {n.ratio / 100:g} behind "
            f"the 1% ND filter), exposure {n.exposure_us} us, WL gain {n.gain_db:.2f} dB. Left: the well-lit image; right: its "
            "low-light twin, brightened for display only; ground-truth skeletons on both")
