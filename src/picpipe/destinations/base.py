"""The Destination protocol: put a stream with its checksums, verify it at the far end, stat, list.

Contract (every kind; checked by ``tests/destinations/test_contract.py`` against a real server or
a spec-built fake):
- There is no delete of photos. ``put`` never removes anything but its own temporary object;
  the optional ``remove_snapshot`` (`Removing`) takes only old catalog snapshots.
- ``put`` is idempotent and never leaves a half object visible under ``key``: a temp name and a
  rename on file systems and SMB, one final commit (multipart complete, block list) on S3 and
  Azure. It may overwrite what is at ``key`` (the engine decides when that is allowed). It
  returns the `RemoteObject` as the far end now describes it.
- ``verify`` checks the object at the far end against the asset's `Digests`: cheap (size and a
  checksum the server computed or stored) unless ``deep``, when it reads the remote bytes back
  and hashes them. It returns a `Verification`; only one with ``ok`` makes a replica verified.
  A missing object is a failed verification, not an exception.
- ``stat`` returns None when nothing is at ``key``.
- Errors are picpipe errors: `DestinationUnavailable` (retryable: timeouts, resets, 429/5xx),
  `DestinationRejected` (this object, for good), `DestinationAuthFailed`,
  `DestinationMisconfigured`. Messages never carry credentials or local paths.
- Instances are used from several threads at once (one per concurrent upload).
"""

from __future__ import annotations

import io
import os
import re
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from picpipe.errors import (
    ConfigError,
    DestinationMisconfigured,
    DestinationRejected,
    IntegrityMismatch,
)
from picpipe.hashing import digest_stream, new_hasher
from picpipe.redact import validation_problems

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from datetime import datetime

ChecksumKind = Literal["md5", "sha1", "sha256"]
READ_CHUNK = 1 << 20  # for kinds that stream reads


@dataclass(frozen=True, slots=True)
class Digests:
    """The asset's size and checksums, hex. SHA-256 and size come from the catalog; MD5 and
    SHA-1 are computed (in the same read as the upload's bytes) only for kinds whose
    ``caps.needs`` asks for them."""

    size: int
    sha256: str
    md5: str | None = None
    sha1: str | None = None

    @classmethod
    def of_bytes(cls, data: bytes) -> Digests:
        found, size, _ = digest_stream(io.BytesIO(data), ("sha256", "md5", "sha1"))
        return cls(size, found["sha256"], found["md5"], found["sha1"])


@dataclass(frozen=True, slots=True)
class AssetRef:
    """What a destination may know about the asset it stores (layouts, Immich fields)."""

    sha256: str
    size: int
    ext: str  # of the library original, lower case, no dot ("jpg")
    kind: str  # photo | raw | video
    taken_local: datetime
    taken_offset_min: int | None
    original_name: str  # the file name in its first source
    source_path: str  # its path relative to its first source ("DCIM/100APPLE/IMG_0001.JPG")
    mime_type: str | None = None
    duration: float | None = None
    pair_id: str | None = None
    pair_kind: str | None = None  # live | raw+jpeg
    albums: tuple[str, ...] = ()
    modified: datetime | None = None  # the source file's mtime (Immich's fileModifiedAt)
    # The library's XMP sidecar, read only for kinds with ``caps.takes_sidecar`` (Immich reads
    # rating, keywords and description from the one sent with the upload).
    sidecar: bytes | None = None


