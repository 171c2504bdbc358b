"""How reports print paths and photos: as plain text people can read and paste.

- Paths are never Rich markup or emoji codes: a folder named ``[bold]x`` or
  ``smile:thumbs_up:`` prints as is (`plain`).
- A path in a line of failures is shell-quoted, so it can be pasted into ``ls`` or ``rm``.
- A photo is named by its source path (or original name) with a short hash, not by its
  ``<sha256>.<ext>`` name in the library (`photo_label`).
"""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from collections.abc import Mapping

SHORT_HASH = 10
_SHA_NAME = re.compile(r"(?:^|/)([0-9a-f]{64})(?:\.[^/]*)?$")


def plain(text: str, style: str = "") -> Text:
    """``text`` as a Rich Text: no markup, no emoji codes, no highlighting."""
    return Text(text, style=style)


def shell_quote(path: str) -> str:
    """``path`` quoted for a POSIX shell (left bare when it needs no quotes)."""
    return shlex.quote(path)


def sha_of_library_path(path: str) -> str | None:
    """The hash in a library path ``originals/…/<sha256>.<ext>``, if it has one."""
    match = _SHA_NAME.search(path)
    return match.group(1) if match else None


def photo_label(path: str, known: Mapping[str, str]) -> str:
    """A library path as people know the photo: ``'/src/IMG_1.ARW' (3fa4c2e1b0)``.

    ``known`` maps hashes to source paths (`catalog.known_as.source_paths_of`); a path
    without a known hash is shown quoted as it is.
    """
    sha = sha_of_library_path(path)
    if sha is None or sha not in known:
        return shell_quote(path)
    return f"{shell_quote(known[sha])} ({sha[:SHORT_HASH]})"


def failure_path(display: str, roots: Mapping[str, str]) -> str:
    """A failure's ``source:ref`` as a local path when the source is a folder, quoted.

    ``roots`` maps configured source names to their folders; an ad-hoc source is named by
    its folder already. A folder may itself contain ``:``, so every split is tried.
    """
    for at in (i for i, ch in enumerate(display) if ch == ":"):
        name, ref = display[:at], display[at + 1 :]
        root = roots.get(name) or (name if name.startswith("/") else None)
        if root is not None and os.path.isdir(root):
            return shell_quote(os.path.join(root, ref))
        if root is not None and os.path.basename(root) == ref:  # a file imported by itself
            return shell_quote(root)
    return shell_quote(display)


__all__ = [
    "failure_path",
    "photo_label",
    "plain",
    "sha_of_library_path",
    "shell_quote",
]
