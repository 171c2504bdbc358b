"""The known-checksum stage: content a server names by a checksum picpipe has already checked
is provenance only, never downloaded.

Sources whose entries carry a SHA-1 (``caps.server_checksum == "sha1"``: Immich) promise to
check it against the bytes they deliver; the recorder then keeps it on the asset
(`catalog.remote_sources.record_sha1s`). A later entry with that SHA-1, whose original is in
place, ends here as a duplicate: the hash stage never opens (downloads) it. So does an entry
whose ref is the key of one of picpipe's verified replicas (``caps.refs_are_keys_of``: an
Immich source listing picpipe's own uploads to that Immich).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from picpipe.catalog.remote_sources import assets_by_sha1, uploaded_as

if TYPE_CHECKING:
    from picpipe.pipeline.stages import StageContext
    from picpipe.pipeline.task import ImportTask


def known_checksum_stage(ctx: StageContext, task: ImportTask) -> None:
    entry = task.entry
    if task.sha256 is not None:
        return
    caps = ctx.sources[task.source_name].caps
    found = None
    with ctx.catalog.session() as db:
        if caps.refs_are_keys_of is not None:
            # picpipe's own upload (a verified replica under this id): known by its id, even
            # when it was uploaded before SHA-1s were recorded.
            found = uploaded_as(db, caps.refs_are_keys_of, entry.ref)
        if found is None and entry.checksum is not None and caps.server_checksum == "sha1":
            found = assets_by_sha1(db, [entry.checksum]).get(entry.checksum)
    if found is None:
        return
    sha256, library_path, size = found
    try:
        present = (ctx.library_root / library_path).stat().st_size == size
    except OSError:
        present = False
    if not present:
        return  # the original is missing: these bytes are downloaded and heal it
    task.sha256, task.library_path, task.outcome = sha256, library_path, "duplicate"