def plain_file_ref(name: str, digests: Digests, mime_type: str) -> AssetRef:
    """An `AssetRef` for a file that is not an asset (a sidecar, a catalog snapshot): what
    ``put`` needs to describe it (its name, size, type); the kinds that hold files store it
    under the key they are given and ignore the rest."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).replace(tzinfo=None)
    ext = name.rpartition(".")[2].lower() if "." in name else "bin"
    return AssetRef(
        digests.sha256, digests.size, ext, "file", now, 0, name, name, mime_type=mime_type
    )


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """An object at a destination as the far end describes it; checksums hex when known."""

    key: str
    size: int
    sha256: str | None = None  # stored by us in metadata or computed by the server
    md5: str | None = None
    sha1: str | None = None
    etag: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. Immich's asset id and status
    # Set by ``put`` only when the stored bytes themselves were checked against the asset's
    # checksum during the upload (S3's MD5 ETag, Azure's transactional Content-MD5, a file read
    # back before its rename): that is a verification, and the engine spares another one.
    server_checked: bool = False


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking one remote object; ``method`` says what was compared."""

    ok: bool
    key: str
    method: str  # e.g. "sha256 re-read", "content-md5", "immich sha1"
    detail: str = ""  # why it failed, for people
    remote: RemoteObject | None = None


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """What ``picpipe test-connection`` prints for one destination or source."""

    name: str
    kind: str
    reachable: bool
    authenticated: bool
    writable: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reachable and self.authenticated and self.writable


@dataclass(frozen=True, slots=True)
class DestinationCaps:
    """Optional abilities as data (rclone ``features.go``)."""

    remote_checksum: ChecksumKind | None = None  # what ``verify`` can compare without reading
    resumable: bool = False  # an interrupted ``put`` continues where it stopped
    keyed_by_server: bool = False  # the server names the object (Immich): ``put`` returns the key
    needs: frozenset[str] = frozenset()  # extra digests ``put`` wants: {"md5"}, {"sha1"}
    bulk_check: bool = False  # has ``find_existing`` (skip what the server already holds)
    links_pairs: bool = False  # has ``link_pairs`` (Live Photo still ↔ video)
    albums: bool = False  # has ``add_to_albums``
    takes_sidecar: bool = False  # ``put`` sends ``asset.sidecar`` with the upload (Immich)
    default_layout: str = "{YYYY}/{MM}/{DD}/{name}"


class DestinationOptions(BaseModel):
    """Options every kind has; each kind subclasses this with its own fields and docs.

    Field descriptions become the comments of ``picpipe config --template``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str
    layout: str | None = Field(
        default=None,
        description="key template, e.g. {YYYY}/{MM}/{DD}/{name} or {prefix}/{sha256[:2]}/"
        "{sha256}/{path}; default: the kind's own",
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=64, description="uploads at once here; default replicas.concurrency"
    )


class Destination(Protocol):
    """One replica target. See the module docstring for the contract."""

    kind: ClassVar[str]
    caps: ClassVar[DestinationCaps]
    Options: ClassVar[type[DestinationOptions]]
    name: str

    def key_for(self, asset: AssetRef) -> str:
        """The object key under the configured layout (pure; no I/O)."""
        ...

    def stat(self, key: str) -> RemoteObject | None:
        """Describe the object at ``key``, or None when there is none."""
        ...

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        digests: Digests,
        asset: AssetRef,
        resume: dict[str, Any] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> RemoteObject:
        """Store ``data`` (exactly ``digests.size`` bytes, seekable) at ``key``.

        ``checkpoint`` persists resume state (an upload id, done parts) as the upload goes;
        a later call gets it back as ``resume``. Kinds without ``caps.resumable`` ignore both.
        """
        ...

    def verify(self, key: str, digests: Digests, *, deep: bool = False) -> Verification:
        """Check the object at ``key`` against ``digests``; ``deep`` re-reads the bytes."""
        ...

    def read(self, key: str) -> Iterator[bytes]:
        """Stream the object's bytes (deep verification, full-resolution fallback).

        A missing object raises `IntegrityMismatch` with detail "missing".
        """
        ...

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        """Every object under ``prefix`` (for reconciliation); cheap fields only."""
        ...

    def check(self) -> ConnectionReport:
        """Reachable, authenticated, writable (writes and removes a small probe object)."""
        ...

    def close(self) -> None: ...


class BulkChecking(Protocol):
    """Optional (``caps.bulk_check``): ask the server which assets it already holds."""

    def find_existing(self, items: Sequence[tuple[AssetRef, Digests]]) -> dict[str, RemoteObject]:
        """sha256 → the object the server already holds; those count as verified replicas."""
        ...


class PairLinking(Protocol):
    """Optional (``caps.links_pairs``): link Live Photo halves that are both replicated."""

    def link_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Link each (still key, video key); returns the pairs that are now linked."""
        ...


