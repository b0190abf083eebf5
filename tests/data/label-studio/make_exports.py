"""Make the Label Studio exports in this folder with a real Label Studio server (not run by the test suite).

It labels a small simulated release through Label Studio's REST API from the release's own ground truth, the
way an annotator's clicks end up in Label Studio's database, then downloads every export format the server
offers. README.md beside this file gives the commands that started the server and ran this script.

Projects it makes (each one export set, files named ``<project>/<format>.<ext>``):

- ``ours``: the labelling config ``exlpose annotate tasks`` writes. Tasks 1-3 link every joint to its box by
  ``parentID`` only (what the editor records when a joint is placed with its box selected), tasks 4-6 by a
  relation only, task 7 by both; in task 8 one person's joints that lie in its own box alone carry no link
  (geometry decides). Occluded joints (v = 1) carry the per-region ``occluded`` choice. Task 9 is skipped
  (an annotation with ``was_cancelled``), task 10 is left untouched.
- ``no-occlusion``: a config without the occluded choice (people write their own); tasks 1-2 labelled with
  ``parentID``, so every joint reads as visible.

Usage: ``python make_exports.py --release /tmp/lsrel --tasks /tmp/lstasks --out DIR`` with
``LABEL_STUDIO_URL`` (default http://127.0.0.1:8089) and ``LABEL_STUDIO_USER_TOKEN`` set. Only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

JOINTS = [
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
]


class Api:
    """A few REST calls with a token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, body: object | None = None) -> object:
        status, _, payload = self.call(method, path, body)
        if status >= 300:
            sys.exit(f"{method} {path}: HTTP {status}: {payload[:500]!r}")
        return json.loads(payload) if payload else None


def ground_truth(release: Path) -> dict[str, tuple[dict, list[dict]]]:
    """bright file name -> (image record, its people) from the release's WL files."""
    out: dict[str, tuple[dict, list[dict]]] = {}
    for path in sorted((release / "annotations").glob("ExLPose_*_WL.json")):
        doc = json.loads(path.read_text())
        people: dict[int, list[dict]] = {}
        for a in doc["annotations"]:
            people.setdefault(a["image_id"], []).append(a)
        for im in doc["images"]:
            out[im["file_name"].rsplit("/", 1)[-1]] = (im, people.get(im["id"], []))
    return out


def _inside(box: list[float], x: float, y: float) -> bool:
    return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


def results(image: dict, people: list[dict], task_no: int, *, occlusion: bool, link: str) -> list[dict]:
    """The results an annotator's clicks leave in Label Studio for ``people`` (link: parent, relation, both, geometry)."""
    w, h = image["width"], image["height"]
    out: list[dict] = []

    def region(rid: str, kind: str, from_name: str, value: dict) -> dict:
        return {"id": rid, "type": kind, "from_name": from_name, "to_name": "image", "original_width": w,
                "original_height": h, "image_rotation": 0, "value": value, "origin": "manual"}

    boxes = [p["bbox"] for p in people]
    for p, person in enumerate(people):
        box_id = f"t{task_no}p{p}box"
        x, y, bw, bh = person["bbox"]
        out.append(region(box_id, "rectanglelabels", "person",
                          {"x": x / w * 100, "y": y / h * 100, "width": bw / w * 100, "height": bh / h * 100, "rotation": 0, "rectanglelabels": ["person"]}))
        for j, name in enumerate(JOINTS):
            kx, ky, v = person["keypoints"][3 * j : 3 * j + 3]
            if v <= 0:
                continue
            kp_id = f"t{task_no}p{p}j{j}"
            point = {"x": kx / w * 100, "y": ky / h * 100, "width": 0.6}
            kp = region(kp_id, "keypointlabels", "joints", {**point, "keypointlabels": [name]})
            # geometry: only the first person, and only joints its own box alone contains (so the import can decide)
            unlinked = link == "geometry" and p == 0 and sum(_inside(b, kx, ky) for b in boxes) == 1 and _inside(boxes[0], kx, ky)
            if link in ("parent", "both") or (link == "geometry" and not unlinked):
                kp["parentID"] = box_id
            out.append(kp)
            if v == 1 and occlusion:
                out.append(region(kp_id, "choices", "occlusion", {**point, "choices": ["occluded"]}))
            if link in ("relation", "both"):
                out.append({"type": "relation", "from_id": kp_id, "to_id": box_id, "direction": "right", "labels": ["part_of"]})
    return out


