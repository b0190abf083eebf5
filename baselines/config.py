"""Training configuration: one pydantic model, loadable from YAML or JSON, defaults of the ExLPose reference.

A variant fixes which inputs a run trains on and which parts of the method it uses:

================  ===========  =====  ==============
variant           inputs       LSBN   LUPI
================  ===========  =====  ==============
baseline-low      LL           no     no
baseline-well     WL           no     no
baseline-all      LL + WL      no     no
lupi              LL + WL      no     Gram (Eq. 3)
lsbn              LL + WL      yes    no
lsbn-lupi         LL + WL      yes    Gram (Eq. 3)
lsbn-lupi-feat    LL + WL      yes    features
lime-baseline-all LL + WL      no     no            (LL images enhanced by LIME, training and test)
dann              LL + WL      no     no            (DANN domain classifier, baselines.adaptation)
advent            LL + WL      no     no            (AdvEnt entropy discriminator, baselines.adaptation)
lsbn-lupi-unpaired LL + WL     yes    Gram (Eq. 3)  (LL and WL crops of unrelated scenes, baselines.pairing)
lsbn-lupi-uda     LL + WL      yes    Gram (Eq. 3)  (unpaired as above, no LL pose loss)
================  ===========  =====  ==============

Every setting defaults to the reference code's (sohyun-l/ExLPose, ``pytorch-cpn/``) where it has one; the
settings that deviate on request are named (``wl_normalisation``, ``padding``, ``heatmap_convention``,
``global_mask``, ``flip_test``, ``lupi_gram``) and listed with their reasons in docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exlpose_data.errors import InputError
from exlpose_data.jsonio import load_config_file
from exlpose_data.lighting import Lighting

from .losses import LupiKind

__all__ = ["Variant", "VARIANTS", "VariantSpec", "TrainConfig", "FLIP_TESTS", "read_config_file", "load_config", "make_config"]

FLIP_TESTS: tuple[str, ...] = ("ours", "official", "none")

Variant = Literal["baseline-low", "baseline-well", "baseline-all", "lupi", "lsbn", "lsbn-lupi", "lsbn-lupi-feat", "lime-baseline-all", "dann", "advent", "lsbn-lupi-unpaired", "lsbn-lupi-uda"]


@dataclass(frozen=True)
class VariantSpec:
    """What a variant trains on (``conditions`` in ``("ll", "wl")``) and which method parts it uses."""

    conditions: tuple[str, ...]
    lsbn: bool
    lupi: Literal["gram", "feat"] | None
    enhancer: str | None = None  # applied to every LL image, training and test (baselines.enhance)
    adaptation: Literal["dann", "advent"] | None = None  # baselines.adaptation
    paired: bool = True  # False: WL crops from other scenes than their LL crops (baselines.pairing)
    pose_loss: tuple[str, ...] | None = None  # conditions with a pose loss (default: every condition)

    @property
    def dataset_condition(self) -> str:
        """The ``ExLPoseTopDown`` condition: ``"LL"``, ``"WL"`` or ``"pair"``."""
        return "pair" if len(self.conditions) == 2 else Lighting.parse(self.conditions[0]).value


VARIANTS: dict[str, VariantSpec] = {
    "baseline-low": VariantSpec(("ll",), False, None),
    "baseline-well": VariantSpec(("wl",), False, None),
    "baseline-all": VariantSpec(("ll", "wl"), False, None),
    "lupi": VariantSpec(("ll", "wl"), False, "gram"),
    "lsbn": VariantSpec(("ll", "wl"), True, None),
    "lsbn-lupi": VariantSpec(("ll", "wl"), True, "gram"),
    "lsbn-lupi-feat": VariantSpec(("ll", "wl"), True, "feat"),
    "lime-baseline-all": VariantSpec(("ll", "wl"), False, None, enhancer="lime"),
    "dann": VariantSpec(("ll", "wl"), False, None, adaptation="dann"),
    "advent": VariantSpec(("ll", "wl"), False, None, adaptation="advent"),
    "lsbn-lupi-unpaired": VariantSpec(("ll", "wl"), True, "gram", paired=False),
    "lsbn-lupi-uda": VariantSpec(("ll", "wl"), True, "gram", paired=False, pose_loss=("wl",)),
}


class TrainConfig(BaseModel):
    """Everything a training run needs; defaults are the reference's (ExLPose, CVPR 2023)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    variant: Variant = "lsbn-lupi"
    dataset: Path | None = Field(None, description="image root holding bright/ and dark/")
    annotations: Path | None = Field(None, description="annotation folder (searched beside the dataset when unset)")
    train_ann: Path | None = Field(None, description="training annotation file (default: the release's train_LL, or train_WL for baseline-well)")
    pack: Path | None = Field(None, description="training image pack (exlpose pack) for faster reading")
    val_splits: list[str] = Field(default_factory=lambda: ["LL-A", "WL"], description="test splits evaluated periodically")
    output_dir: Path = Path("runs/exlpose")

    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    pretrained: Path | None = Field(None, description="local torchvision ImageNet checkpoint of the backbone")
    from_scratch: bool = Field(False, description="train without ImageNet weights (the reference always starts from them)")
    input_size: tuple[int, int] = (256, 192)
    heatmap_size: tuple[int, int] = (64, 48)

    epochs: int = Field(32, ge=1)
    batch_size: int = Field(32, ge=1, description="pairs per step over all processes")
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0, description="Adam weight decay, not applied to biases")
    lr_milestones: list[int] = Field(default_factory=lambda: [6, 12, 18, 24, 30])
    lr_gamma: float = Field(0.5, gt=0)
    ohkm_top_k: int = Field(8, ge=1)
    lupi_weight: float = Field(1.0, ge=0, description="multiplies the Gram LUPI term")
    lupi_gram: Literal["gram-reference", "gram"] = Field(
        "gram-reference", description="Gram weighting: the reference code's (1e-4 x 0.2, summed over the global batch) or Eq. 3 averaged"
    )
    lupi_feat_weight: float = Field(
        1.0, ge=0, description="multiplies LUPI-feat's term (the mean squared feature difference per layer, summed over layers); ours, the paper gives none"
    )

    wl_normalisation: Literal["reference", "imagenet"] = Field(
        "reference", description="WL input statistics: the ExLPose dataset's (reference) or ImageNet's"
    )
    padding: Literal["mean", "zero"] = Field("mean", description="value outside the image: the reference's pixel means, or zeros")
    heatmap_convention: Literal["ours", "reference"] = Field(
        "ours", description="target cell and decoding: nearest pixel of x/4 and 4j (ours), or floor(u/4) and 4j+2 (reference)"
    )
    global_mask: Literal["visible", "labelled"] = Field(
        "visible", description="joints GlobalNet learns: visible ones (v = 2, the reference) or every labelled one"
    )
    head_init: Literal["reference", "target-scale"] = Field(
        "reference", description="heads' final BatchNorms: weight 1, bias 0 (reference) or the targets' std and mean"
    )
    sync_bn: bool = Field(False, description="BatchNorm statistics over the global batch under torchrun (LSBN branches included)")
    amp: bool = Field(False, description="mixed precision (float16 on CUDA with loss scaling, bfloat16 on CPU)")
    channels_last: bool = Field(False, description="channels_last memory format for the network and its inputs")

    workers: int = Field(4, ge=0)
    seed: int = 0
    deterministic: bool = Field(False, description="deterministic algorithms (CPU runs repeat bit for bit)")
    device: str = "cpu"
    eval_every: int = Field(4, ge=0, description="evaluate every N epochs and after the last (0: only after the last)")
    eval_protocol: Literal["crowdpose", "fixed"] = "crowdpose"
    flip_test: Literal["ours", "official", "none"] = Field(
        "ours", description="test-time flip: ours (CrowdPose pairs, sub-pixel shift), official (the reference's, faults included) or none"
    )
    enhancer: str | None = Field(None, description="enhancer of the LL images, training and test: lime or onnx:MODEL.onnx (default: the variant's)")
    enhance_cache: Path | None = Field(None, description="folder caching enhanced images (default <output_dir>/enhanced)")
    lime_downscale: float = Field(1.0, gt=0, le=1, description="LIME solves the illumination at this scale (ours; 1 = full resolution)")
    adapt_weight: float | None = Field(None, ge=0, description="weight of dann's domain loss (default 1) or advent's adversarial term (default 1e-3); ours")
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (smoke runs)")

    @field_validator("input_size", "heatmap_size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) <= 0:
            raise ValueError(f"sizes must be positive, got {v}")
        return v

    @field_validator("flip_test", mode="before")
    @classmethod
    def _flip_from_bool(cls, v: Any) -> Any:
        # Checkpoints and configs written before the flip modes existed say true / false.
        if isinstance(v, bool):
            return "ours" if v else "none"
        return v

    @model_validator(mode="after")
    def _one_start(self) -> "TrainConfig":
        if self.from_scratch and self.pretrained is not None:
            raise ValueError("from_scratch and pretrained exclude each other: give one")
        return self

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    @property
    def lupi_kind(self) -> LupiKind | None:
        """The loss :func:`baselines.losses.lupi_loss` computes for this variant, or None."""
        if self.spec.lupi is None:
            return None
        return "feat" if self.spec.lupi == "feat" else self.lupi_gram

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (paths as strings): stored in checkpoints, loadable by ``torch.load(weights_only=True)``."""
        return self.model_dump(mode="json")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw settings of a YAML or JSON config file (validated later by :func:`make_config`), read by the
    toolkit's strict loader (:func:`exlpose_data.jsonio.load_config_file`).

    Raises:
        InputError: the file is unreadable, not a mapping, or breaks the strict loader's rules (a duplicate key,
            a non-finite number, ...), named with its line and column.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such config file")
    raw = load_config_file(p)  # the strict door: duplicate keys, NaN/Infinity... refused with line and column
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{p}: expected a mapping of settings, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML or JSON config and apply ``overrides`` (values that are None are skipped).

    Raises:
        InputError: the file is unreadable, not a mapping, or a field is invalid (named in the message).
    """
    raw = read_config_file(path)
    return make_config({**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}, source=str(path))


def make_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate ``values`` into a :class:`TrainConfig`, naming the offending field on error."""
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(root)"
        raise InputError(f"{source}: {where}: {err['msg']}") from None

