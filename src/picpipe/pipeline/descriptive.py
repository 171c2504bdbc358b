"""What a photo says about itself beyond camera facts: rating, keywords, title, people.

Reads the descriptive fields a camera, phone or photo tool embedded in the file (exiftool
family-1 groups; `pipeline/exiftool.py` asks for them, regions as ``-struct`` structures)
into `UserFields`, the same value a sidecar gives. Each field takes the first place that has
it, in this order:

- rating: XMP ``xmp:Rating`` → EXIF ``Rating`` → Windows ``RatingPercent`` (1-12 → 1, 13-37 → 2,
  38-62 → 3, 63-87 → 4, 88-100 → 5). 0 is "unrated" in every one of them and reads as none;
  -1 (rejected) is kept.
- keywords: XMP ``dc:subject``, else IPTC ``Keywords`` (IPTC only without XMP: tools that wrote
  XMP left a stale or mis-encoded IPTC copy); then the leaves of Lightroom
  ``lr:hierarchicalSubject`` (``a|b|c`` → ``c``), digiKam ``TagsList`` and Microsoft
  ``LastKeywordXMP`` (``a/b/c`` → ``c``) are added, each keyword once, in that order.
- title: XMP ``dc:title`` → IPTC ``ObjectName`` → Windows ``XPTitle``.
- description: XMP ``dc:description`` → IPTC ``Caption-Abstract`` → EXIF ``ImageDescription``.
- label: XMP ``xmp:Label``.
- regions: MWG ``mwg-rs:Regions``, else Microsoft Photo ``MPRI`` regions (top-left rectangles,
  turned into MWG centre boxes).

Camera makers' placeholder texts ("SONY DSC", "OLYMPUS DIGITAL CAMERA", the make or model
itself…) and keywords lost to a character-set conversion ("????") are ignored.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from picpipe.pipeline.sidecar import Region, UserFields, mwg_regions

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

_MAX_TEXT = 2000
# Texts cameras write into ImageDescription/Caption when the user wrote nothing (compared
# case-insensitively and without surrounding spaces); the make and model are added per file.
PLACEHOLDER_TEXTS = frozenset(
    {
        "sony dsc",
        "olympus digital camera",
        "digital camera",
        "minolta digital camera",
        "konica minolta digital camera",
        "kodak digital still camera",
        "exif_jpeg_picture",
        "jpeg",
        "default",
        "image",
        "picture",
        "camera",
        "dcim",
        "untitled",
        "no title",
        "scanned image",
        "hdr",
        "lg electronics",
        "samsung",
        "huawei",
        "<kenox s630  / samsung s630>",
        "created with gimp",
    }
)
_NO_WORDS = re.compile(r"^[\s?_\-.0-9]*$")  # "????" (lost charset), "000007", "___"
_LOST = re.compile(r"^[\s?]*$")  # a keyword a character-set conversion turned into "????"


def embedded_fields(tags: Mapping[str, Any]) -> UserFields:
    """The descriptive fields embedded in one file's exiftool record (None where absent)."""
    ignore = _placeholders(tags)
    return UserFields(
        keywords=_keywords(tags),
        rating=_rating(tags),
        label=_first_text(tags, ("XMP-xmp:Label",), 64, ignore=frozenset()),
        title=_first_text(tags, ("XMP-dc:Title", "IPTC:ObjectName", "IFD0:XPTitle"), ignore=ignore),
        description=_first_text(
            tags,
            ("XMP-dc:Description", "IPTC:Caption-Abstract", "IFD0:ImageDescription"),
            ignore=ignore,
        ),
        regions=_regions(tags),
    )


# -- fields --------------------------------------------------------------------------------


def _rating(tags: Mapping[str, Any]) -> int | None:
    for key in ("XMP-xmp:Rating", "IFD0:Rating"):
        value = _number(tags.get(key))
        if value is not None and -1 <= value <= 5:
            return round(value) or None
    for key in ("IFD0:RatingPercent", "XMP-microsoft:RatingPercent"):
        percent = _number(tags.get(key))
        if percent is not None and 0 < percent <= 100:
            return 1 + sum(percent >= step for step in (13, 38, 63, 88))
    return None


def _keywords(tags: Mapping[str, Any]) -> tuple[str, ...] | None:
    found: list[str] = []
    flat = [t for v in _group_values(tags, "XMP-dc:Subject") for t in _texts(v)]
    if not flat:
        flat = [t for v in _group_values(tags, "IPTC:Keywords") for t in _texts(v)]
    found += flat
    for key, separator in (
        ("XMP-lr:HierarchicalSubject", "|"),
        ("XMP-digiKam:TagsList", "/"),
        ("XMP-microsoft:LastKeywordXMP", "/"),
    ):
        found += [path.rsplit(separator, 1)[-1].strip() for path in _texts(tags.get(key))]
    unique = list(dict.fromkeys(k for k in found if k and not _LOST.match(k)))
    return tuple(unique) or None


def _regions(tags: Mapping[str, Any]) -> tuple[Region, ...] | None:
    mwg = mwg_regions(tags.get("XMP-mwg-rs:RegionInfo"))
    if mwg:
        return mwg
    info = tags.get("XMP-MP:RegionInfoMP")
    if not isinstance(info, dict):
        return None
    regions: list[Region] = []
    for item in info.get("Regions") or []:
        if not isinstance(item, dict):
            continue
        box = _rectangle(item.get("Rectangle"))
        if box is None:
            continue
        name = item.get("PersonDisplayName")
        regions.append(
            {"name": _clean(name, 200) if name is not None else None, "type": "Face", "area": box}
        )
    return tuple(regions) or None


def _rectangle(value: Any) -> dict[str, Any] | None:
    # MPRI: "x, y, w, h" of the top-left corner, normalized; MWG keeps the centre.
    try:
        x, y, w, h = (float(part) for part in str(value).split(","))
    except ValueError:
        return None
    if not all(0 <= v <= 1 for v in (x, y, w, h)):
        return None
    return {
        "x": round(x + w / 2, 6),
        "y": round(y + h / 2, 6),
        "w": w,
        "h": h,
        "unit": "normalized",
    }


# -- helpers -------------------------------------------------------------------------------


def _placeholders(tags: Mapping[str, Any]) -> frozenset[str]:
    own = (tags.get("IFD0:Make"), tags.get("IFD0:Model"))
    return frozenset(str(v).strip().casefold() for v in own if v)


def _first_text(
    tags: Mapping[str, Any],
    keys: tuple[str, ...],
    limit: int = _MAX_TEXT,
    ignore: frozenset[str] = frozenset(),
) -> str | None:
    for key in keys:
        for value in _group_values(tags, key):
            text = _clean(value, limit)
            if text is None:
                continue
            folded = text.casefold()
            if folded in ignore or folded in PLACEHOLDER_TEXTS or _NO_WORDS.match(folded):
                continue
            return text
    return None


def _group_values(tags: Mapping[str, Any], key: str) -> Iterator[Any]:
    # IPTC may come as IPTC2 (a second record); XMP-dc:Title can be a language alternative.
    group, _, name = key.partition(":")
    for tag_key, value in tags.items():
        tag_group, _, tag_name = tag_key.partition(":")
        if tag_name == name and (tag_group == group or tag_group.startswith(group)):
            yield value


def _texts(value: Any) -> list[str]:
    # exiftool -j gives a list for several values, a bare string or number for one.
    items: list[Any] = list(value) if isinstance(value, (list, tuple)) else [value]
    out = [_clean(item, 200) for item in items]
    return [text for text in out if text is not None]


def _clean(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).split("\x00", 1)[0].strip()
    return text[:limit] or None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
