"""The HDF5 capture-session format: paths, attribute names and a reader.

The rig writes sessions (``rig.session``); alignment and export read them through :class:`SessionReader`,
so this module is the one description of the format::

    /                                   attrs: rig_config (JSON), software_version, created (ISO 8601)
    /reference/<name>/ll, .../wl        (n, H, W) raw frames of a static reference pair
    /scenes/<scene>                     attrs: date_mmdd, site, video_id, base_exposure_us, base_gain_db,
                                               ll_gain_db, k_list (JSON), nd_factor
    /scenes/<scene>/steps/<k>/ll, .../wl   (n, H, W) uint16 raw (LSB-aligned) or (n, H, W, 3); one frame per chunk
    /scenes/<scene>/steps/<k>/frames    compound table, one row per kept pair (FRAME_DTYPE)

Frame datasets carry attrs pixel_format, bayer_pattern (after any ReverseX), bit_depth, black_level,
mirrored_x (whether the frame was mirrored on the camera). A packed pixel format (``BayerRG12p``) is stored as
the camera's bytes, (n, H, W*3/2) uint8, and unpacked on read (``exlpose_data.packed12``). Step groups carry k, ratio, exposure_us,
nominal_exposure_us, wl_gain_db, ll_gain_db (planned values; the values read back are in ``frames``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .jsonio import loads_json
from .packed12 import is_packed, unpack_12p

__all__ = ["normalise_bayer_pattern", "FRAME_DTYPE", "SCENES", "REFERENCE", "STEPS", "SessionReader", "FrameAttrs", "step_path", "reference_path",
           "summarise", "is_lock_error", "in_use_by"]

SCENES = "scenes"
REFERENCE = "reference"
STEPS = "steps"
LL = "ll"
WL = "wl"
FRAMES = "frames"

FRAME_DTYPE = np.dtype(
    [
        ("index", np.int64),
        ("host_time_ns", np.int64),
        ("ll_block_id", np.int64),
        ("wl_block_id", np.int64),
        ("ll_timestamp_ns", np.int64),
        ("wl_timestamp_ns", np.int64),
        ("ll_exposure_us", np.float64),
        ("wl_exposure_us", np.float64),
        ("ll_gain_db", np.float64),
        ("wl_gain_db", np.float64),
    ]
)

SCENE_ATTRS = ("date_mmdd", "site", "video_id", "base_exposure_us", "base_gain_db", "ll_gain_db", "k_list")
FRAME_ATTRS = ("pixel_format", "bayer_pattern", "bit_depth", "black_level")


def step_path(scene: str, step: str) -> str:
    return f"/{SCENES}/{scene}/{STEPS}/{step}"


def reference_path(name: str) -> str:
    return f"/{REFERENCE}/{name}"


@dataclass(frozen=True)
class FrameAttrs:
    """How to interpret the frames of one dataset."""

    pixel_format: str
    bayer_pattern: str | None
    bit_depth: int
    black_level: float
    mirrored_x: bool = False

    @classmethod
    def from_h5(cls, attrs: Any) -> "FrameAttrs":
        pattern = normalise_bayer_pattern(_text(attrs.get("bayer_pattern", "")))
        fmt = attrs.get("pixel_format", "")
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        return cls(
            pixel_format=fmt,
            bayer_pattern=pattern or None,
            bit_depth=int(attrs.get("bit_depth", 8)),
            black_level=float(attrs.get("black_level", 0.0)),
            mirrored_x=bool(attrs.get("mirrored_x", False)),
        )


_PYLON_PATTERNS = {"RG": "RGGB", "BG": "BGGR", "GR": "GRBG", "GB": "GBRG"}


def normalise_bayer_pattern(pattern: str) -> str:
    """The four-letter Bayer pattern (``RGGB``) of pylon's two-letter name (``RG``, as in ``BayerRG12``) or itself."""
    p = pattern.strip().upper()
    return _PYLON_PATTERNS.get(p, p)


