"""Refuse to feed picpipe its own folders: a source that is, contains or lies inside the home,
the library, the cache or a destination folder would import thumbnails, cache entries and
replicas as new photos (and grow with every run); a destination inside the library would
replicate the library into itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from picpipe.errors import ConfigError

if TYPE_CHECKING:
    from picpipe.config import Settings


def own_folders(settings: Settings) -> dict[str, Path]:
    """picpipe's own folders by what they are: home, library, cache, each destination folder."""
    found = {
        "the picpipe home": settings.home_root,
        "the library": settings.library_root,
        "the full-resolution cache": settings.home_root / "cache",
    }
    for name, options in settings.destinations.items():
        if str(options.get("kind", "")) == "filesystem" and options.get("path"):
            found[f"destination {name}"] = Path(str(options["path"])).expanduser()
    return found


def refuse_own_folder(settings: Settings, candidate: Path, what: str) -> None:
    """Raise ConfigError (exit 4) when ``candidate`` is, contains or lies inside one of
    picpipe's own folders; ``what`` names the candidate in the message."""
    path = _real(candidate)
    found: list[tuple[int, int, str, str, Path]] = []
    for label, folder in own_folders(settings).items():
        own = _real(folder)
        # The most telling relation first: the folder itself, then the deepest one holding
        # the candidate, then one it holds.
        if path == own:
            found.append((0, 0, "is", label, folder))
        elif _inside(path, own):
            found.append((1, -len(own.parts), "lies inside", label, folder))
        elif _inside(own, path):
            found.append((2, len(own.parts), "contains", label, folder))
    if found:
        _rank, _depth, relation, label, folder = min(found)
        raise ConfigError(
            detail=f"{what} {candidate} {relation} {label} ({folder}); picpipe does not "
            "import its own folders: choose the folder the photos came from"
        )


def refuse_destination_in_library(settings: Settings, name: str, folder: Path) -> None:
    """A filesystem destination inside the library (or holding it) is a configuration error."""
    path, library = _real(folder), _real(settings.library_root)
    if path == library or _inside(path, library) or _inside(library, path):
        raise ConfigError(
            detail=f"destinations.{name}: {folder} overlaps the library ({settings.library_root});"
            " a replica must live outside it"
        )


def _real(path: Path) -> Path:
    # Resolve what exists (symlinks, ".."), keep the rest as given: a missing library is
    # still compared by its configured place.
    return Path(os.path.realpath(path.expanduser()))


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)
