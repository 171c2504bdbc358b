"""What every request handler may use: settings, the open catalog, roots and the media server.

``create_app`` builds one ``WebContext`` per application and keeps it on ``app.state.ctx``;
handlers reach it through the ``get_context`` dependency, never through module globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime

if TYPE_CHECKING:
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings


@dataclass
class WebContext:
    """One application's shared state.

    ``media`` is the ``picpipe.web.media.MediaServer`` that answers image and video bytes
    (thumbnails, full resolution through the cache). ``extras`` is for components that need
    a place to keep per-application objects (e.g. the live status broadcaster).
    """

    settings: Settings
    catalog: Catalog
    library_root: Path
    home_root: Path
    media: Any
    extras: dict[str, Any] = field(default_factory=dict)


def get_context(request: Request) -> WebContext:
    """FastAPI dependency: the ``WebContext`` of the application serving ``request``."""
    ctx = request.app.state.ctx
    assert isinstance(ctx, WebContext)
    return ctx
