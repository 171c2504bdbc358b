"""Link Live Photos (still + motion) and RAW+JPEG pairs, so later features show one item.

- Live Photos: assets sharing an Apple ContentIdentifier (the video's ``Keys`` tag, the
  still's ``MediaGroupUUID``), one of them a video. When the still carries no identifier, a
  photo and a short video with the same name in the same folder, taken within seconds of
  each other, pair too (icloudpd and phones write ``IMG_1234.HEIC`` + ``IMG_1234.MOV``;
  icloudpd's default names the video ``IMG_1234_HEVC.MOV``).
- RAW+JPEG: a raw and a non-raw photo with the same name in the same folder of a source and
  the same capture time.
Linking never unlinks: an asset that has a pair keeps it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from picpipe.catalog.pairs import (
    assets_in_places,
    live_photo_ids,
    live_photo_members,
    set_edit_of,
    set_pair,
    source_places,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

RAW_JPEG_SLACK = timedelta(seconds=2)
LIVE_SLACK = timedelta(seconds=3)
LIVE_VIDEO_SUFFIX = "_hevc"  # icloudpd's default --live-photo-mov-filename-policy suffix
LIVE_MAX_SECONDS = 10.0  # motion halves of Live Photos last about three seconds


@dataclass(frozen=True, slots=True)
class _Member:
    sha256: str
    kind: str  # photo | raw | video
    taken: datetime
    duration: float | None
    pair_id: str | None


def link_pairs(db: Session, new: Iterable[str]) -> int:
    """Pair the assets ``new`` with their other halves anywhere in the catalog.

    Returns how many assets got a pair. Writes only ``pair_id`` and ``pair_kind``.
    """
    shas = sorted(set(new))
    if not shas:
        return 0
    linked = _link_by_content_id(db, shas)
    linked += _link_by_name(db, shas)
    linked += _link_edits(db, shas)
    if linked:
        log.info("linked %d asset(s) into pairs", linked)
    return linked


def _link_by_content_id(db: Session, shas: list[str]) -> int:
    linked = 0
    for content_id in sorted(live_photo_ids(db, shas)):
        members = live_photo_members(db, content_id)
        kinds = {kind for _sha, kind in members}
        if "video" in kinds and kinds & {"photo", "raw"}:
            linked += set_pair(db, [sha for sha, _k in members], f"live:{content_id}", "live")
    return linked


def _link_by_name(db: Session, shas: list[str]) -> int:
    places = source_places(db, shas)
    if not places:
        return 0
    groups: dict[tuple[int, str, str], dict[str, _Member]] = defaultdict(dict)
    wanted = set(shas)
    for row in assets_in_places(db, sorted(places)):
        stem = row.ref.rpartition("/")[2].rpartition(".")[0].lower()
        if row.kind == "video" and stem.endswith(LIVE_VIDEO_SUFFIX):
            stem = stem[: -len(LIVE_VIDEO_SUFFIX)]  # icloudpd: IMG_1234.HEIC + IMG_1234_HEVC.MOV
        groups[(row.source_id, row.folder, stem)][row.sha256] = _Member(
            row.sha256, row.kind, row.taken, row.duration, row.pair_id
        )
    linked = 0
    for members in groups.values():
        if len(members) < 2 or not wanted & members.keys():
            continue
        linked += _pair_group(db, list(members.values()))
    return linked


def _pair_group(db: Session, members: list[_Member]) -> int:
    unpaired = [m for m in members if m.pair_id is None]
    raws = [m for m in unpaired if m.kind == "raw"]
    stills = [m for m in unpaired if m.kind == "photo"]
    videos = [m for m in unpaired if m.kind == "video"]
    linked = 0
    for raw in raws:
        match = next((s for s in stills if abs(s.taken - raw.taken) <= RAW_JPEG_SLACK), None)
        if match is not None:
            stills.remove(match)
            linked += set_pair(
                db, [raw.sha256, match.sha256], f"raw+jpeg:{raw.sha256[:16]}", "raw+jpeg"
            )
    for video in videos:
        if video.duration is not None and video.duration > LIVE_MAX_SECONDS:
            continue
        match = next((s for s in stills if abs(s.taken - video.taken) <= LIVE_SLACK), None)
        if match is not None:
            stills.remove(match)
            linked += set_pair(
                db, [match.sha256, video.sha256], f"live:{match.sha256[:16]}", "live"
            )
    return linked


EDIT_SUFFIX = "-adjusted"  # icloudpd: --size adjusted beside --size original


def _link_edits(db: Session, shas: list[str]) -> int:
    """``IMG_1234-adjusted.JPG`` is an edit of ``IMG_1234.*`` in the same folder of the same
    source (either may arrive first; the later one's session links them)."""
    places = source_places(db, shas)
    if not places:
        return 0
    originals: dict[tuple[int, str, str], str] = {}
    edits: list[tuple[tuple[int, str, str], str]] = []
    for row in assets_in_places(db, sorted(places)):
        stem = row.ref.rpartition("/")[2].rpartition(".")[0].lower()
        if stem.endswith(EDIT_SUFFIX):
            edits.append(((row.source_id, row.folder, stem[: -len(EDIT_SUFFIX)]), row.sha256))
        elif row.kind != "video":
            originals.setdefault((row.source_id, row.folder, stem), row.sha256)
    wanted = set(shas)
    linked = 0
    for key, edit in edits:
        original = originals.get(key)
        if original is not None and original != edit and wanted & {edit, original}:
            linked += set_edit_of(db, edit, original)
    return linked
