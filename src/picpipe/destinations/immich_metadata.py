"""An edit made after an upload, pushed to the Immich asset through its API.

Immich applies the XMP sidecar that comes with an upload once; it has no call that takes a
new sidecar for an asset it holds. So when a library sidecar changes after the upload (a
rating or keywords set in digiKam), picpipe sends what people edit as Immich's own fields:
the description (``dc:description``, else the title) and rating with ``PUT /assets/{id}``,
the keywords as tags (``PUT /tags`` finds or creates them by full path, ``PUT /tags/assets``
attaches them). A keyword taken out of the sidecar is untagged only when picpipe put that tag
on the asset (``previous``): tags people gave the photo in Immich itself stay.

Every call goes through `clients.immich.ImmichClient` (its timeouts, error mapping, key only
in the header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from picpipe.clients.immich import ImmichClient

# Immich's rating: 1-5 stars, -1 rejected, null unrated (XMP's 0).
_RATINGS = range(-1, 6)


@dataclass(frozen=True, slots=True)
class ImmichEdits:
    """The user fields of one sidecar as Immich holds them; None: the sidecar has none."""

    description: str | None
    rating: int | None
    tags: tuple[str, ...]

    @classmethod
    def of(
        cls,
        *,
        description: str | None,
        title: str | None,
        rating: int | None,
        keywords: Sequence[str] | None,
    ) -> ImmichEdits:
        text = description or title
        stars = rating if rating in _RATINGS and rating != 0 else None
        # Immich's tag values are paths with '/': a Lightroom "Places|Paris" keyword is one.
        tags = tuple(dict.fromkeys(k.replace("|", "/").strip("/") for k in keywords or ()))
        return cls(text, stars, tuple(t for t in tags if t))


def push_edits(
    client: ImmichClient, asset_id: str, edits: ImmichEdits, previous: Sequence[str]
) -> tuple[str, ...]:
    """Make the asset show ``edits``; returns the tags picpipe has put on it now."""
    body: dict[str, Any] = {"description": edits.description or "", "rating": edits.rating}
    client.call("PUT", f"/assets/{asset_id}", what=f"asset {asset_id}", json=body)
    wanted = set(edits.tags)
    if edits.tags:
        ids = _tag_ids(client, edits.tags)
        payload = {"tagIds": sorted(set(ids.values())), "assetIds": [asset_id]}
        client.call("PUT", "/tags/assets", what=f"tags of asset {asset_id}", json=payload)
    dropped = [t for t in previous if t not in wanted]
    if dropped:
        for tag_id in sorted(set(_tag_ids(client, dropped).values())):
            client.call(
                "DELETE",
                f"/tags/{tag_id}/assets",
                what=f"tags of asset {asset_id}",
                json={"ids": [asset_id]},
            )
    return edits.tags


def _tag_ids(client: ImmichClient, values: Sequence[str]) -> dict[str, str]:
    """Tag value (full path) → id; ``PUT /tags`` creates the missing ones and their parents."""
    found = client.call("PUT", "/tags", what="tags", json={"tags": list(values)}) or []
    return {str(t["value"]): str(t["id"]) for t in found if t.get("value") in values}
