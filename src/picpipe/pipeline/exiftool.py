"""The stay-open exiftool process: the only module that speaks its ``-@ -`` protocol.

One process per worker thread (`ExifToolPool`). Each request names the tags picpipe uses and
returns exiftool's JSON for one file as ``{"Group:Tag": value}``. A request that hangs is
killed after a timeout and the process restarted; the item gets a recorded problem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

from picpipe.errors import DependencyMissing, PicpipeError

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
    "Warning",
    "Error",
]
COMMON_ARGS = ("-j", "-G1", "-a", "-api", "largefilesupport=1", "-charset", "filename=utf8")


_SETPRIV = shutil.which("setpriv")


class ExifToolFailed(PicpipeError):
    template = "exiftool failed on {path}: {detail}"


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
        self._counter = 0

    def read(self, path: str | bytes, *, extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
        """Metadata of one file. Raises ExifToolFailed when exiftool gives nothing back."""
        raw = os.fsencode(path)
        if b"\n" in raw or b"\r" in raw:
            return self._read_via_link(raw, extra_args)
        args = [*extra_args, *(f"-{t}" for t in TAGS)]
        out = self._execute(args, raw)
        display = raw.decode("utf-8", "backslashreplace")
        try:
            records = json.loads(out.decode("utf-8", "replace")) if out.strip() else []
        except json.JSONDecodeError as exc:
            raise ExifToolFailed(path=display, detail="unreadable JSON output") from exc
        if not records:
            raise ExifToolFailed(path=display, detail="no output")
        record: dict[str, Any] = records[0]
        record.pop("SourceFile", None)
        return record

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

    # -- protocol ------------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            cmd = [
                exiftool_command(),
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
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        return self._proc

    def _execute(self, args: list[str], path: bytes) -> bytes:
        proc = self._start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        self._counter += 1
        marker = f"{{ready{self._counter}}}".encode()
        request = b"".join(a.encode() + b"\n" for a in args) + path + b"\n"
        request += f"-execute{self._counter}\n".encode()
        display = path.decode("utf-8", "backslashreplace")
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

    def _read_via_link(self, raw: bytes, extra_args: tuple[str, ...]) -> dict[str, Any]:
        # The -@ argument file is line-based: give names with line breaks a safe alias.
        with tempfile.TemporaryDirectory(prefix="picpipe-exif-") as tmp:
            suffix = os.path.splitext(raw)[1].replace(b"\n", b"").replace(b"\r", b"")
            link = os.path.join(os.fsencode(tmp), b"file" + suffix)
            os.symlink(os.path.abspath(raw), link)
            return self.read(link, extra_args=extra_args)

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
