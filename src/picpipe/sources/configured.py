"""Sources built from the config's ``sources:`` entries (cards excepted: they are read when
inserted). `import` and the service build them here, so both refuse the same things."""

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
    """The source ``name`` of the config; ConfigError when it cannot be imported."""
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
