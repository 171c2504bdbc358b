"""SQLAlchemy 2 mapped classes: the catalog schema (see DESIGN.md, "Catalog").

Alembic revisions in ``migrations/versions`` create these tables; a test checks that the
migrated schema and these models agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Asset(Base):
    """One unique content (its SHA-256), wherever and however often it was seen."""

    __tablename__ = "asset"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))  # photo | raw | video
    mime_type: Mapped[str | None] = mapped_column(String(100))
    file_type: Mapped[str | None] = mapped_column(String(20))  # detected, e.g. JPEG, HEIC
    # Wall-clock time where the picture was taken, its UTC offset when known, and the instant.
    taken_local: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    taken_offset_min: Mapped[int | None] = mapped_column(Integer)
    taken_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    date_source: Mapped[str] = mapped_column(String(16))
    offset_source: Mapped[str | None] = mapped_column(String(12))  # tag|gps-zone|configured|default
    make: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    lens: Mapped[str | None] = mapped_column(String(200))
    gps_lat: Mapped[float | None] = mapped_column(Float)
    gps_lon: Mapped[float | None] = mapped_column(Float)
    gps_alt: Mapped[float | None] = mapped_column(Float)
    # The nearest named place to the GPS position (offline GeoNames, pipeline/places.py).
    city: Mapped[str | None] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(200))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    orientation: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    live_photo_id: Mapped[str | None] = mapped_column(String(100), index=True)
    # SHA-256 of the coded image alone: equal for copies that differ only in metadata.
    payload_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # The asset whose file this one was extracted from (a motion photo's video): its
    # provenance, as it has no source file of its own.
    embedded_in: Mapped[str | None] = mapped_column(String(64), index=True)
    # SHA-1 of the bytes as a server reported it (Immich) and picpipe checked: later listings
    # naming it are known content, not downloaded again.
    sha1: Mapped[str | None] = mapped_column(String(40), index=True)
    original_name: Mapped[str] = mapped_column(Text)
    library_path: Mapped[str] = mapped_column(Text)  # relative to the library root
    # Index mode (`mode: index`): the original stays at its source, nothing at library_path;
    # full resolution is fetched from the source on demand. A library-mode import of the same
    # bytes places the original and clears it.
    index_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    problems: Mapped[list[str] | None] = mapped_column(JSON)
    thumbs_state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|ok|failed
    thumbs_error: Mapped[str | None] = mapped_column(Text)  # why thumbnails could not be made
    video_codec: Mapped[str | None] = mapped_column(String(40))
    # What people add in digiKam and friends, re-imported from the XMP sidecar.
    keywords: Mapped[list[str] | None] = mapped_column(JSON)
    rating: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    regions: Mapped[Any | None] = mapped_column(JSON)
    sidecar_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)  # as last read or written
    # Live Photo (still + motion) and RAW+JPEG pairs share a pair_id.
    pair_id: Mapped[str | None] = mapped_column(String(100), index=True)
    pair_kind: Mapped[str | None] = mapped_column(String(16))  # live | raw+jpeg
    # An edited version (icloudpd's IMG_1234-adjusted.JPG): the SHA-256 of its original.
    edit_of: Mapped[str | None] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("session.id"))

    __table_args__ = (Index("ix_asset_taken_local", "taken_local"),)


class Source(Base):
    """A named place photos come from: a folder, a card, a Synology album, an Immich server."""

    __tablename__ = "source"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(400), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    location: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    last_scan_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    # What a remote source keeps between runs (a listing's high-water mark); no secrets.
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SourceFile(Base):
    """One file seen in one source, and what became of it (its provenance record)."""

    __tablename__ = "source_file"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(Text)  # stable within the source (relative path)
    folder: Mapped[str] = mapped_column(
        Text, default="", server_default=""
    )  # the ref's parent ("" at the top)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    # A chmod or a rewrite that keeps size and mtime still moves ctime: it counts as a change.
    ctime_ns: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(ForeignKey("asset.sha256"), index=True)
    state: Mapped[str] = mapped_column(String(12))  # imported | duplicate | failed | skipped
    error: Mapped[str | None] = mapped_column(Text)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)  # failed, but try again
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("session.id"))

    __table_args__ = (
        UniqueConstraint("source_id", "ref", name="uq_source_file_ref"),
        Index("ix_source_file_folder", "source_id", "folder"),
    )


class SourceFolder(Base):
    """A digest of one folder's (name, size, mtime) list as last settled in the catalog.

    A rescan that computes the same digest knows every file in the folder is unchanged
    without loading a single per-file row.
    """

    __tablename__ = "source_folder"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("source.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    digest: Mapped[str] = mapped_column(String(32))
    files: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ImportSession(Base):
    """One run (an import, a sync, a thumbnail or sidecar pass, an SD card insertion) with its
    owner, its lease and its counts.

    A run is stale only when its lease has expired, or when its owner ran on this host and that
    process is gone; only then may another run recover what it left (`catalog/runs.py`).
    """

    __tablename__ = "session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # import | sync | thumbs | sidecars | verify
    device: Mapped[str | None] = mapped_column(Text)  # source names or card label
    status: Mapped[str] = mapped_column(String(24), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    seen: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    duplicate: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # Files accounted for but not imported: not media, temp names, hidden, ignored by rule.
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    # The owner's process start (clock ticks since boot): a reused pid is not the owner.
    owner_started: Mapped[int | None] = mapped_column(BigInteger)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # stage, done, total


class CatalogInfo(Base):
    """Facts about the catalog itself: ``catalog_id``, ``library_id`` (the library it keeps,
    named by the marker in the library root)."""

    __tablename__ = "catalog_info"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunLease(Base):
    """Exclusion across processes and machines: one run at a time holds ``key`` (e.g.
    ``import:<source>``, ``sync:<destination>``) for as long as its run's lease is alive."""

    __tablename__ = "run_lease"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("session.id", ondelete="CASCADE"), index=True
    )
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))


