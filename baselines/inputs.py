"""What a checkpoint's configuration means for its inputs: the dataset options every command builds from it, and
the test-time settings (crop, flip test, decoding, input scale) evaluation and prediction run it with.

Training, evaluation and prediction all cut crops through :class:`exlpose_data.datasets.ExLPoseTopDown` (or
its functions) with these options, so a model always sees at test time the input it was trained on.

Test-time settings (:class:`InferenceSettings`) default by the checkpoint's origin: a model trained here runs with our
crop (the float box warped with one affine), its configuration's flip test, our decoding and our input scale; the
authors' released model imported with ``exlpose-train import-official`` runs as their test script ran it: their
crop (``exlpose_data.datasets.official_crop``), their flip test, their decoding of a map with no positive value and
their ``im_to_torch`` scale. Each can be changed on its own (``--crop``, ``--flip-test``, ``--decode``,
``--input-scale``); runs print and record the settings they used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from exlpose_data.datasets.lowlight import PIXEL_MEANS, WL_NORMALISATIONS
from exlpose_data.datasets.transforms import CROP_MODES, INPUT_SCALES
from exlpose_data.errors import UsageError

from .config import FLIP_TESTS, TrainConfig
from .decode import DECODES

__all__ = ["dataset_options", "InferenceSettings", "inference_settings"]


@dataclass(frozen=True)
class InferenceSettings:
    """How a checkpoint is run at test time.

    Attributes:
        crop: ``"ours"`` or ``"official"`` (the authors' integer rectangle, cut and resized).
        flip_test: ``"ours"``, ``"official"`` or ``"none"``.
        decode: ``"ours"`` or ``"official"`` (a map with no positive value divided by its negative maximum).
        input_scale: ``"ours"`` (crops divided by 255) or ``"official"`` (only when the crop's maximum exceeds 1).
        origin: the checkpoint's origin, ``"trained"`` or ``"official"`` (what the defaults followed).
    """

    crop: str = "ours"
    flip_test: str = "ours"
    decode: str = "ours"
    input_scale: str = "ours"
    origin: str = "trained"

    def as_dict(self) -> dict[str, str]:
        """The settings as recorded in results (``origin`` included)."""
        return asdict(self)

    def describe(self) -> str:
        """One line for a run's header: ``crop official, flip test official, decode official, input scale official``."""
        return f"crop {self.crop}, flip test {self.flip_test}, decode {self.decode}, input scale {self.input_scale}"


def _choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise UsageError(f"{option} {value!r}: choose one of {', '.join(choices)}")
    return value


def inference_settings(
    cfg: TrainConfig,
    origin: str,
    *,
    crop: str | None = None,
    flip_test: str | None = None,
    decode: str | None = None,
    input_scale: str | None = None,
) -> InferenceSettings:
    """The settings a checkpoint runs with: each given value, else the default of its ``origin`` (``"official"``:
    all the authors'; otherwise ours and ``cfg.flip_test``).

    Raises:
        UsageError: a value outside its choices (named by its option).
    """
    official = origin == "official"
    default = "official" if official else "ours"
    return InferenceSettings(
        crop=_choice(crop or default, CROP_MODES, "--crop"),
        flip_test=_choice(flip_test or ("official" if official else cfg.flip_test), FLIP_TESTS, "--flip-test"),
        decode=_choice(decode or default, DECODES, "--decode"),
        input_scale=_choice(input_scale or default, INPUT_SCALES, "--input-scale"),
        origin=origin,
    )


def dataset_options(cfg: TrainConfig, settings: InferenceSettings | None = None) -> dict[str, Any]:
    """Keyword arguments of ``ExLPoseTopDown`` for ``cfg``'s input settings (sizes, WL statistics, padding,
    heatmap convention), and with test ``settings`` their crop and input scale."""
    options: dict[str, Any] = {
        "input_size": tuple(cfg.input_size),
        "heatmap_size": tuple(cfg.heatmap_size),
        "wl_normalisation": WL_NORMALISATIONS[cfg.wl_normalisation],
        "pad": PIXEL_MEANS if cfg.padding == "mean" else None,
        "heatmap_convention": cfg.heatmap_convention,
    }
    if settings is not None:
        options.update(crop_mode=settings.crop, input_scale=settings.input_scale)
    return options