def _samples(dataset: Any, stored: np.ndarray) -> np.ndarray:
    """Frames as samples: packed 12-bit formats (stored as the camera's bytes) unpacked, others as stored."""
    return unpack_12p(stored) if is_packed(_text(dataset.attrs.get("pixel_format", ""))) else stored


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def is_lock_error(exc: OSError) -> bool:
    """Whether h5py failed to open a file because another process holds its HDF5 file lock."""
    return isinstance(exc, BlockingIOError) or "unable to lock file" in str(exc)


def _command_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _pids_with_open(path: Path) -> list[int]:
    """Processes whose open file descriptors point at ``path`` (those this user may look into)."""
    target = os.path.realpath(path)
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:  # another user's process, or gone
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return found


def _pids_locking(path: Path) -> list[int]:
    """Processes holding a lock on ``path`` according to ``/proc/locks`` (readable for every user's locks)."""
    try:
        st = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 7025 fe:00:2149771 0 EOF" (a blocked waiter has "->" after the number)
        fields = [f for f in fields if f != "->"]
        if len(fields) >= 6 and fields[5] == where and fields[4].lstrip("-").isdigit() and int(fields[4]) > 0:
            pids.append(int(fields[4]))
    return pids


def in_use_by(path: str | Path) -> str:
    """Who holds a session file open: ``in use by process 1234 (python3)`` when it can be found, else
    ``in use by another process``. For the message when h5py cannot lock the file (:func:`is_lock_error`)."""
    p = Path(path)
    own = os.getpid()
    pids = _pids_with_open(p) or _pids_locking(p)
    others = sorted({pid for pid in pids if pid != own}) or sorted(set(pids))
    if not others:
        return "in use by another process"
    named = [f"{pid} ({name})" if (name := _command_name(pid)) else str(pid) for pid in others]
    return f"in use by process{'es' if len(named) > 1 else ''} {', '.join(named)}"


class SessionReader:
    """Read-only access to a session file. Use as a context manager.

    Args:
        path: the ``.h5`` session file.
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such session file")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            if is_lock_error(exc):
                raise InputError(f"{self.path}: {in_use_by(self.path)}; wait for it to finish or close it, then try again") from None
            raise InputError(f"{self.path}: not a readable HDF5 session file ({exc})") from None

    def __enter__(self) -> "SessionReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    @property
    def attrs(self) -> dict[str, Any]:
        return {k: _text(v) if isinstance(v, (bytes, str)) else v for k, v in self._f.attrs.items()}

    @property
    def rig_config(self) -> dict[str, Any]:
        raw = self._f.attrs.get("rig_config")
        return loads_json(_text(raw), f"{self.path}: rig_config attribute") if raw is not None else {}

    def references(self) -> list[str]:
        return sorted(self._f[REFERENCE].keys()) if REFERENCE in self._f else []

    def reference(self, name: str) -> tuple[np.ndarray, np.ndarray, FrameAttrs, FrameAttrs]:
        """All frames of a reference pair: (ll, wl, ll_attrs, wl_attrs)."""
        if name not in self.references():
            raise InputError(f"{self.path}: no reference {name!r}; have {self.references() or 'none'}")
        g = self._f[reference_path(name)]
        return _samples(g[LL], g[LL][()]), _samples(g[WL], g[WL][()]), FrameAttrs.from_h5(g[LL].attrs), FrameAttrs.from_h5(g[WL].attrs)

    def scenes(self) -> list[str]:
        return sorted(self._f[SCENES].keys()) if SCENES in self._f else []

    def scene_meta(self, scene: str) -> dict[str, Any]:
        g = self._scene(scene)
        meta = {k: (_text(v) if isinstance(v, (bytes, str)) else (v.item() if hasattr(v, "item") else v)) for k, v in g.attrs.items()}
        if "k_list" in meta and isinstance(meta["k_list"], str):
            meta["k_list"] = loads_json(meta["k_list"], f"{self.path}: scene {scene!r} k_list attribute")
        return meta

    def steps(self, scene: str) -> list[str]:
        g = self._scene(scene)
        return sorted(g[STEPS].keys(), key=float) if STEPS in g else []

    def step_meta(self, scene: str, step: str) -> dict[str, Any]:
        g = self._step(scene, step)
        return {k: (_text(v) if isinstance(v, (bytes, str)) else (v.item() if hasattr(v, "item") else v)) for k, v in g.attrs.items()}

    def frames_table(self, scene: str, step: str) -> np.ndarray:
        """The per-pair table of a step (structured array of :data:`FRAME_DTYPE`), only rows whose frames exist."""
        g = self._step(scene, step)
        table = g[FRAMES][()] if FRAMES in g else np.zeros(0, FRAME_DTYPE)
        n = min(len(table), g[LL].shape[0], g[WL].shape[0])
        return table[:n]

    def frame_attrs(self, scene: str, step: str) -> tuple[FrameAttrs, FrameAttrs]:
        g = self._step(scene, step)
        return FrameAttrs.from_h5(g[LL].attrs), FrameAttrs.from_h5(g[WL].attrs)

    def pair(self, scene: str, step: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw frames (ll, wl) of pair ``index`` of a step."""
        g = self._step(scene, step)
        n = len(self.frames_table(scene, step))
        if not 0 <= index < n:
            raise InputError(f"{self.path}: scene {scene!r} step {step}: no pair {index} (have {n})")
        return _samples(g[LL], g[LL][index]), _samples(g[WL], g[WL][index])

    def _scene(self, scene: str) -> Any:
        if scene not in self.scenes():
            raise InputError(f"{self.path}: no scene {scene!r}; have {self.scenes() or 'none'}")
        return self._f[f"/{SCENES}/{scene}"]

    def _step(self, scene: str, step: str) -> Any:
        g = self._scene(scene)
        if STEPS not in g or str(step) not in g[STEPS]:
            raise InputError(f"{self.path}: scene {scene!r} has no step {step!r}; have {self.steps(scene)}")
        return g[STEPS][str(step)]