def make_project(api: Api, title: str, config: str, tasks: list[dict], storage_root: Path) -> tuple[int, list[dict]]:
    project = api.json("POST", "/api/projects", {"title": title, "label_config": config})
    pid = project["id"]
    api.json("POST", "/api/storages/localfiles", {"project": pid, "title": "images", "path": str(storage_root), "use_blob_urls": False})
    api.json("POST", f"/api/projects/{pid}/import", tasks)
    listed = api.json("GET", f"/api/tasks?project={pid}&page_size=1000")
    listed = listed["tasks"] if isinstance(listed, dict) else listed
    return pid, sorted(listed, key=lambda t: t["id"])


def export_all(api: Api, pid: int, out: Path) -> dict[str, str]:
    """Every format the project offers, as downloaded; {format: file name or the failure}."""
    out.mkdir(parents=True, exist_ok=True)
    formats = api.json("GET", f"/api/projects/{pid}/export/formats")
    done: dict[str, str] = {}
    for fmt in formats:
        name = fmt["name"]
        status, headers, payload = api.call("GET", f"/api/projects/{pid}/export?exportType={name}&download_all_tasks=true")
        if status >= 300:
            done[name] = f"HTTP {status}: {payload[:300].decode(errors='replace')}"
            continue
        disposition = headers.get("Content-Disposition", "")
        m = re.search(r'filename="?([^";]+)', disposition)
        ext = m[1].rsplit(".", 1)[-1] if m and "." in m[1] else "bin"
        (out / f"{name}.{ext}").write_bytes(payload)
        done[name] = f"{name}.{ext} ({len(payload)} bytes)"
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--release", type=Path, required=True)
    ap.add_argument("--tasks", type=Path, required=True, help="the folder 'exlpose annotate tasks' wrote")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    api = Api(os.environ.get("LABEL_STUDIO_URL", "http://127.0.0.1:8089"), os.environ["LABEL_STUDIO_USER_TOKEN"])
    truth = ground_truth(args.release)
    config = (args.tasks / "label_studio_config.xml").read_text()
    tasks = json.loads((args.tasks / "label_studio_tasks.json").read_text())
    report: dict[str, dict] = {}

    pid, listed = make_project(api, "exlpose ours", config, tasks, args.tasks / "images")
    links = {1: "parent", 2: "parent", 3: "parent", 4: "relation", 5: "relation", 6: "relation", 7: "both", 8: "geometry"}
    for no, task in enumerate(listed, start=1):
        image, people = truth[task["data"]["image"].rsplit("/", 1)[-1]]
        if no in links:
            api.json("POST", f"/api/tasks/{task['id']}/annotations/", {"result": results(image, people, no, occlusion=True, link=links[no]), "was_cancelled": False})
        elif no == 9:
            api.json("POST", f"/api/tasks/{task['id']}/annotations/", {"result": [], "was_cancelled": True})
    report["ours"] = export_all(api, pid, args.out / "ours")

    plain = re.sub(r"\s*<Choices name=\"occlusion\".*?</Choices>", "", config, flags=re.S)
    pid, listed = make_project(api, "exlpose no-occlusion", plain, tasks[:2], args.tasks / "images")
    for no, task in enumerate(listed, start=1):
        image, people = truth[task["data"]["image"].rsplit("/", 1)[-1]]
        api.json("POST", f"/api/tasks/{task['id']}/annotations/", {"result": results(image, people, no, occlusion=False, link="parent"), "was_cancelled": False})
    report["no-occlusion"] = export_all(api, pid, args.out / "no-occlusion")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
