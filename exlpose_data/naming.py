"""The ExLPose release file-name grammar: the one place it is parsed and written.

``bright/imgs_<MMDD>[_<site>]_vid<6 digits>_exp<R>_bright_<6-digit frame>__gain_<dB>_exposure_<us>.png``
and its dark twin ``dark/..._dark_<frame>__gain_<LL dB>_exposure_<us>.png``. The gain has two decimals and
the exposure is the nominal integer. Scene key = (date, site, video); :func:`check_date`, :func:`check_site` and
:func:`check_video` are the rules for its parts wherever they are given (rig, alignment, simulator).

Annotation files: ``<prefix>_<part>_<condition>.json`` (``ExLPose_train_LL.json``, ``ExLPose_test_LL-A.json``,
older ``LL-All/Normal/Hard/Extreme`` spellings accepted), ``ExLPose-OC_test_<camera>.json``;
:func:`annotation_file_name` writes them, :func:`annotation_key` reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import NameGrammarError
from .exposure import DEFAULT_ND_FACTOR, ll_gain_from_wl
from .lighting import Lighting

__all__ = ["ImageName", "parse_name", "scene_id", "scene_key", "SceneKey", "check_date", "check_site",
           "check_video", "MAX_VIDEO", "annotation_file_name", "annotation_key", "ANNOTATION_PREFIX", "LONG_SPLIT_NAMES"]

_BY_FOLDER = {member.folder: member for member in Lighting}

_NAME_RE = re.compile(
    r"^imgs_(?P<date>\d{4})"
    r"(?:_(?P<site>[A-Za-z0-9-]+))?"
    r"_vid(?P<video>\d{6})"
    r"_exp(?P<ratio>\d+)"
    r"_(?P<word>bright|dark)_(?P<frame>\d{6})"
    r"__gain_(?P<gain>\d+\.\d{2})"
    r"_exposure_(?P<exposure>\d+)"
    r"\.(?P<ext>png|PNG)$"
)

SceneKey = tuple[str, str, int]
MAX_VIDEO = 999_999  # six digits in names
_SITE_RE = re.compile(r"^[A-Za-z0-9-]*$")

ANNOTATION_PREFIX = "ExLPose"
LONG_SPLIT_NAMES = {"All": "A", "Normal": "N", "Hard": "H", "Extreme": "E"}
_ANN_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9-]+)_(?P<part>train|val|test|all)_(?P<cond>LL|WL)(?:-(?P<split>A|N|H|E|All|Normal|Hard|Extreme))?\.json$")
_OC_RE = re.compile(r"^ExLPose-OC_test_(?P<camera>[A-Za-z0-9]+)\.json$")


def check_date(value: str) -> str:
    """``value`` if it is a capture date ``MMDD`` (month 01-12, day 01-31).

    Raises:
        NameGrammarError: (a ValueError) starting with the value; callers prefix the option or field.
    """
    if not (len(value) == 4 and value.isdigit() and 1 <= int(value[:2]) <= 12 and 1 <= int(value[2:]) <= 31):
        raise NameGrammarError(f"{value!r}: expected a date MMDD like 0119")
    return value


def check_site(value: str) -> str:
    """``value`` if it can be the site part of a name: letters, digits and '-', or empty for no site part."""
    if not _SITE_RE.match(value):
        raise NameGrammarError(f"{value!r}: a site holds only letters, digits and '-' (empty for no site part)")
    return value


def check_video(value: int) -> int:
    """``value`` if it is a video number names can hold (0..999999)."""
    if not 0 <= value <= MAX_VIDEO:
        raise NameGrammarError(f"{value}: expected a video number 0..{MAX_VIDEO} (six digits in names)")
    return value


def annotation_file_name(part: str | None, condition: str, *, prefix: str = ANNOTATION_PREFIX) -> str:
    """An annotation file's name as the release spells it: ``<prefix>[_<part>]_<condition>.json``.

    ``annotation_file_name("test", "LL-A")`` is ``ExLPose_test_LL-A.json``; ``part=None`` serves prefixes that
    already hold the part (``exlpose-split by-gain --prefix ExLPose_test``).
    """
    return "_".join(x for x in (prefix, part, condition) if x) + ".json"


def annotation_key(filename: str) -> str | None:
    """Canonical key of a release annotation file name (``test_LL-A``, ``train_WL``, ``OC_A7M3``), or None."""
    m = _ANN_RE.match(filename)
    if m:
        split = m["split"]
        split = LONG_SPLIT_NAMES.get(split, split) if split else None
        return f"{m['part']}_{m['cond']}" + (f"-{split}" if split else "")
    m = _OC_RE.match(filename)
    if m:
        return f"OC_{m['camera']}"
    return None


def scene_id(date: str, site: str, video: int) -> str:
    """A scene as a string, ``<MMDD>[_<site>]_vid<6 digits>`` (no site part when ``site`` is empty)."""
    return f"{date}{'_' + site if site else ''}_vid{video:06d}"


@dataclass(frozen=True)
class ImageName:
    """A parsed release file name.

    Attributes:
        date: ``MMDD`` of the capture.
        site: capture site (may be digits) or ``""`` when the name has none.
        video: video number.
        ratio: the ``R`` label (ND factor x exposure cut).
        frame: frame number within the video.
        gain_db: gain of this image's camera.
        exposure_us: nominal exposure time.
        condition: ``Lighting.WL`` (bright) or ``Lighting.LL`` (dark); ``"WL"``/``"LL"`` are accepted.
        ext: file extension as written.
    """

    date: str
    site: str
    video: int
    ratio: int
    frame: int
    gain_db: float
    exposure_us: int
    condition: Lighting
    ext: str = "png"

    def __post_init__(self) -> None:
        object.__setattr__(self, "condition", Lighting(self.condition))

    @property
    def scene(self) -> SceneKey:
        return (self.date, self.site, self.video)

    @property
    def scene_id(self) -> str:
        """The scene as a string: ``<MMDD>[_<site>]_vid<6 digits>``."""
        return scene_id(self.date, self.site, self.video)

    @property
    def k(self) -> float:
        """Exposure cut implied by the ratio with the release's 100x ND filter."""
        return self.ratio / DEFAULT_ND_FACTOR

    @property
    def pair_key(self) -> tuple:
        """Everything that identifies a pair: the name without condition and gain."""
        return (self.date, self.site, self.video, self.ratio, self.frame, self.exposure_us)

    @property
    def basename(self) -> str:
        return (
            f"imgs_{self.scene_id}_exp{self.ratio}_{self.condition.folder}_{self.frame:06d}"
            f"__gain_{self.gain_db:.2f}_exposure_{self.exposure_us}.{self.ext}"
        )

    @property
    def relpath(self) -> str:
        """Root-relative path, ``bright/<name>`` or ``dark/<name>``."""
        return f"{self.condition.folder}/{self.basename}"

    def twin(self, gain_db: float | None = None) -> "ImageName":
        """The other image of the pair. The LL gain is inferred from the protocol unless given."""
        if self.condition == "WL":
            g = ll_gain_from_wl(self.gain_db, self.ratio) if gain_db is None else gain_db
            return replace(self, condition=Lighting.LL, gain_db=g)
        if gain_db is None:
            raise ValueError("the well-lit gain cannot be inferred from a dark name; pass gain_db")
        return replace(self, condition=Lighting.WL, gain_db=gain_db)