class AlbumAssigning(Protocol):
    """Optional (``caps.albums``): put replicated assets into named albums at the far end."""

    def add_to_albums(self, albums: dict[str, list[str]]) -> dict[str, list[str]]:
        """Album name → remote keys; creates missing albums, ignores keys already in them.

        Returns the keys now in each album (nothing when the kind's options turn albums off)."""
        ...


SNAPSHOT_PREFIX = "picpipe-catalog/"  # catalog snapshots (`jobs/catalog_backup.py`)


class Removing(Protocol):
    """Optional: remove an old catalog snapshot, the one thing picpipe ever deletes remotely.

    Implementations refuse every key outside ``SNAPSHOT_PREFIX`` (`require_snapshot_key`).
    """

    def remove_snapshot(self, key: str) -> None: ...


def require_snapshot_key(destination: str, key: str) -> None:
    """Nothing but picpipe's own catalog snapshots is ever removed from a destination."""
    leaf = key.removeprefix(SNAPSHOT_PREFIX)
    if not key.startswith(SNAPSHOT_PREFIX) or "/" in leaf or not leaf.startswith("catalog-"):
        raise DestinationRejected(
            destination=destination, key=key, detail="only old catalog snapshots are removed"
        )


def verify_by_reading(
    key: str, chunks: Iterable[bytes], digests: Digests, method: str = "sha256 re-read"
) -> Verification:
    """Hash the remote bytes ``chunks`` yields and compare them with ``digests``.

    The one deep verification every kind shares: ``chunks`` is usually ``destination.read(key)``,
    whose `IntegrityMismatch` (nothing at ``key``) becomes a failed "missing" verification.
    """
    digest = new_hasher()
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            digest.update(chunk)
    except IntegrityMismatch:
        return Verification(False, key, method, "missing")
    remote = RemoteObject(key=key, size=size, sha256=digest.hexdigest())
    if size != digests.size:
        return Verification(False, key, method, f"size {size} != {digests.size}", remote)
    if remote.sha256 != digests.sha256:
        return Verification(False, key, method, "sha256 differs", remote)
    return Verification(True, key, method, remote=remote)


# -- layouts --------------------------------------------------------------------------------

OBJECT_STORE_LAYOUT = "{prefix}/{sha256[:2]}/{sha256}/{path}"
DATE_LAYOUT = "{YYYY}/{MM}/{DD}/{name}"
_FIELD = re.compile(r"\{(\w+)(\[(-?\d*):(-?\d*)\])?\}")  # {name} or {name[a:b]}
_UNSAFE = re.compile(r'[\x00-\x1f\\:*?"<>|]')


def layout_fields(asset: AssetRef, prefix: str = "") -> dict[str, Any]:
    """The fields a layout template may use."""
    taken = asset.taken_local
    return {
        "prefix": prefix.strip("/"),
        "sha256": asset.sha256,
        "path": asset.source_path,
        "name": asset.original_name,
        "stem": Path(asset.original_name).stem,
        "ext": asset.ext,
        "kind": asset.kind,
        "YYYY": f"{taken.year:04d}",
        "MM": f"{taken.month:02d}",
        "DD": f"{taken.day:02d}",
    }