def _mean(column: np.ndarray) -> float:
    return float(np.mean(column)) if len(column) else float("nan")


def summarise(path: str | Path) -> dict[str, Any]:
    """What a session holds, as ``exlpose-capture inspect --json`` prints it.

    Returns:
        ``{"created", "software_version", "references": {name: {"pairs", "shape"}}, "scenes": {scene: {<scene
        attributes but feeds>, "steps": {k: {"pairs", "exposure_us", "ll_gain_db", "wl_gain_db", "dropped",
        "ratio", "nominal_exposure_us", "planned_wl_gain_db"}}}}}``: exposure and gains are the means read back
        per kept pair (NaN for a step without pairs), ``dropped`` the rig's drop counts per reason.
    """
    with SessionReader(path) as reader:
        attrs = reader.attrs
        out: dict[str, Any] = {
            "created": str(attrs.get("created", "?")),
            "software_version": str(attrs.get("software_version", "?")),
            "references": {},
            "scenes": {},
        }
        for name in reader.references():
            ll, _, _, _ = reader.reference(name)
            out["references"][name] = {"pairs": int(ll.shape[0]), "shape": list(ll.shape[1:])}
        for scene in reader.scenes():
            meta = reader.scene_meta(scene)
            steps = {}
            for step in reader.steps(scene):
                table = reader.frames_table(scene, step)
                smeta = reader.step_meta(scene, step)
                steps[step] = {
                    "pairs": int(len(table)),
                    "exposure_us": _mean(table["ll_exposure_us"]),
                    "ll_gain_db": _mean(table["ll_gain_db"]),
                    "wl_gain_db": _mean(table["wl_gain_db"]),
                    "dropped": json.loads(smeta.get("dropped_pairs", "{}")),
                    "ratio": smeta.get("ratio"),
                    "nominal_exposure_us": smeta.get("nominal_exposure_us"),
                    "planned_wl_gain_db": smeta.get("wl_gain_db"),
                }
            out["scenes"][scene] = {k: v for k, v in meta.items() if k != "feeds"} | {"steps": steps}
    return out
