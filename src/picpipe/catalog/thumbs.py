"""Catalog reads and writes of the thumbnail stage (``pipeline/thumbrun.py`` runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select, update

from picpipe.catalog.models import Asset

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy.orm import Session

ThumbState = Literal["pending", "ok", "failed"]


@dataclass(frozen=True, slots=True)
class ThumbOutcome:
    """What one thumbnail job settled for an asset.

    ``video_codec`` and ``duration`` are stored only when set (a worker that could not probe a
    video leaves the catalog's values alone).
    """

    sha256: str
    state: ThumbState
    error: str | None = None
    video_codec: str | None = None
    duration: float | None = None


def thumb_states(db: Session) -> list[tuple[str, str]]:
    """(sha256, thumbs_state) of every asset, in sha256 order."""
    rows = db.execute(select(Asset.sha256, Asset.thumbs_state).order_by(Asset.sha256))
    return [(sha, state) for sha, state in rows]


def assets_to_thumb(db: Session, sha256s: Sequence[str]) -> Iterator[Asset]:
    """The asset rows of ``sha256s`` (one query; unknown keys are left out, order is not kept).

    Callers pass a page (a few hundred keys) and read the rows inside the session.
    """
    yield from db.scalars(select(Asset).where(Asset.sha256.in_(sha256s)))


def staged_still_needed(db: Session, sha256s: Sequence[str]) -> dict[str, bool]:
    """Catalogued ``sha256s`` → whether its staged index-mode copy is still needed (an
    index-only asset whose thumbnails are pending); unknown keys are left out."""
    out: dict[str, bool] = {}
    for start in range(0, len(sha256s), 500):
        rows = db.execute(
            select(Asset.sha256, Asset.index_only, Asset.thumbs_state).where(
                Asset.sha256.in_(list(sha256s[start : start + 500]))
            )
        )
        for sha256, index_only, thumbs_state in rows:
            out[sha256] = bool(index_only) and thumbs_state == "pending"
    return out


def save_thumb_outcomes(db: Session, outcomes: Sequence[ThumbOutcome]) -> None:
    """Store each outcome's state and error, and the video codec and duration when known.

    Bulk updates by primary key; the caller holds the transaction.
    """
    states = [
        {"sha256": o.sha256, "thumbs_state": o.state, "thumbs_error": o.error} for o in outcomes
    ]
    codecs = [{"sha256": o.sha256, "video_codec": o.video_codec} for o in outcomes if o.video_codec]
    durations = [{"sha256": o.sha256, "duration": o.duration} for o in outcomes if o.duration]
    for rows in (states, codecs, durations):
        if rows:
            db.execute(update(Asset), rows)
