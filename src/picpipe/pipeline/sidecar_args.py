"""exiftool arguments that write picpipe's sidecar fields (see `pipeline/sidecar.py`).

One argument is one line on exiftool's ``-@ -`` pipe, so every value is C-escaped for
``-ec``; structures (provenance, face regions) use exiftool's serialization, where a ``|``
escapes the characters ``|,{}[]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from picpipe.pipeline.sidecar import Region, SidecarFacts, UserFields


def own_args(facts: SidecarFacts) -> list[str]:
    """Assignments of picpipe's own fields (date, GPS, camera, XMP-picpipe) from ``facts``.

    Values are C-escaped: pass ``-ec`` with them. Facts that are unknown are left out, so a
    value another tool put in the sidecar stays rather than being deleted.
    """
    stamp = facts.taken_local.strftime("%Y:%m:%d %H:%M:%S") + _offset(facts.taken_offset_min)
    args = [
        f"-XMP-exif:DateTimeOriginal={stamp}",
        f"-XMP-photoshop:DateCreated={stamp}",
        _assign("XMP-picpipe:OriginalFileName", facts.original_name),
        _assign("XMP-picpipe:Sha256", facts.sha256),
        _assign("XMP-picpipe:DateSource", facts.date_source),
        f"-XMP-picpipe:ImportedAt={facts.imported_at:%Y:%m:%d %H:%M:%S}Z",
    ]
    for tag, value in (
        ("XMP-tiff:Make", facts.make),
        ("XMP-tiff:Model", facts.model),
        ("XMP-exifEX:LensModel", facts.lens),
    ):
        if value:
            args.append(_assign(tag, value))
    if facts.gps_lat is not None and facts.gps_lon is not None:
        args += [
            f"-XMP-exif:GPSLatitude={_decimal(facts.gps_lat)}",
            f"-XMP-exif:GPSLongitude={_decimal(facts.gps_lon)}",
        ]
        if facts.gps_alt is not None:
            # XMP keeps the altitude unsigned; the reference says above or below sea level.
            args += [
                f"-XMP-exif:GPSAltitude={_decimal(abs(facts.gps_alt))}",
                f"-XMP-exif:GPSAltitudeRef#={1 if facts.gps_alt < 0 else 0}",
            ]
    if facts.provenance:
        entries = ",".join(
            f"{{Source={_struct_value(source)},Path={_struct_value(path)}}}"
            for source, path in facts.provenance
        )
        args.append(_assign("XMP-picpipe:Provenance", f"[{entries}]"))
    return args


def user_args(add: UserFields, facts: SidecarFacts) -> list[str]:
    """Assignments that add the user fields set in ``add`` (keywords, rating, regions…)."""
    args: list[str] = []
    for keyword in add.keywords or ():
        args.append(_assign("XMP-dc:Subject", keyword))
    if add.rating is not None:
        args.append(f"-XMP-xmp:Rating={add.rating}")
    for tag, value in (
        ("XMP-xmp:Label", add.label),
        ("XMP-dc:Title", add.title),
        ("XMP-dc:Description", add.description),
    ):
        if value is not None:
            args.append(_assign(tag, value))
    if add.regions:
        args.append(_assign("XMP-mwg-rs:RegionInfo", _region_info(add.regions, facts)))
    return args


def keyword_list_args(keywords: tuple[str, ...] | None) -> list[str]:
    """The keywords again as ``picpipe:subject``, an ordered list (rdf:Seq), for PhotoPrism.

    PhotoPrism's XMP reader matches elements by local name and takes keywords only from an
    rdf:Seq under an element named ``subject``; dc:subject is an rdf:Bag by the XMP standard
    (exiftool, digiKam and Lightroom write it so), which PhotoPrism skips. This copy follows
    the sidecar's keywords on every write; picpipe never reads it back.
    """
    if not keywords:
        return ["-XMP-picpipe:KeywordList="]
    return [_assign("XMP-picpipe:KeywordList", keyword) for keyword in keywords]


def _region_info(regions: Iterable[Region], facts: SidecarFacts) -> str:
    items = []
    for region in regions:
        area = region.get("area") or {}
        parts = [
            f"{key.upper()}={_decimal(float(area[key]))}"
            for key in ("x", "y", "w", "h", "d")
            if area.get(key) is not None
        ]
        parts.append(f"Unit={_struct_value(str(area.get('unit') or 'normalized'))}")
        members = [f"Area={{{','.join(parts)}}}"]
        for key, name in (("name", "Name"), ("type", "Type")):
            if region.get(key):
                members.append(f"{name}={_struct_value(str(region[key]))}")
        items.append("{" + ",".join(members) + "}")
    applied = ""
    if facts.width and facts.height:
        applied = f"AppliedToDimensions={{W={facts.width},H={facts.height},Unit=pixel}},"
    return "{" + applied + f"RegionList=[{','.join(items)}]" + "}"


def _assign(tag: str, value: str) -> str:
    """``-TAG=VALUE``, C-escaped for ``-ec``: one argument is one line on exiftool's pipe."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t")
    # Other control characters have no place in XML 1.0; drop them.
    return f"-{tag}=" + "".join(ch for ch in escaped if ch >= " ")


def _struct_value(value: str) -> str:
    # exiftool's structure serialization: a '|' before each special character (and before
    # leading white space, which it would otherwise trim).
    return "".join(
        "|" + ch if ch in "|,{}[]" or (i == 0 and ch.isspace()) else ch
        for i, ch in enumerate(value)
    )


def _decimal(value: float) -> str:
    # Plain decimal notation (exiftool does not take 1e-05).
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _offset(minutes: int | None) -> str:
    if minutes is None:
        return ""
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
