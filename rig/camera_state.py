"""A defined camera state: the user set loaded at open, every pixel-changing feature set explicitly and recorded.

A dart keeps whatever the last program set until it is power-cycled or a user set is loaded (a camera "in the
field" carries BalanceWhiteAuto Continuous, a light-source preset, ...). So at open the rig loads a user set
(``Default`` unless the config names another), then its ``.pfs`` if any, then sets every feature that changes
pixels to the config's value; those values are read back and stored with each step. Features a camera lacks (the
emulator lacks most) are skipped and recorded as absent.

The two cameras are compared through their full persisted settings (``.pfs``), so a difference no one thought of
still shows; differences the protocol makes (mirroring, trigger roles) are labelled as expected.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exlpose_data.errors import UsageError

__all__ = ["PIXEL_FEATURES", "apply_pixel_state", "load_user_set", "read_pixel_state", "Difference", "compare_settings"]

# (feature, selector feature, selector value, config attribute) in the order they must be set: auto white
# balance and the light-source preset first, since both overwrite the balance ratios.
PIXEL_FEATURES: tuple[tuple[str, str | None, str | None, str], ...] = (
    ("BalanceWhiteAuto", None, None, "balance_white_auto"),
    ("BslLightSourcePreset", None, None, "light_source_preset"),
    ("BalanceRatio", "BalanceRatioSelector", "Red", "balance_ratio_red"),
    ("BalanceRatio", "BalanceRatioSelector", "Green", "balance_ratio_green"),
    ("BalanceRatio", "BalanceRatioSelector", "Blue", "balance_ratio_blue"),
    ("Gamma", None, None, "gamma"),
    ("DigitalShift", None, None, "digital_shift"),
    ("BlackLevel", None, None, "black_level"),
    ("BslColorSpace", None, None, "color_space"),
    ("BslDefectPixelCorrectionMode", None, None, "defect_pixel_correction"),
    ("BslNoiseReduction", None, None, "noise_reduction"),
    ("BslSharpnessEnhancement", None, None, "sharpness_enhancement"),
    ("TestPattern", None, None, "test_pattern"),
    ("ExposureMode", None, None, "exposure_mode"),
    ("TriggerDelay", "TriggerSelector", "FrameStart", "trigger_delay_us"),
)


def load_user_set(cam: Any, name: str | None) -> str:
    """Load user set ``name`` (``UserSetSelector`` + ``UserSetLoad``); returns what was loaded, "" when nothing.

    Raises:
        UsageError: the camera has user sets but not this one (the message lists them).
    """
    if name is None or not cam.has("UserSetLoad"):
        return ""
    offered = cam.symbolics("UserSetSelector")
    if name not in offered:
        raise UsageError(f"camera {cam.name}: user_set {name!r} not offered; choose one of {', '.join(offered)}")
    cam.set("UserSetSelector", name)
    cam.execute("UserSetLoad")
    return name


def _select(cam: Any, selector: str | None, value: str | None) -> bool:
    if selector is None:
        return True
    if value not in cam.symbolics(selector):
        return False
    cam.set(selector, value)
    return True


def _key(feature: str, selector_value: str | None) -> str:
    return f"{feature}[{selector_value}]" if selector_value else feature


def apply_pixel_state(cam: Any, settings: Any) -> None:
    """Set every pixel-changing feature the camera has to the config's value (``settings``: ``PixelSettings``).

    Every ``LineInverter`` is cleared too: the trigger topology sets what it needs afterwards.
    """
    for feature, selector, selector_value, attr in PIXEL_FEATURES:
        if cam.has(feature) and _select(cam, selector, selector_value):
            cam.set(feature, getattr(settings, attr))
    if cam.has("LineInverter"):
        for line in cam.symbolics("LineSelector"):
            cam.set("LineSelector", line)
            cam.set("LineInverter", False)


def read_pixel_state(cam: Any) -> dict[str, Any]:
    """The pixel-changing features as the camera holds them (``BalanceRatio[Red]``...), None where absent."""
    state: dict[str, Any] = {}
    for feature, selector, selector_value, _ in PIXEL_FEATURES:
        if cam.has(feature) and _select(cam, selector, selector_value):
            value = cam.get(feature)
            state[_key(feature, selector_value)] = value if isinstance(value, (bool, int, float)) else str(value)
        else:
            state[_key(feature, selector_value)] = None
    return state


@dataclass(frozen=True)
class Difference:
    """One persisted feature whose value differs between the two cameras."""

    feature: str
    ll: str
    wl: str
    expected: str  # why the protocol makes it differ, "" when it should not

    def describe(self) -> str:
        why = f" (expected: {self.expected})" if self.expected else ""
        return f"{self.feature}: LL {self.ll}, WL {self.wl}{why}"


def _persisted(cam: Any) -> dict[str, str]:
    """Every persisted feature of the camera (its own FeaturePersistence save), keyed with the selector in force."""
    with tempfile.TemporaryDirectory() as tmp:
        path = cam.save_pfs(Path(tmp) / "state.pfs")
        lines = path.read_text().splitlines()
    values: dict[str, str] = {}
    context = ""
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        name, _, value = line.partition("\t")
        if name.endswith("Selector"):
            context = value.strip()
            continue
        values[f"{name}[{context}]" if context else name] = value.strip()
    return values


# Features the protocol sets differently on purpose, by the config setting that causes it.
_MIRROR = ("ReverseX", "PixelFormat")
_TRIGGER = ("TriggerMode", "TriggerSource", "TriggerActivation", "LineMode", "LineSource", "AcquisitionFrameRate", "AcquisitionFrameRateEnable",
            "LineInverter", "UserOutputValue")


def compare_settings(ll: Any, wl: Any, *, mirrored: bool, topology: str) -> list[Difference]:
    """Every persisted feature that differs between the two cameras, labelled when the protocol explains it."""
    a, b = _persisted(ll), _persisted(wl)
    out = []
    for key in sorted(set(a) | set(b), key=lambda k: (list(a).index(k) if k in a else len(a))):
        if a.get(key) == b.get(key):
            continue
        feature = key.split("[")[0]
        expected = ""
        if mirrored and feature in _MIRROR:
            expected = "mirror"
        elif topology == "master-slave" and feature in _TRIGGER:
            expected = "trigger role"
        out.append(Difference(key, a.get(key, "absent"), b.get(key, "absent"), expected))
    return out