def parse_name(path: str) -> ImageName:
    """Parse a release path (``bright/...``, ``dark/...`` or a bare file name).

    Raises:
        NameGrammarError: the name does not follow the grammar, or its folder contradicts its condition.
    """
    text = path.replace("\\", "/")
    parts = text.rsplit("/", 2)
    base = parts[-1]
    m = _NAME_RE.match(base)
    if m is None:
        raise NameGrammarError(f"{path!r} is not an ExLPose release name (imgs_<MMDD>[_<site>]_vid<6>_exp<R>_<bright|dark>_<6>__gain_<x.xx>_exposure_<us>.png)")
    condition = _BY_FOLDER[m["word"]]
    if len(parts) >= 2 and parts[-2] in _BY_FOLDER and _BY_FOLDER[parts[-2]] != condition:
        raise NameGrammarError(f"{path!r}: a {m['word']} image inside the {parts[-2]}/ folder")
    return ImageName(
        date=m["date"],
        site=m["site"] or "",
        video=int(m["video"]),
        ratio=int(m["ratio"]),
        frame=int(m["frame"]),
        gain_db=float(m["gain"]),
        exposure_us=int(m["exposure"]),
        condition=condition,
        ext=m["ext"],
    )


def scene_key(path: str) -> SceneKey:
    """The scene (date, site, video) of a release path."""
    return parse_name(path).scene
