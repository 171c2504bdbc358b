"""What a link view should hold: every folder of a layout with the names of its links.

Pure functions from catalog rows to ``{folder: [ViewLink, ...]}`` (`plan_layout`); building
them on disk is `library/views.py`. A layout's template renders each link's path inside the
layout's folder from these fields:

``year month day`` (the original's day folder: its local capture date), ``name stem ext``
(the original file name), ``sha8`` (the first 8 hex digits of the sha256), ``make model
camera`` (``camera`` is "make model" without the make twice, "Unknown camera" without
either), ``album``, ``source`` and ``source_path`` (the path within the source; its ``/``
make folders).

Names are collision-safe: within one folder the first asset imported keeps a name and a later
one with the same name (compared case-insensitively, as SMB and macOS clients do) gets
``<stem>~<sha8><ext>``, which it keeps as long as the first one stays. Live Photo and
RAW+JPEG pairs in one folder share a base name: every member takes the stem of the pair's
still photo, and a suffix goes to all of them or to none.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

from picpipe.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from picpipe.catalog.views import ViewAsset
    from picpipe.config import ViewLayout

DEFAULT_TEMPLATES: dict[str, str] = {
    "by-date": "{year}/{month}/{day}/{name}",
    "by-album": "{album}/{name}",
    "by-source": "{source}/{source_path}",
    "by-camera": "{camera}/{year}/{name}",
}
FIELDS = frozenset(
    {"year", "month", "day", "name", "stem", "ext", "sha8", "make", "model", "camera"}
    | {"album", "source", "source_path"}
)
_LAYOUT_FIELDS = {"by-album": {"album"}, "by-source": {"source", "source_path"}}
_KIND_ORDER = {"photo": 0, "raw": 1, "video": 2}


@dataclass(frozen=True, slots=True)
class ViewLink:
    """One link of a view folder: its name, the original and the sidecar it points at."""

    name: str
    target: str  # the original, relative to the library root
    sidecar: str | None  # the sidecar to carry as ``<name>.xmp`` (library-relative), if any
    sidecar_stamp: int | None  # the sidecar's mtime as the catalog knows it


def folder_fields(template: str) -> set[str]:
    """The fields a template's folder part (all but the file name) uses."""
    folder = template.rsplit("/", 1)[0] if "/" in template else ""
    return {f for _text, f, _spec, _conv in string.Formatter().parse(folder) if f}


def template_for(layout: ViewLayout, templates: Mapping[ViewLayout, str]) -> str:
    """The layout's template (configured or default), checked: raises ConfigError."""
    template = templates.get(layout, DEFAULT_TEMPLATES[layout])
    try:
        names = {f for _text, f, _spec, _conv in string.Formatter().parse(template) if f}
    except ValueError as exc:
        raise ConfigError(detail=f"views.templates.{layout}: {exc}") from exc
    allowed = FIELDS - ({"album", "source", "source_path"} - _LAYOUT_FIELDS.get(layout, set()))
    unknown = names - allowed
    if unknown:
        raise ConfigError(
            detail=f"views.templates.{layout}: unknown field(s) {sorted(unknown)}; "
            f"use {', '.join(sorted(allowed))}"
        )
    if not template.rstrip().rsplit("/", 1)[-1]:
        raise ConfigError(detail=f"views.templates.{layout}: must end in a file name")
    return template


def plan_layout(
    layout: str,
    template: str,
    assets: list[ViewAsset],
    *,
    albums: Iterable[tuple[str, str]] = (),
    sources: Iterable[tuple[str, str, str]] = (),
    sidecar_of: Callable[[ViewAsset], str | None] = lambda asset: None,
) -> dict[str, list[ViewLink]]:
    """Every folder of ``layout`` (relative to the layout's root, "" for the root itself)
    with its links, from assets in import order and, for by-album and by-source, the
    (album, sha256) and (source, path, sha256) rows."""
    folders: dict[str, list[tuple[str, ViewAsset]]] = {}
    for folder, name, asset in _items(layout, template, assets, albums, sources):
        folders.setdefault(folder, []).append((name, asset))
    return {folder: _name_links(items, sidecar_of) for folder, items in folders.items()}


