"""Atomic file writes: a temp name in the target folder, write, fsync, rename, fsync the folder.

A reader never sees a half-written file under its final name; a crash leaves the old file
(or none) plus at worst a temp file (``layout.TEMP_PREFIX`` + the caller's middle part) that
the owner's sweep removes. Every local write that must not be seen half-done goes through
here: originals (``writer.py``, which keeps its own copy loop and uses `temp_path` and
`rename_over`), sidecars, thumbnails and their metadata JSON, full-resolution cache entries, the
filesystem destination.

Temp names are ``TEMP_PREFIX + middle``: the caller chooses ``middle`` (a content prefix, a
pid, a random token, later a run id) so that its own sweep can recognise its leftovers.
``fsync`` is the caller's setting: with it, a rename that returned survives a power cut.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from typing import TYPE_CHECKING

from picpipe.library.layout import TEMP_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

log = logging.getLogger(__name__)


def temp_path(final: Path, middle: str) -> Path:
    """``final``'s folder / ``TEMP_PREFIX + middle``: where a write of ``final`` starts."""
    return final.parent / f"{TEMP_PREFIX}{middle}"


def rename_over(temp: Path, final: Path, *, fsync: bool) -> None:
    """Rename ``temp`` over ``final``; with ``fsync``, then fsync the folder (the rename is
    durable when this returns). Raises OSError; ``temp`` is the caller's to remove then."""
    os.replace(temp, final)
    if fsync:
        fsync_path(final.parent)


@contextlib.contextmanager
def atomic_path(final: Path, *, fsync: bool, middle: str | None = None) -> Iterator[Path]:
    """A temp path for the block to write ``final``'s bytes to, by any means (a library call
    that takes a file name, a copy loop); renamed over ``final`` when the block ends normally.

    With ``fsync`` the temp file is fsynced before the rename and the folder after it. When
    the block (or the rename) raises, the temp file is removed and the exception propagates;
    ``final`` is then untouched. ``middle`` defaults to a random token.
    """
    temp = temp_path(final, middle if middle is not None else secrets.token_hex(8))
    try:
        yield temp
        if fsync:
            fsync_path(temp)
        rename_over(temp, final, fsync=fsync)
    except BaseException:
        unlink_quietly(temp)
        raise


def atomic_write_bytes(
    final: Path, data: bytes | bytearray | memoryview, *, fsync: bool, middle: str | None = None
) -> None:
    """Write ``data`` as ``final`` atomically (see `atomic_path`); raises OSError.

    A temp file of the same name left by a crash is overwritten.
    """
    with atomic_path(final, fsync=fsync, middle=middle) as temp, open(temp, "wb") as handle:
        handle.write(data)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    """Remove a temp file; a missing one is fine, other errors are logged, never raised."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove temp file %s: %s", path, exc.strerror)
