"""The detector's training configuration: one pydantic model, loadable from YAML or JSON (``--config``).

Variants mean what they mean for the pose network (:data:`baselines.config.VARIANTS`): ``baseline-low`` (LL images),
``baseline-well`` (WL images), ``baseline-all`` (both), ``lsbn`` (both, LSBN in the backbone), ``lsbn-lupi`` (and
LUPI's Gram loss on C1, R1-R4 between the LL student and the WL teacher of each pair). A detector learns from the
person boxes of both images of every pair (the pair's boxes are the same: the images are aligned).

Defaults: the optimiser, schedule and loss weights are CenterNet's (Zhou et al. 2019: Adam 1.25e-4 at batch 32,
140 epochs, x0.1 at 90 and 120; focal loss alpha 2 beta 4, size weight 0.1, offset weight 1), since the paper's
detector (Cascade R-CNN) is another design whose recipe does not carry over; the LL/WL input scaling is the
pose network's (the reference's). The LUPI Gram term defaults to Eq. 3 averaged over the batch (``gram``): the
reference's weighting (``gram-reference``) is tuned to its peak-255 heatmap loss, not a unit-scale detection loss.
The centre Gaussians' radius defaults to the exact one for IoU 0.7 (``centre_radius: exact``); ``centernet`` gives
CenterNet's published code's, which a slip in its formula makes about three times larger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exlpose_data.errors import InputError

from ..config import VARIANTS, VariantSpec, read_config_file
from ..losses import LupiKind

__all__ = ["DetectConfig", "DETECT_VARIANTS", "DetectVariant", "make_detect_config", "load_detect_config", "STRIDE", "DETECT_IDENTITY"]

DetectVariant = Literal["baseline-low", "baseline-well", "baseline-all", "lsbn", "lsbn-lupi"]
DETECT_VARIANTS: tuple[str, ...] = ("baseline-low", "baseline-well", "baseline-all", "lsbn", "lsbn-lupi")
STRIDE = 4  # output stride of the heads (CenterNet's)

# What a detector run *is*: a resumed run keeps these (and its training data).
DETECT_IDENTITY = ("variant", "backbone", "from_scratch", "input_size", "neck_channels", "head_channels", "wl_normalisation", "lupi_gram",
                   "centre_radius")


class DetectConfig(BaseModel):
    """Everything a detector training run needs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    variant: DetectVariant = "lsbn-lupi"
    dataset: Path | None = Field(None, description="image root holding bright/ and dark/")
    annotations: Path | None = Field(None, description="annotation folder (searched beside the dataset when unset)")
    train_ann: Path | None = Field(None, description="training annotation file (default: the release's train_LL, or train_WL for baseline-well)")
    pack: Path | None = Field(None, description="training image pack (exlpose pack) for faster reading")
    val_splits: list[str] = Field(default_factory=lambda: ["LL-A", "WL"], description="test splits evaluated periodically")
    output_dir: Path = Path("runs/exlpose-detect")

    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    pretrained: Path | None = Field(None, description="local torchvision ImageNet checkpoint of the backbone")
    from_scratch: bool = Field(False, description="train without ImageNet weights")
    input_size: tuple[int, int] = Field((512, 800), description="network input HEIGHTxWIDTH; the whole image is fitted inside, keeping its aspect")
    neck_channels: int = Field(128, ge=8, description="channels of the stride-4 feature pyramid")
    head_channels: int = Field(64, ge=8, description="hidden channels of each head (CenterNet's 64)")
    max_detections: int = Field(100, ge=1, description="peaks kept per image (COCO scores up to 100)")

    epochs: int = Field(140, ge=1)
    batch_size: int = Field(32, ge=1, description="images (pairs) per step over all processes")
    lr: float = Field(1.25e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay, not applied to biases (CenterNet uses none)")
    lr_milestones: list[int] = Field(default_factory=lambda: [90, 120])
    lr_gamma: float = Field(0.1, gt=0)
    size_weight: float = Field(0.1, ge=0, description="weight of the box-size L1 loss")
    offset_weight: float = Field(1.0, ge=0, description="weight of the centre-offset L1 loss")
    lupi_weight: float = Field(1.0, ge=0, description="multiplies the Gram LUPI term (lsbn-lupi)")
    lupi_gram: Literal["gram-reference", "gram"] = Field("gram", description="Gram weighting: Eq. 3 averaged (gram) or the reference pose code's")
    wl_normalisation: Literal["reference", "imagenet"] = Field("reference", description="WL input statistics, as the pose network's")
    centre_radius: Literal["exact", "centernet"] = Field(
        "exact", description="centre Gaussians' radius: exact for IoU 0.7 under a shift (ours), or CenterNet's published formula (about 3x larger)"
    )

    sync_bn: bool = Field(False, description="BatchNorm statistics over the global batch under torchrun")
    amp: bool = Field(False, description="mixed precision (float16 on CUDA with loss scaling, bfloat16 on CPU)")
    channels_last: bool = Field(False, description="channels_last memory format for the network and its inputs")
    workers: int = Field(4, ge=0)
    seed: int = 0
    deterministic: bool = Field(False, description="deterministic algorithms")
    device: str = "cpu"
    eval_every: int = Field(10, ge=0, description="evaluate every N epochs and after the last (0: only after the last)")
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (smoke runs)")

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) <= 0 or v[0] % 32 or v[1] % 32:
            raise ValueError(f"input sides must be positive multiples of 32 (the backbone's stride), got {v[0]}x{v[1]}")
        return v

    @model_validator(mode="after")
    def _one_start(self) -> "DetectConfig":
        if self.from_scratch and self.pretrained is not None:
            raise ValueError("from_scratch and pretrained exclude each other: give one")
        return self

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    @property
    def output_size(self) -> tuple[int, int]:
        return (self.input_size[0] // STRIDE, self.input_size[1] // STRIDE)

    @property
    def lupi_kind(self) -> LupiKind | None:
        return None if self.spec.lupi is None else self.lupi_gram

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (paths as strings), stored in checkpoints."""
        return self.model_dump(mode="json")


def make_detect_config(values: dict[str, Any], source: str = "config") -> DetectConfig:
    """Validate ``values`` into a :class:`DetectConfig`, naming the offending field on error."""
    try:
        return DetectConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(root)"
        raise InputError(f"{source}: {where}: {err['msg']}") from None


def load_detect_config(path: str | Path, overrides: dict[str, Any] | None = None) -> DetectConfig:
    """Read a YAML or JSON config (the strict loader) and apply ``overrides`` (None values skipped)."""
    raw = read_config_file(path)
    return make_detect_config({**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}, source=str(path))
