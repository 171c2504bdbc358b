"""Finding what a Synology source names: an album by name or id, a folder by path.

Albums have no name filter in the API, so they are paged through and matched here (NOTES §5);
folders are walked from the space's root (``Browse.Folder get id=0``, NOTES §7).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from picpipe.clients.synology_models import Album, Folder
from picpipe.errors import SourceMisconfigured

if TYPE_CHECKING:
    from collections.abc import Iterator

    from picpipe.clients.synology import SynologyClient

log = logging.getLogger(__name__)

FOLDER_PAGE = 1000  # clients use up to 2000 (NOTES §7)


def find_album(client: SynologyClient, wanted: str) -> Album:
    """An album by id (digits) or by name: the exact name first, then ignoring case; of
    several with one name the oldest (lowest id). SourceMisconfigured when none is."""
    albums = list(client.albums())
    if wanted.isdigit():
        by_id = [a for a in albums if a.id == int(wanted)]
        if by_id:
            return by_id[0]
    exact = [a for a in albums if a.name == wanted]
    folded = [a for a in albums if a.name.casefold() == wanted.casefold()]
    for found in (sorted(exact, key=lambda a: a.id), sorted(folded, key=lambda a: a.id)):
        if found:
            if len(found) > 1:
                log.warning(
                    "source %s: %d albums are named %r; using the oldest (id %d)",
                    client.source,
                    len(found),
                    wanted,
                    found[0].id,
                )
            return found[0]
    raise SourceMisconfigured(
        source=client.source,
        detail=f"album {wanted!r} not found (neither own nor shared with {client.account}); "
        "check `albums` (names or ids)",
    )


def find_folder(client: SynologyClient, path: str, *, team: bool = False) -> Folder:
    """The folder at ``path`` ("2024/kitchen") of the personal space or the Shared Space;
    SourceMisconfigured when there is none."""
    api = "SYNO.FotoTeam.Browse.Folder" if team else "SYNO.Foto.Browse.Folder"
    folder = Folder.from_json(client.call(api, "get", {"id": 0})["folder"])
    for part in [p for p in path.split("/") if p]:
        found = [
            f for f in subfolders(client, folder, team=team) if f.path.rpartition("/")[2] == part
        ]
        if not found:
            space = "the Shared Space" if team else "the personal space"
            raise SourceMisconfigured(
                source=client.source,
                detail=f"folder {path!r} not found in {space}; check `folders`",
            )
        folder = found[0]
    return folder


def subfolders(client: SynologyClient, parent: Folder, *, team: bool = False) -> Iterator[Folder]:
    """The folders directly under ``parent``, page by page."""
    api = "SYNO.FotoTeam.Browse.Folder" if team else "SYNO.Foto.Browse.Folder"
    offset = 0
    while True:
        params = {"id": parent.id, "offset": offset, "limit": FOLDER_PAGE}
        page = client.call(api, "list", params)["list"]
        yield from (Folder.from_json(raw) for raw in page)
        if len(page) < FOLDER_PAGE:
            return
        offset += FOLDER_PAGE


__all__ = ["find_album", "find_folder", "subfolders"]
