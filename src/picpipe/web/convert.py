"""Upright JPEGs of full-resolution originals browsers cannot show (HEIC, RAW, TIFF, video stills).

The conversion reuses the thumbnail decoders (``pipeline/decoders.py``: pillow-heif, libvips,
LibRaw, PyAV) at full size, then ``to_srgb`` and ``upright`` from ``pipeline/thumbs.py``, and
encodes a JPEG without metadata (so no viewer turns it a second time). It runs in a worker
process: a decoder that crashes on a hostile file takes the worker down, not the server, and a
big RAW does not hold the event loop's process. The worker is forked from the server like the
thumbnail workers (see ``pipeline/thumbrun.py`` for why fork), with the decoders imported
first so pillow-heif's libheif binds before libvips'.

The worker reads the original through ``/proc/<server pid>/fd/<fd>``: the server hands it the
descriptor it already opened (library original, cache entry or uncached spool), so a file that
is evicted or unlinked meanwhile is still converted whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import stat
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from picpipe.errors import ConversionFailed, DependencyMissing, ThumbnailFailed

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
_FULL_BOX = (1 << 20, 1 << 20)  # no downscaling: the decoders' box is the whole picture
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def convert_file(path: str, kind: str, max_pixels: int, quality: int) -> tuple[bytes | None, str]:
    """Worker side: (JPEG bytes, "") or (None, reason). Never raises for a bad file."""
    from picpipe.pipeline.decoders import decode, vips_reason
    from picpipe.pipeline.thumbs import to_srgb, upright

    try:
        decoded = decode(path, kind, max_pixels=max_pixels, box=_FULL_BOX)
        image = upright(to_srgb(decoded.image), decoded.orientation)
        data: bytes = image.jpegsave_buffer(Q=quality, strip=True, optimize_coding=True)
    except ThumbnailFailed as exc:
        return None, exc.reason
    except MemoryError:
        return None, "out of memory while decoding"
    except Exception as exc:
        import pyvips

        if isinstance(exc, pyvips.Error):
            return None, vips_reason(exc, path)
        log.debug("conversion of %s failed", path, exc_info=True)
        return None, f"internal error: {type(exc).__name__}"
    return data, ""


class Converter:
    """A small pool of conversion workers, started on first use and restarted after a crash."""

    def __init__(self, *, max_pixels: int, workers: int = 1, quality: int = JPEG_QUALITY) -> None:
        self.max_pixels = max_pixels
        self.workers = max(1, workers)
        self.quality = quality
        self.conversions = 0
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    async def to_jpeg(self, fd: int, kind: str) -> bytes:
        """An upright JPEG of the original open as ``fd`` (a ``kind`` photo, raw or video).

        Raises ConversionFailed with a person's reason (corrupt file, crash, over the pixel
        limit) and DependencyMissing when the decoders cannot be loaded.
        """
        path = f"/proc/{os.getpid()}/fd/{fd}"
        pool = self._get_pool()
        try:
            data, reason = await asyncio.wrap_future(
                pool.submit(convert_file, path, kind, self.max_pixels, self.quality)
            )
        except BrokenProcessPool as exc:
            self._restart(pool)
            raise ConversionFailed(detail="the decoder crashed on this file") from exc
        if data is None:
            raise ConversionFailed(detail=reason)
        self.conversions += 1
        return data

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                _load_decoders()
                threads = max(1, (os.cpu_count() or 1) // self.workers)
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=init_converter,
                    initargs=(threads, os.getpid()),
                )
            return self._pool

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)


def init_converter(threads: int, server_pid: int) -> None:
    """Worker start: die with the server, let go of its sockets, then the decoder settings.

    A forked worker holds copies of the server's descriptors, its listening socket among
    them: a worker left behind by a server killed with SIGKILL would keep the port taken and
    wait forever on a queue whose write end it holds itself. So it asks the kernel for SIGKILL
    when its parent dies and closes every inherited socket (the pool talks over pipes).
    """
    _die_with_parent(server_pid)
    for name in _listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            fd = int(name)
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
    from picpipe.pipeline.thumbs import init_worker

    init_worker(threads)


def _die_with_parent(server_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker may outlive a killed server
        return
    if os.getppid() != server_pid:  # the server died before the request was in place
        os._exit(1)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _load_decoders() -> Any:
    """Import the decoders here first, so forked workers start with them in the right order."""
    import importlib

    try:
        return importlib.import_module("picpipe.pipeline.decoders")
    except (ImportError, OSError) as exc:
        raise DependencyMissing(tool="libvips (pyvips)", detail=str(exc)) from exc
