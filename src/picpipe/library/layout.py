"""Pure functions from an asset to its paths in the library (relative, POSIX separators).

``originals/{YYYY}/{MM}/{DD}/{sha256}.{ext}`` with the sidecar beside it as ``{sha256}.xmp``;
thumbnails under the local root as ``thumbs/{size}/{sha[:2]}/{sha256}.jpg``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from picpipe.hashing import is_sha256

if TYPE_CHECKING:
    from datetime import date

ORIGINALS = "originals"
THUMBS = "thumbs"
TEMP_PREFIX = ".picpipe-tmp-"
ThumbSize = Literal["tiny", "small", "medium"]
THUMB_SIZES: tuple[ThumbSize, ...] = ("tiny", "small", "medium")

_EXT = re.compile(r"^[a-z0-9]{1,10}$")


def original_path(sha256: str, taken: date, ext: str) -> str:
    """``originals/YYYY/MM/DD/<sha256>.<ext>`` for the local capture date ``taken``."""
    if not is_sha256(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    ext = ext.lower().lstrip(".")
    if not _EXT.match(ext):
        ext = "bin"
    return f"{day_folder(taken)}/{sha256}.{ext}"


def day_folder(taken: date) -> str:
    return f"{ORIGINALS}/{taken.year:04d}/{taken.month:02d}/{taken.day:02d}"


def sidecar_path(library_path: str) -> str:
    """The XMP sidecar beside an original: ``.../<sha256>.xmp``."""
    stem, _, _ext = library_path.rpartition(".")
    return f"{stem}.xmp"


def thumb_folder(size: ThumbSize) -> str:
    """``thumbs/{size}``: the folder of one size's shards (``{sha[:2]}/``) under the local root."""
    return f"{THUMBS}/{size}"


def sidecar_ext_path(library_path: str) -> str:
    """``.../<sha256>.<ext>.xmp``: the name darktable, Immich and digiKam look for first."""
    return f"{library_path}.xmp"


def written_sidecar_paths(library_path: str, naming: str) -> tuple[str, ...]:
    """The sidecar names picpipe writes for ``sidecars.naming`` (``sha``, ``sha.ext``, ``both``)."""
    if naming == "sha.ext":
        return (sidecar_ext_path(library_path),)
    if naming == "both":
        return (sidecar_path(library_path), sidecar_ext_path(library_path))
    return (sidecar_path(library_path),)


def thumb_path(sha256: str, size: ThumbSize, ext: str = "jpg") -> str:
    """``thumbs/{size}/{sha[:2]}/{sha256}.{ext}``: ``jpg`` by default, ``webp`` as an option.

    Relative to the local root, which is also what an nginx front's thumbnail alias serves
    (``X-Accel-Redirect: <prefix>`` + this path).
    """
    return f"{thumb_folder(size)}/{sha256[:2]}/{sha256}.{ext}"


def thumb_metadata_path(sha256: str) -> str:
    """``thumbs/metadata/{sha[:2]}/{sha256}.json``: the facts written beside the thumbnails."""
    return f"{THUMBS}/metadata/{sha256[:2]}/{sha256}.json"


def is_temp_name(name: str) -> bool:
    """True for the names ``writer`` gives files it has not finished yet."""
    return name.startswith(TEMP_PREFIX)


_RUN_TEMP = re.compile(r"r(\d+)-")


def run_temp_tag(run_id: int) -> str:
    """What a run puts after `TEMP_PREFIX` in every temp name it writes: ``r<run id>-``.

    Recovery of a stale run removes only temp files that carry its id, so runs on other
    machines sharing the library keep their in-flight copies.
    """
    return f"r{run_id}-"


def run_temp_prefix(run_id: int) -> str:
    """The start of every temp name a run writes: ``.picpipe-tmp-r<run id>-``."""
    return f"{TEMP_PREFIX}{run_temp_tag(run_id)}"


def temp_run_id(name: str) -> int | None:
    """The run id in a temp name, or None for a temp name without one (older versions)."""
    match = _RUN_TEMP.match(name, len(TEMP_PREFIX)) if is_temp_name(name) else None
    return int(match.group(1)) if match else None
