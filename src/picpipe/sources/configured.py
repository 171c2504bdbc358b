"""Configured sources opened by name: the one place a ``sources.<name>`` entry becomes a Source
(cards excepted: they are read when inserted).

`picpipe import`, the service, `picpipe watch`'s polled sources and the full-resolution fetch
of index-only assets (``web/origins.py``) all open sources here, so they refuse the same
things and a kind added here is importable, pollable and fetchable at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from picpipe.errors import ConfigError
from picpipe.library.guards import refuse_own_folder
from picpipe.sources.base import Source, load_source_kind, source_options
from picpipe.sources.folder import FolderSource
from picpipe.sources.watched import WatchedOptions

if TYPE_CHECKING:
    from picpipe.config import Settings


def configured_source(settings: Settings, name: str, options: dict[str, object]) -> Source:
    """The source of entry ``name``; ConfigError when it is not valid or cannot be imported
    (a removable source is read when a card is inserted)."""
    kind = str(options.get("kind", "folder"))
    parsed = source_options(name, options)
    if kind == "folder":
        folder = Path(parsed.path).expanduser()
        refuse_own_folder(settings, folder, f"sources.{name}:")
        return FolderSource(name, folder, settings.scan)
    if kind == "removable":
        raise ConfigError(
            detail=f"sources.{name}: a removable source is read when a card is inserted; "
            "run `picpipe watch` (and `picpipe cards` for its sessions)"
        )
    if isinstance(parsed, WatchedOptions):  # watched, icloudpd: an import is one reconcile
        folder = Path(parsed.path).expanduser()
        refuse_own_folder(settings, folder, f"sources.{name}:")
        source: Source = load_source_kind(kind)(name, folder, settings.scan, parsed)
        return source
    factory = getattr(load_source_kind(kind), "from_options", None)
    if factory is not None:  # remote kinds (immich): built from their options alone
        remote: Source = factory(name, parsed)
        return remote
    if kind == "synology":
        from picpipe.sources.synology import SynologySource  # httpx loads only when configured

        return SynologySource(name, parsed, home=settings.home_root, scan=settings.scan)
    raise ConfigError(detail=f"sources.{name}: kind {kind!r} cannot be imported yet")


def importable_names(settings: Settings) -> list[str]:
    """Every configured source an import of "everything" reads: all but cards."""
    return [n for n, o in settings.sources.items() if str(o.get("kind", "folder")) != "removable"]


def build_source(settings: Settings, name: str, options: dict[str, object]) -> Source:
    return configured_source(settings, name, options)


def open_configured_source(settings: Settings, name: str) -> Source:
    """The configured source ``name``; ConfigError when there is none of that name."""
    options = settings.sources.get(name)
    if options is None:
        raise ConfigError(detail=f"{name}: no source of that name in the config")
    return configured_source(settings, name, options)
