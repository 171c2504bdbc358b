"""picpipe's mark on the assets it uploads to Immich, and reading it back (API v3).

Immich 3 dropped ``deviceId``/``deviceAssetId``; an asset's key-value metadata
(``PUT /assets/{id}/metadata``, permission ``asset.update``) carries the mark instead:
``{"key": "picpipe", "value": {"sha256": ..., "uploader": "picpipe/<version>"}}``. Listings do
not include metadata, so picpipe's own Immich source knows its uploads from the catalog (their
ids are verified replicas, their SHA-1 recorded); the mark is for everything else that looks at
Immich: a rebuilt catalog, another picpipe, a person wondering where an asset came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from picpipe import __version__

if TYPE_CHECKING:
    from picpipe.clients.immich import ImmichClient

MARKER_KEY = "picpipe"


def mark_upload(client: ImmichClient, asset_id: str, sha256: str) -> None:
    """Record on the asset that picpipe uploaded it (and which content it is)."""
    value = {"sha256": sha256, "uploader": f"picpipe/{__version__}"}
    client.call(
        "PUT",
        f"/assets/{asset_id}/metadata",
        what=f"asset {asset_id} metadata",
        json={"items": [{"key": MARKER_KEY, "value": value}]},
    )


def upload_marker(client: ImmichClient, asset_id: str) -> dict[str, Any] | None:
    """picpipe's mark on the asset, None when it has none."""
    body = client.call("GET", f"/assets/{asset_id}/metadata", what=f"asset {asset_id} metadata")
    for item in body if isinstance(body, list) else []:
        if isinstance(item, dict) and item.get("key") == MARKER_KEY:
            value = item.get("value")
            return value if isinstance(value, dict) else {}
    return None