class Claim(Base):
    """Work in hand: ``content:<sha256>`` is being placed, ``key:<destination>:<remote key>``
    is being uploaded. Held with the run's lease; released when the result is committed."""

    __tablename__ = "claim"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("session.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))


class Destination(Base):
    """A named replica target (filesystem, SMB, S3, Azure, Immich)."""

    __tablename__ = "destination"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(400), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))


class Replica(Base):
    """One asset at one destination; counts only once ``state == 'verified'``."""

    __tablename__ = "replica"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("asset.sha256"))
    destination_id: Mapped[int] = mapped_column(ForeignKey("destination.id", ondelete="CASCADE"))
    remote_key: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(128))
    etag: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(12))  # pending|uploading|verifying|verified|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # resume state, server ids
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))

    __table_args__ = (
        UniqueConstraint("sha256", "destination_id", name="uq_replica"),
        UniqueConstraint("destination_id", "remote_key", name="uq_replica_remote_key"),
        Index("ix_replica_destination_state", "destination_id", "state"),
        Index("ix_replica_state_sha256", "state", "sha256"),
    )


class SidecarReplica(Base):
    """The XMP sidecar picpipe last wrote beside an asset's replica, verified there.

    ``sidecar_sha256`` is what picpipe uploaded: a remote sidecar that no longer matches it was
    changed by someone else and is never overwritten (the next version goes under a new key).
    """

    __tablename__ = "sidecar_replica"

    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destination.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(ForeignKey("asset.sha256"), primary_key=True)
    remote_key: Mapped[str] = mapped_column(Text)
    sidecar_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    local_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)  # the library file's, then
    verified_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))


class Album(Base):
    """An album from a source (Synology, Immich) or a local one."""

    __tablename__ = "album"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id", ondelete="SET NULL"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))


class AlbumAsset(Base):
    __tablename__ = "album_asset"

    album_id: Mapped[int] = mapped_column(
        ForeignKey("album.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(ForeignKey("asset.sha256"), primary_key=True)
    # The source's own key of this member (a Synology cache key), for the photos-sync names.
    source_key: Mapped[str | None] = mapped_column(String(200), index=True)


class SessionFailure(Base):
    """One item that failed in a session, with the reason a person can act on."""

    __tablename__ = "session_failure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("session.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


class ShuffleRound(Base):
    """One ``/files`` client's current round through the photos matching one filter."""

    __tablename__ = "shuffle_round"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    filter_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    synced_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))  # new photos added
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))


class ShuffleEntry(Base):
    """A photo of a round, at its random place in the order; ``shown`` once it was served."""

    __tablename__ = "shuffle_entry"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    filter_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    sha256: Mapped[str] = mapped_column(
        ForeignKey("asset.sha256", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[float] = mapped_column(Float)
    shown: Mapped[bool] = mapped_column(Boolean)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))

    __table_args__ = (
        ForeignKeyConstraint(
            ["client", "filter_key"],
            ["shuffle_round.client", "shuffle_round.filter_key"],
            ondelete="CASCADE",
        ),
        Index("ix_shuffle_entry_next", "client", "filter_key", "shown", "rank"),
    )


# Keyset pages of the gallery and /api/assets walk (taken_local, sha256) newest first;
# shuffles look for photos imported since their round began.
Index("ix_asset_taken_local_sha256", Asset.taken_local, Asset.sha256)
Index("ix_asset_imported_at", Asset.imported_at)


class WebSession(Base):
    """A login session of ``picpipe serve``: valid while its row exists and has not expired.

    Keyed by the SHA-256 of the session id the cookie carries (a catalog dump does not hand
    out live cookies); ``/logout`` deletes the row, which every server process sees.
    """

    __tablename__ = "web_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(1))  # w (full token) | r (read token)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), index=True)


class CardSession(Base):
    """One insertion of a removable card (or its resumption): from reading to safe to format.

    ``state``: reading → replicating → checking → safe | not_safe, or interrupted when the card
    was pulled (the same uuid and label inserted again resumes the session).
    """

    __tablename__ = "card_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_name: Mapped[str] = mapped_column(String(400))  # the configured removable source
    label: Mapped[str] = mapped_column(String(200))
    uuid: Mapped[str] = mapped_column(String(100))
    capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    reader: Mapped[str | None] = mapped_column(Text)
    mount_path: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    insertions: Mapped[int] = mapped_column(Integer, default=1)
    files: Mapped[int] = mapped_column(Integer, default=0)
    blocking: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    import_session_id: Mapped[int | None] = mapped_column(ForeignKey("session.id"))
    sync_session_id: Mapped[int | None] = mapped_column(ForeignKey("session.id"))

    __table_args__ = (Index("ix_card_session_card", "uuid", "label"),)
