"""XMP sidecars beside each original: write, merge, read back.

The sidecar of ``originals/YYYY/MM/DD/<sha256>.<ext>`` is ``<sha256>.xmp`` beside it
(`library.layout.sidecar_path`). picpipe owns a few fields and refreshes them on every write:
the capture date with its offset (XMP-exif:DateTimeOriginal, XMP-photoshop:DateCreated), GPS,
camera make, model and lens, and the XMP-picpipe namespace (original file name, sha256, date
source, import time, provenance; see ``picpipe.exiftool_config``). Everything else belongs to
the people and tools that edit the file: picpipe writes the user fields it knows (keywords,
rating, label, title, description, face regions) only where the sidecar has none yet, keeps
every other field (digiKam's TagsList, darktable's history…) untouched, and reads the user
fields back into the catalog.

Writes are atomic and never lose someone else's edit: exiftool writes a temp file in the same
folder from the current sidecar plus picpipe's fields (``-o``); picpipe fsyncs it and renames
it over the sidecar only if the sidecar did not change meanwhile, else it starts again from
the new version. A crash leaves at most a ``.picpipe-tmp-*.xmp`` file that the next import
sweeps away.

Regions are kept in the catalog as a JSON list of ``{"name", "type", "area": {"x", "y", "w",
"h", "unit"}}`` (MWG regions: x, y the centre, w, h the size, normalized 0..1).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

# SidecarError is imported from here by pipeline/stages.py until it imports from errors.py.
from picpipe.errors import SidecarError as SidecarError
from picpipe.library.atomic import fsync_path, rename_over, temp_path, unlink_quietly
from picpipe.library.layout import run_temp_tag, sidecar_ext_path, sidecar_path
from picpipe.pipeline.exiftool import ExifToolFailed
from picpipe.pipeline.sidecar_args import keyword_list_args, own_args, user_args

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from pathlib import Path

    from picpipe.pipeline.exiftool import ExifTool
    from picpipe.pipeline.metadata import MediaInfo

log = logging.getLogger(__name__)

Region = dict[str, Any]

# What picpipe reads from a sidecar: the user fields, and the dates and GPS that media_info
# falls back to for a sidecar that came with a source file ('#' = as a number).
SIDECAR_TAGS = (
    "XMP-dc:Subject",
    "XMP-lr:HierarchicalSubject",
    "XMP-digiKam:TagsList",
    "XMP-xmp:Rating",
    "XMP-xmp:Label",
    "XMP-dc:Title",
    "XMP-dc:Description",
    "XMP-mwg-rs:RegionInfo",
    "XMP-exif:DateTimeOriginal",
    "XMP-photoshop:DateCreated",
    "XMP-xmp:CreateDate",
    "XMP-exif:GPSLatitude#",
    "XMP-exif:GPSLongitude#",
    "XMP-exif:GPSAltitude#",
    "XMP-picpipe:Sha256",
    "Warning",
    "Error",
)
_ATTEMPTS = 3  # rewrites started over because another tool changed the sidecar meanwhile
_MAX_TEXT = 2000  # title and description beyond this are cut in the catalog (not the file)


@dataclass(frozen=True, slots=True)
class UserFields:
    """What people edit in digiKam and friends; None where the sidecar has no such field."""

    keywords: tuple[str, ...] | None = None
    rating: int | None = None
    label: str | None = None
    title: str | None = None
    description: str | None = None
    regions: tuple[Region, ...] | None = None

    def over(self, base: UserFields) -> UserFields:
        """These values where present, ``base``'s for the fields these do not have."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if value is None:
                values[name] = getattr(base, name)
        return UserFields(**values)

    def missing_from(self, present: UserFields) -> UserFields:
        """The fields of these that ``present`` does not have (what picpipe may add)."""
        return UserFields(
            **{
                f.name: getattr(self, f.name) if getattr(present, f.name) is None else None
                for f in fields(self)
            }
        )

    def catalog_values(self) -> dict[str, Any]:
        """The asset columns these fields fill."""
        return {
            "keywords": list(self.keywords) if self.keywords is not None else None,
            "rating": self.rating,
            "label": self.label,
            "title": self.title,
            "description": self.description,
            "regions": list(self.regions) if self.regions is not None else None,
        }

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> UserFields:
        """From catalog columns or `MediaInfo` attributes of the same names."""
        keywords, regions = values.get("keywords"), values.get("regions")
        return cls(
            keywords=tuple(keywords) if keywords is not None else None,
            rating=values.get("rating"),
            label=values.get("label"),
            title=values.get("title"),
            description=values.get("description"),
            regions=tuple(regions) if regions is not None else None,
        )

    @classmethod
    def from_info(cls, info: MediaInfo) -> UserFields:
        return cls.from_values({f.name: getattr(info, f.name, None) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class SidecarFacts:
    """picpipe's own fields of one asset, refreshed in its sidecar on every write."""

    sha256: str
    original_name: str
    taken_local: datetime
    taken_offset_min: int | None
    date_source: str
    imported_at: datetime  # naive UTC
    provenance: tuple[tuple[str, str], ...] = ()  # (source name, path within the source)
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    width: int | None = None  # for the regions' AppliedToDimensions
    height: int | None = None


@dataclass(frozen=True, slots=True)
class SidecarContent:
    """One sidecar as picpipe reads it: user fields, and exiftool's record for dates and GPS."""

    user: UserFields
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SidecarWritten:
    """A sidecar picpipe wrote: the user fields it now holds and its new mtime."""

    user: UserFields
    mtime_ns: int


def read_sidecar(tool: ExifTool, path: str | bytes | os.PathLike[str]) -> SidecarContent:
    """Read one XMP sidecar.

    Raises SidecarError when exiftool cannot read it as XMP (damaged XML, empty file, gone).
    """
    display = os.fsdecode(path)
    try:
        record = tool.read(
            os.fspath(path), extra_args=("-struct",), tags=SIDECAR_TAGS, exact_numbers=True
        )
    except ExifToolFailed as exc:
        raise SidecarError(path=display, detail=exc.reason) from exc
    problem = record.pop("ExifTool:Error", None)
    warning = record.pop("ExifTool:Warning", None)
    if problem is None and warning is not None and "format error" in str(warning).lower():
        problem = warning
    if problem is not None:
        raise SidecarError(path=display, detail=f"not readable as XMP ({problem})")
    for key in ("XMP-exif:GPSLatitude", "XMP-exif:GPSLongitude", "XMP-exif:GPSAltitude"):
        if key in record:
            record[key] = _float(record[key])
    return SidecarContent(_user_fields(record), record)


def write_sidecar(
    tool: ExifTool,
    root: Path,
    library_path: str,
    facts: SidecarFacts,
    initial: UserFields,
    *,
    seed: str | bytes | None = None,
    fsync: bool = True,
    run_id: int = 0,
    name: str | None = None,
) -> SidecarWritten:
    """Write or refresh the sidecar of the original at ``library_path`` (relative to ``root``).

    The sidecar keeps everything it holds; picpipe's own fields are set from ``facts``, and
    each field of ``initial`` is added only where the sidecar has no such field yet. Without
    a sidecar, ``seed`` (an XMP that came with the source file) is the starting point, so its
    fields carry over as they are. Returns the user fields the sidecar now holds. Raises
    SidecarError (the sidecar is damaged, exiftool failed, the disk refused); the existing
    sidecar is then left as it was and no temp file remains. ``name`` is the sidecar to
    write (relative to ``root``; default ``<sha256>.xmp``, `layout.written_sidecar_paths`).
    """
    rel = name or sidecar_path(library_path)
    final = root / rel
    for _attempt in range(_ATTEMPTS):
        before = _identity(final)
        if before is not None:
            source: str | bytes | None = str(final)
            present = read_sidecar(tool, final).user
        else:
            source, present = _usable_seed(tool, seed)
        middle = f"{run_temp_tag(run_id)}{facts.sha256[:16]}-{secrets.token_hex(4)}.xmp"
        temp = temp_path(final, middle)
        args = ["-ec", *own_args(facts), *user_args(initial.missing_from(present), facts)]
        args += keyword_list_args(present.over(initial).keywords)
        try:
            try:
                tool.write([*args, "-o", str(temp)], source, display=rel)
            except ExifToolFailed as exc:
                if source is not None and source == seed:
                    seed = None  # a seed exiftool cannot rewrite: start from scratch instead
                    continue
                raise SidecarError(path=rel, detail=exc.reason) from exc
            if fsync:
                fsync_path(temp)
            if _identity(final) != before:
                log.debug("%s changed while it was rewritten; merging again", rel)
                continue
            rename_over(temp, final, fsync=fsync)
            mtime_ns = final.stat().st_mtime_ns
        except OSError as exc:
            raise SidecarError(path=rel, detail=exc.strerror or str(exc)) from exc
        finally:
            unlink_quietly(temp)
        return SidecarWritten(present.over(initial), mtime_ns)
    raise SidecarError(path=rel, detail="it kept changing while picpipe wrote it; run again")


def alternate_sidecar_path(library_path: str) -> str:
    """``<sha256>.<ext>.xmp``: the name darktable and digiKam (by default) give a sidecar."""
    return sidecar_ext_path(library_path)


# -- reading ------------------------------------------------------------------------------


def _user_fields(record: Mapping[str, Any]) -> UserFields:
    keywords = _strings(record.get("XMP-dc:Subject"))
    if keywords is None:  # tools that write only hierarchical tags: keep the leaves
        keywords = _leaves(record.get("XMP-lr:HierarchicalSubject"), "|")
    if keywords is None:
        keywords = _leaves(record.get("XMP-digiKam:TagsList"), "/")
    rating = _float(record.get("XMP-xmp:Rating"))
    return UserFields(
        keywords=keywords,
        rating=round(rating) if rating is not None and -1 <= rating <= 5 else None,
        label=_text(record.get("XMP-xmp:Label"), 64),
        title=_text(record.get("XMP-dc:Title"), _MAX_TEXT),
        description=_text(record.get("XMP-dc:Description"), _MAX_TEXT),
        regions=_regions(record.get("XMP-mwg-rs:RegionInfo")),
    )


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        text = _text(item, 200)
        if text is not None and text not in out:
            out.append(text)
    return tuple(out)


def _leaves(value: Any, separator: str) -> tuple[str, ...] | None:
    paths = _strings(value)
    if paths is None:
        return None
    return _strings([p.rsplit(separator, 1)[-1] for p in paths])


def mwg_regions(value: Any) -> tuple[Region, ...] | None:
    """MWG ``RegionInfo`` (as exiftool's ``-struct`` gives it) → catalog regions; None if absent."""
    return _regions(value)


def _regions(value: Any) -> tuple[Region, ...] | None:
    if not isinstance(value, dict):
        return None
    regions: list[Region] = []
    for item in value.get("RegionList") or []:
        area = item.get("Area") if isinstance(item, dict) else None
        if not isinstance(area, dict):
            continue
        box: dict[str, Any] = {k.lower(): _float(area.get(k)) for k in ("X", "Y", "W", "H", "D")}
        box = {k: v for k, v in box.items() if v is not None}
        box["unit"] = _text(area.get("Unit"), 20) or "normalized"
        regions.append(
            {"name": _text(item.get("Name"), 200), "type": _text(item.get("Type"), 40), "area": box}
        )
    return tuple(regions)


def _text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text[:limit] or None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _usable_seed(tool: ExifTool, seed: str | bytes | None) -> tuple[str | bytes | None, UserFields]:
    # A seed with a line break in its name cannot travel over exiftool's argument pipe.
    if seed is None or b"\n" in os.fsencode(seed) or b"\r" in os.fsencode(seed):
        return None, UserFields()
    try:
        return seed, read_sidecar(tool, seed).user
    except SidecarError:
        return None, UserFields()


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino
