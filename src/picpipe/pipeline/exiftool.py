"""The stay-open exiftool process: the only module that speaks its ``-@ -`` protocol.

One process per worker thread (`ExifToolPool`). Each request names the tags picpipe uses and
returns exiftool's JSON for one file as ``{"Group:Tag": value}``. A request that hangs is
killed after a timeout and the process restarted; the item gets a recorded problem.

Every process loads ``picpipe.exiftool_config`` (the XMP-picpipe namespace), so reads and
writes of sidecars know picpipe's own tags. exiftool's stderr goes to a private temp file:
with ``-j`` it carries the "1 image files created" summary and the errors of a write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from picpipe.errors import DependencyMissing

# ExifToolFailed is imported from here by pipeline/stages.py until it imports from errors.py.
from picpipe.errors import ExifToolFailed as ExifToolFailed

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

# Tags with a trailing '#' come back as numbers (exiftool's -n for that tag only).
TAGS = [
    "FileType",
    "FileTypeExtension",
    "MIMEType",
    "DateTimeOriginal",
    "CreateDate",
    "OffsetTimeOriginal",
    "CreationDate",
    "DateCreated",
    "TimeCreated",
    "DateTimeCreated",
    "LocationDate",
    "GPSLatitude#",
    "GPSLongitude#",
    "GPSAltitude#",
    "GPSDateTime",
    "GPSDateStamp",
    "GPSTimeStamp",
    "Make",
    "Model",
    "LensModel",
    "Lens",
    "ImageWidth#",
    "ImageHeight#",
    "ExifImageWidth#",
    "ExifImageHeight#",
    "Orientation#",
    "Rotation#",
    "Duration#",
    "ContentIdentifier",
    "MediaGroupUUID",
    # Descriptive fields (pipeline/descriptive.py); the regions come as structures (-struct).
    "Rating#",
    "RatingPercent#",
    "Subject",
    "Keywords",
    "HierarchicalSubject",
    "TagsList",
    "LastKeywordXMP",
    "Title",
    "ObjectName",
    "XPTitle",
    "Description",
    "Caption-Abstract",
    "ImageDescription",
    "Label",
    "RegionInfo",
    "RegionInfoMP",
    # Motion photos (pipeline/motion.py): Google's container directory, the MicroVideo form.
    "XMP-Container:Directory",
    "MicroVideo#",
    "MicroVideoOffset#",
    "Warning",
    "Error",
]
COMMON_ARGS = ("-j", "-G1", "-a", "-api", "largefilesupport=1", "-charset", "filename=utf8")
CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "picpipe.exiftool_config")
_WRITTEN = re.compile(rb"^\s*([1-9]\d*) image files (?:created|updated)\s*$", re.M)


_SETPRIV = shutil.which("setpriv")


def exiftool_command() -> str:
    """Path of the exiftool executable; DependencyMissing when there is none."""
    found = shutil.which(os.environ.get("PICPIPE_EXIFTOOL", "exiftool"))
    if not found:
        raise DependencyMissing(tool="exiftool", detail="not found on PATH")
    return found


def exiftool_version() -> str:
    """The installed exiftool version (DependencyMissing when it does not run)."""
    try:
        out = subprocess.run(
            [exiftool_command(), "-ver"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DependencyMissing(tool="exiftool", detail=str(exc)) from exc
    return out.stdout.strip()


class ExifTool:
    """One stay-open exiftool process. Not thread-safe: use one per thread."""

    def __init__(self, *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None  # the temp file behind the process's stderr
        self._counter = 0

    def read(
        self,
        path: str | bytes,
        *,
        extra_args: tuple[str, ...] = (),
        tags: Sequence[str] = TAGS,
        exact_numbers: bool = False,
    ) -> dict[str, Any]:
        """Metadata of one file: ``tags`` (picpipe's usual set by default), each ``Group:Tag``.

        ``exact_numbers`` keeps every JSON number as its text: exiftool prints a keyword or
        title such as ``1.50`` as a bare number, which float parsing would turn into ``1.5``.
        Raises ExifToolFailed when exiftool gives nothing back.
        """
        raw = os.fsencode(path)
        if b"\n" in raw or b"\r" in raw:
            return self._read_via_link(raw, extra_args, tags, exact_numbers)
        args = [*extra_args, *(f"-{t}" for t in tags)]
        out = self._execute(args, raw)
        display = raw.decode("utf-8", "backslashreplace")
        try:
            text = out.decode("utf-8", "replace")
            number = str if exact_numbers else None
            records = json.loads(text, parse_float=number, parse_int=number) if out.strip() else []
        except json.JSONDecodeError as exc:
            raise ExifToolFailed(path=display, detail="unreadable JSON output") from exc
        if not records:
            raise ExifToolFailed(path=display, detail="no output")
        record: dict[str, Any] = records[0]
        record.pop("SourceFile", None)
        return record

    def write(self, args: Sequence[str], source: str | bytes | None, *, display: str) -> None:
        """Run one writing command: ``args`` (tag assignments, ``-o OUT``…) on ``source``.

        ``source`` None creates a metadata file from scratch (with ``-o``). Arguments travel
        over the process's stdin, never a command line, and must not contain line breaks
        (escape values and pass ``-ec``). Raises ExifToolFailed with exiftool's own error
        unless exiftool reports a file created or updated.
        """
        lines = [a.encode() for a in args]
        if any(b"\n" in line or b"\r" in line for line in lines):
            raise ValueError("exiftool arguments must not contain line breaks")
        if source is not None:
            lines.append(os.fsencode(source))
        self._execute_lines(lines, display)
        errors = self._stderr_text()
        if not _WRITTEN.search(errors):
            detail = next(
                (line.strip() for line in errors.splitlines() if line.startswith(b"Error")),
                errors.strip().replace(b"\n", b"; ") or b"nothing was written",
            )
            raise ExifToolFailed(path=display, detail=detail.decode("utf-8", "replace"))

    def close(self) -> None:
        """Ask exiftool to exit (killing it if it does not); safe on a dead process."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.write(b"-stay_open\nFalse\n")
                proc.stdin.flush()
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._close_stderr()

    # -- protocol ------------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            # -config must be exiftool's first argument: it is read before anything else.
            cmd = [
                exiftool_command(),
                "-config",
                CONFIG_FILE,
                "-stay_open",
                "True",
                "-@",
                "-",
                "-common_args",
                *COMMON_ARGS,
            ]
            # exiftool keeps polling its argument pipe after EOF, so a killed picpipe would
            # leave it running forever; the kernel ends it when its parent goes away.
            if _SETPRIV:
                cmd = [_SETPRIV, "--pdeathsig", "KILL", "--", *cmd]
            self._close_stderr()
            # Lives as long as the process; closed by close() and _kill().
            self._stderr = tempfile.TemporaryFile(prefix="picpipe-exiftool-")  # noqa: SIM115
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                close_fds=True,
            )
        return self._proc

    def _execute(self, args: list[str], path: bytes) -> bytes:
        display = path.decode("utf-8", "backslashreplace")
        return self._execute_lines([*(a.encode() for a in args), path], display)

    def _execute_lines(self, lines: list[bytes], display: str) -> bytes:
        proc = self._start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        self._counter += 1
        marker = f"{{ready{self._counter}}}".encode()
        request = b"".join(line + b"\n" for line in lines)
        request += f"-execute{self._counter}\n".encode()
        # The child shares this file's offset: each request starts writing at 0 again.
        assert self._stderr is not None
        fd = self._stderr.fileno()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
        except OSError as exc:
            self._kill()
            raise ExifToolFailed(path=display, detail=f"process died ({exc})") from exc
        return self._read_until(proc, marker, display)

    def _read_until(self, proc: subprocess.Popen[bytes], marker: bytes, display: str) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = bytearray()
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                idx = buffer.find(marker)
                if idx >= 0:
                    return bytes(buffer[:idx])
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self._kill()
                    raise ExifToolFailed(path=display, detail=f"timed out after {self.timeout}s")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self._kill()
                    raise ExifToolFailed(path=display, detail="process exited unexpectedly")
                buffer += chunk

    def _read_via_link(
        self, raw: bytes, extra_args: tuple[str, ...], tags: Sequence[str], exact_numbers: bool
    ) -> dict[str, Any]:
        # The -@ argument file is line-based: give names with line breaks a safe alias.
        with tempfile.TemporaryDirectory(prefix="picpipe-exif-") as tmp:
            suffix = os.path.splitext(raw)[1].replace(b"\n", b"").replace(b"\r", b"")
            link = os.path.join(os.fsencode(tmp), b"file" + suffix)
            os.symlink(os.path.abspath(raw), link)
            return self.read(link, extra_args=extra_args, tags=tags, exact_numbers=exact_numbers)

    def _stderr_text(self) -> bytes:
        # Everything exiftool wrote to stderr for the request that just finished (up to 64 KiB).
        return os.pread(self._stderr.fileno(), 1 << 16, 0) if self._stderr is not None else b""

    def _close_stderr(self) -> None:
        handle, self._stderr = self._stderr, None
        if handle is not None:
            handle.close()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        self._close_stderr()


class ExifToolPool:
    """One `ExifTool` per thread, created on first use, all closed by `close`."""

    def __init__(self, *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[ExifTool] = []
        self._lock = threading.Lock()

    def get(self) -> ExifTool:
        tool: ExifTool | None = getattr(self._local, "tool", None)
        if tool is None:
            tool = ExifTool(timeout=self.timeout)
            self._local.tool = tool
            with self._lock:
                self._all.append(tool)
        return tool

    def close(self) -> None:
        with self._lock:
            tools, self._all = self._all, []
        for tool in tools:
            tool.close()
