"""`picpipe repair`'s sidecars: a lost sidecar from a replica, else regenerated from the catalog.

A sidecar picpipe had settled that is gone comes back from the first verified replica of its
original whose destination holds ``<key>.xmp`` (or ``<key stem>.xmp``), where sidecar
replication keeps it, when exiftool reads it as XMP: it is written to a temp name beside the
original, read there, then renamed into place. Without one it is regenerated from the catalog:
picpipe's own fields and the user fields picpipe last read (what another tool wrote since is
not in it; the report says so). Either way the catalog then knows the sidecar as settled.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from picpipe.catalog.origins import verified_replicas
from picpipe.catalog.queries import asset_provenance, assets_by_sha, update_sidecar_fields
from picpipe.catalog.sidecar_replicas import sidecar_keys
from picpipe.errors import PicpipeError
from picpipe.library.atomic import atomic_path
from picpipe.library.layout import run_temp_tag
from picpipe.pipeline.sidecar import UserFields, read_sidecar, write_sidecar
from picpipe.pipeline.sidecar_sync import facts_of, vars_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.pipeline.exiftool import ExifToolPool
    from picpipe.web.origins import Origins

log = logging.getLogger(__name__)
SIDECAR_LIMIT = 16 << 20  # a remote "sidecar" larger than this is not one


def restore_sidecar(
    origins: Origins,
    root: Path,
    sha256: str,
    rel: str,
    tools: ExifToolPool,
    settings: Settings,
    *,
    dry_run: bool,
    run_id: int,
) -> tuple[str, str]:
    """Put back the sidecar ``rel`` of ``sha256``: (outcome, where from or why not).

    The outcome is ``restored`` / ``regenerated`` (``would ...`` with ``dry_run``), or
    ``unrestored``.
    """
    catalog = origins.catalog
    with catalog.session() as db:
        asset = assets_by_sha(db, [sha256]).get(sha256)
        provenance = asset_provenance(db, [sha256]).get(sha256, [])
        if asset is None:
            return "unrestored", "the catalog no longer knows this asset"
        facts, user = facts_of(asset, provenance), UserFields.from_values(vars_of(asset))
        library_path = asset.library_path
    if not (root / library_path).is_file() and not dry_run:
        return "unrestored", "its original is missing and could not be restored"
    tool = tools.get()
    fsync = settings.imports.fsync
    for label, data in _replica_sidecars(origins, sha256):
        final = root / rel
        if dry_run:
            return "would restore", label
        middle = f"{run_temp_tag(run_id)}repair-{secrets.token_hex(6)}.xmp"
        try:
            with atomic_path(final, fsync=fsync, middle=middle) as temp:
                temp.write_bytes(data)
                read_sidecar(tool, temp)  # only XMP that exiftool reads goes into place
        except (PicpipeError, OSError) as exc:
            log.warning("%s: the sidecar of %s is not usable: %s", label, sha256[:12], exc)
            continue
        _settled(catalog, sha256, final.stat().st_mtime_ns)
        return "restored", label
    why = "no replica holds it; regenerated from the catalog (edits made in other tools "
    why += "since picpipe last read the sidecar are not in it)"
    if dry_run:
        return "would be regenerated", why
    try:
        written = write_sidecar(
            tool, root, library_path, facts, user, fsync=fsync, run_id=run_id, name=rel
        )
    except PicpipeError as exc:
        return "unrestored", f"could not be regenerated ({short_reason(exc)})"
    _settled(catalog, sha256, written.mtime_ns)
    return "regenerated", why


def _replica_sidecars(origins: Origins, sha256: str) -> Iterator[tuple[str, bytes]]:
    """The sidecar bytes beside each verified replica of ``sha256``, read one at a time."""
    with origins.catalog.session() as db:
        replicas = verified_replicas(db, sha256)
        recorded = sidecar_keys(db, sha256)
    for name, key in replicas:
        destination = origins.destination(name)
        # A kind that names objects itself (Immich) holds no sidecar files beside them.
        if destination is None or not key or destination.caps.keyed_by_server:
            continue
        stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
        # The key sync recorded first: it may be a new version beside someone else's edit.
        keys = (recorded.get(name, f"{key}.xmp"), f"{key}.xmp", f"{stem}.xmp")
        for candidate in dict.fromkeys(keys):
            try:
                if (remote := destination.stat(candidate)) is None:
                    continue
                if remote.size > SIDECAR_LIMIT:
                    continue
                data = b"".join(destination.read(candidate))
            except (PicpipeError, OSError) as exc:
                log.warning("replica %r: cannot read %s: %s", name, candidate, short_reason(exc))
                continue
            yield f"replica {name!r}", data
            break


def _settled(catalog: Catalog, sha256: str, mtime_ns: int) -> None:
    """The sidecar in place is the one picpipe knows (its user fields are the catalog's)."""
    with catalog.write() as db:
        update_sidecar_fields(db, [{"sha256": sha256, "sidecar_mtime_ns": mtime_ns}])


def short_reason(exc: BaseException) -> str:
    """A reason for the report: picpipe's message, or the OS error without the path."""
    if isinstance(exc, FileNotFoundError):
        return "the file is not there any more"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return exc.message if isinstance(exc, PicpipeError) else str(exc)