def render_layout(template: str, asset: AssetRef, prefix: str = "") -> str:
    """Apply a layout template: a clean relative key with ``/`` separators and no ``..``.

    Characters Windows and SMB refuse are replaced by ``_``; empty segments (an empty prefix)
    disappear. A template naming an unknown field is a configuration error.
    """
    fields = layout_fields(asset, prefix)

    def fill(match: re.Match[str]) -> str:
        name, start, end = match.group(1), match.group(3), match.group(4)
        if name not in fields:
            raise ConfigError(
                detail=f"layout {template!r} names an unknown field {{{name}}}; "
                f"known: {', '.join(sorted(fields))}"
            )
        value = str(fields[name])
        if match.group(2):
            value = value[int(start) if start else None : int(end) if end else None]
        return value

    raw = _FIELD.sub(fill, template)
    parts = [_UNSAFE.sub("_", p).strip() for p in raw.replace("\\", "/").split("/")]
    parts = [p for p in parts if p and p not in {".", ".."}]
    if not parts:
        raise ConfigError(detail=f"layout {template!r} gives an empty key")
    return "/".join(parts)


def collision_key(key: str, sha256: str) -> str:
    """The key to use when ``key`` holds someone else's bytes: ``IMG_0001~1a2b3c4d5e6f.jpg``."""
    head, _, leaf = key.rpartition("/")
    stem, dot, ext = leaf.rpartition(".")
    if not stem:
        stem, dot, ext = leaf, "", ""
    renamed = f"{stem}~{sha256[:12]}{dot}{ext}"
    return f"{head}/{renamed}" if head else renamed


# -- secrets --------------------------------------------------------------------------------


def resolve_secret(
    destination: str,
    what: str,
    value: SecretStr | None,
    env: str | None = None,
    file: Path | None = None,
) -> str | None:
    """A secret from the config value, a named environment variable, or a file (first wins).

    Errors name the variable or file but never print the secret.
    """
    if value is not None:
        return value.get_secret_value()
    if env:
        found = os.environ.get(env)
        if found is None:
            raise DestinationMisconfigured(
                destination=destination, detail=f"{what}: environment variable {env} is not set"
            )
        return found
    if file is not None:
        try:
            return file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise DestinationMisconfigured(
                destination=destination,
                detail=f"{what}: cannot read secret file {file} ({exc.strerror})",
            ) from exc
    return None


# -- registry -------------------------------------------------------------------------------

_loaded: dict[str, type[Destination]] = {}
_registry_lock = threading.Lock()


def destination_kind_names() -> list[str]:
    """The names of every installed kind (``picpipe.destinations`` entry points)."""
    return sorted(ep.name for ep in entry_points(group="picpipe.destinations"))


def destination_kind(kind: str) -> type[Destination]:
    """The class of one kind, imported on first use (an SDK loads only when configured)."""
    with _registry_lock:
        if kind not in _loaded:
            found = [ep for ep in entry_points(group="picpipe.destinations") if ep.name == kind]
            if not found:
                raise ConfigError(
                    detail=f"unknown destination kind {kind!r}; installed kinds: "
                    + ", ".join(destination_kind_names())
                )
            _loaded[kind] = found[0].load()
        return _loaded[kind]


def destination_options(name: str, raw: dict[str, Any]) -> DestinationOptions:
    """Validate one ``destinations.<name>`` entry of the config against its kind's Options."""
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in destination_kind_names():
        raise ConfigError(
            detail=f"destinations.{name}.kind must be one of "
            f"{', '.join(destination_kind_names())} (got {kind!r})"
        )
    try:
        return destination_kind(kind).Options.model_validate(raw)
    except ValidationError as exc:
        # `from None`: pydantic's text carries the input values (an SMB password, a SAS), and
        # `-v` prints the chained traceback.
        options_model = destination_kind(kind).Options
        problems = validation_problems(exc, prefix=f"destinations.{name}.", model=options_model)
        raise ConfigError(detail="; ".join(problems)) from None


def open_destination(name: str, raw: dict[str, Any]) -> Destination:
    """Build the named destination from its config entry (no I/O until first used)."""
    options = destination_options(name, raw)
    cls: Any = destination_kind(options.kind)
    built: Destination = cls(name, options)
    return built