def _items(
    layout: str,
    template: str,
    assets: list[ViewAsset],
    albums: Iterable[tuple[str, str]],
    sources: Iterable[tuple[str, str, str]],
) -> Iterator[tuple[str, str, ViewAsset]]:
    """(folder, file name, asset) for each link, assets in import order."""
    per_asset: dict[str, list[dict[str, str]]] = {}
    if layout == "by-album":
        for album, sha in albums:
            per_asset.setdefault(sha, []).append({"album": _segment(album)})
    elif layout == "by-source":
        for source, ref, sha in sources:
            path = "/".join(_segment(part) for part in ref.split("/") if part)
            per_asset.setdefault(sha, []).append({"source": _segment(source), "source_path": path})
    for asset in assets:
        extras = per_asset.get(asset.sha256, []) if layout in _LAYOUT_FIELDS else [{}]
        base = _fields(asset) if extras else {}
        for extra in extras:
            rendered = template.format_map(base | extra)
            parts = [_segment(part) for part in rendered.split("/") if part.strip()]
            yield "/".join(parts[:-1]), parts[-1], asset


def _fields(asset: ViewAsset) -> dict[str, str]:
    name = _segment(asset.original_name.rsplit("/", 1)[-1])
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, asset.library_path.rpartition(".")[2]
    parts = asset.library_path.split("/")  # originals/YYYY/MM/DD/<sha256>.<ext>
    year, month, day = parts[1:4] if len(parts) == 5 else ("0000", "00", "00")
    return {
        "year": year,
        "month": month,
        "day": day,
        "name": f"{stem}.{ext}",
        "stem": stem,
        "ext": ext,
        "sha8": asset.sha256[:8],
        **_camera_fields(asset.make, asset.model),
    }


@functools.lru_cache(maxsize=4096)
def _camera_fields(make: str | None, model: str | None) -> dict[str, str]:
    return {
        "make": _segment(make or "Unknown make"),
        "model": _segment(model or "Unknown model"),
        "camera": _segment(camera_name(make, model)),
    }


def camera_name(make: str | None, model: str | None) -> str:
    """ "Canon EOS R6" from ("Canon", "Canon EOS R6") or ("Canon", "EOS R6")."""
    make, model = (make or "").strip(), (model or "").strip()
    if not make and not model:
        return "Unknown camera"
    if not make or model.casefold().startswith(make.casefold()):
        return model or make
    return f"{make} {model}".strip()


def _name_links(
    items: list[tuple[str, ViewAsset]], sidecar_of: Callable[[ViewAsset], str | None]
) -> list[ViewLink]:
    """Give each item of one folder its final name: pairs together, collisions suffixed."""
    groups: dict[str, list[tuple[str, ViewAsset]]] = {}
    for index, (name, asset) in enumerate(items):
        key = f"pair:{asset.pair_id}" if asset.pair_id else f"item:{index}"
        members = groups.setdefault(key, [])
        if all(other.sha256 != asset.sha256 for _n, other in members):
            members.append((name, asset))
    taken: set[str] = set()
    links: list[ViewLink] = []
    for members in groups.values():
        members.sort(key=lambda m: (_KIND_ORDER.get(m[1].kind, 3), m[1].sha256))
        primary_name, primary = members[0]
        base = _split(primary_name)[0]
        exts = [_split(name)[1] for name, _asset in members]
        names = [base + ext for ext in exts]
        if len({n.casefold() for n in names}) < len(names) or any(
            n.casefold() in taken for n in names
        ):
            names = [f"{base}~{primary.sha256[:8]}{ext}" for ext in exts]
        for (_name, asset), final in zip(members, names, strict=True):
            while final.casefold() in taken:  # a real file named like a suffixed one
                stem, ext = _split(final)
                final = f"{stem}~{asset.sha256[8:16]}{ext}"
            taken.add(final.casefold())
            sidecar = sidecar_of(asset) if asset.sidecar_mtime_ns is not None else None
            links.append(ViewLink(final, asset.library_path, sidecar, asset.sidecar_mtime_ns))
    return links


def _split(name: str) -> tuple[str, str]:
    """("IMG_1", ".JPG") from "IMG_1.JPG"; no extension: (name, "")."""
    stem, dot, ext = name.rpartition(".")
    return (stem, f".{ext}") if dot and stem else (name, "")


_UNSAFE = str.maketrans(dict.fromkeys([*map(chr, range(32)), "/", "\\"], "_"))


def _segment(text: str) -> str:
    """One path segment: no separators, control characters, or special names."""
    cleaned = text.translate(_UNSAFE).strip()
    if cleaned in {"", ".", ".."}:
        return "_"
    return cleaned[:200]
