"""What happens for the library's consumers after every ingest: views, then Immich's scan.

`after_ingest` is the one call the import command makes once a session is recorded. A
consumer that fails never fails the import (the originals are safe and recorded): its
problem is logged and reported in the result.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from picpipe.catalog.db import open_catalog
from picpipe.errors import PicpipeError
from picpipe.integrations.immich_library import scan_after_ingest
from picpipe.library.views import build_views

if TYPE_CHECKING:
    from picpipe.config import Settings

log = logging.getLogger(__name__)


def after_ingest(settings: Settings, *, added: int) -> dict[str, Any]:
    """Rebuild the configured views and, when ``added`` > 0, ask Immich to scan.

    Returns ``{"views": ..., "immich": ...}`` for what is configured (an ``error`` key where
    a consumer failed); raises nothing but programming errors.
    """
    result: dict[str, Any] = {}
    if settings.views.layouts:
        try:
            catalog = open_catalog(settings.catalog_url)
            try:
                result["views"] = build_views(settings, catalog).as_dict()
            finally:
                catalog.close()
        except PicpipeError as exc:
            log.warning("views not rebuilt: %s", exc.message)
            result["views"] = {"error": exc.message}
    if settings.consumers.immich is not None:
        try:
            result["immich"] = scan_after_ingest(settings, added)
        except PicpipeError as exc:
            log.warning("immich: no scan requested: %s", exc.message)
            result["immich"] = {"scanned": False, "error": exc.message}
    return result
