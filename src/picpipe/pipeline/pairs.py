"""Link Live Photos (still + motion) and RAW+JPEG pairs, so later features show one item.

- Live Photos: assets sharing an Apple ContentIdentifier (the video's ``Keys`` tag, the
  still's ``MediaGroupUUID``), one of them a video. When the still carries no identifier, a
  photo and a short video with the same name in the same folder, taken within seconds of
  each other, pair too (icloudpd and phones write ``IMG_1234.HEIC`` + ``IMG_1234.MOV``).
- RAW+JPEG: a raw and a non-raw photo with the same name in the same folder of a source and
  the same capture time.
Linking never unlinks: an asset that has a pair keeps it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select, tuple_, update

from picpipe.catalog.models import Asset, SourceFile

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
T = TypeVar("T")

RAW_JPEG_SLACK = timedelta(seconds=2)
LIVE_SLACK = timedelta(seconds=3)
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
    if linked:
        log.info("linked %d asset(s) into pairs", linked)
    return linked


def _link_by_content_id(db: Session, shas: list[str]) -> int:
    ids: set[str] = set()
    for chunk in _chunks(shas):
        ids.update(
            i
            for i in db.scalars(
                select(Asset.live_photo_id).where(
                    Asset.sha256.in_(chunk), Asset.live_photo_id.is_not(None)
                )
            )
            if i
        )
    linked = 0
    for content_id in sorted(ids):
        members = db.execute(
            select(Asset.sha256, Asset.kind).where(Asset.live_photo_id == content_id)
        ).all()
        kinds = {kind for _sha, kind in members}
        if "video" in kinds and kinds & {"photo", "raw"}:
            linked += _set_pair(db, [sha for sha, _k in members], f"live:{content_id}", "live")
    return linked


def _link_by_name(db: Session, shas: list[str]) -> int:
    places: set[tuple[int, str]] = set()
    for chunk in _chunks(shas):
        places.update(
            (r[0], r[1])
            for r in db.execute(
                select(SourceFile.source_id, SourceFile.folder).where(SourceFile.sha256.in_(chunk))
            )
        )
    if not places:
        return 0
    groups: dict[tuple[int, str, str], dict[str, _Member]] = defaultdict(dict)
    wanted = set(shas)
    place_list = sorted(places)
    for places_chunk in _chunks(place_list):
        rows = db.execute(
            select(
                SourceFile.source_id,
                SourceFile.folder,
                SourceFile.ref,
                Asset.sha256,
                Asset.kind,
                Asset.taken_local,
                Asset.duration,
                Asset.pair_id,
            )
            .join(Asset, Asset.sha256 == SourceFile.sha256)
            .where(tuple_(SourceFile.source_id, SourceFile.folder).in_(places_chunk))
        )
        for source_id, folder, ref, sha, kind, taken, duration, pair_id in rows:
            stem = ref.rpartition("/")[2].rpartition(".")[0].lower()
            groups[(source_id, folder, stem)][sha] = _Member(sha, kind, taken, duration, pair_id)
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
            linked += _set_pair(
                db, [raw.sha256, match.sha256], f"raw+jpeg:{raw.sha256[:16]}", "raw+jpeg"
            )
    for video in videos:
        if video.duration is not None and video.duration > LIVE_MAX_SECONDS:
            continue
        match = next((s for s in stills if abs(s.taken - video.taken) <= LIVE_SLACK), None)
        if match is not None:
            stills.remove(match)
            linked += _set_pair(
                db, [match.sha256, video.sha256], f"live:{match.sha256[:16]}", "live"
            )
    return linked


def _set_pair(db: Session, shas: list[str], pair_id: str, kind: str) -> int:
    result = db.execute(
        update(Asset)
        .where(Asset.sha256.in_(shas), Asset.pair_id.is_(None))
        .values(pair_id=pair_id, pair_kind=kind)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _chunks(items: list[T], size: int = 500) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
