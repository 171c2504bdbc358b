"""The folder source passes the source contract on a real directory tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from picpipe.sources.folder import FolderSource
from tests.conformance.contract import SourceContract


class FolderWorld:
    """Files on disk; content reads counted by the kernel (``rchar`` of /proc/self/io)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.source = FolderSource("folder", root)

    def put(self, ref: str, data: bytes, mtime_ns: int) -> None:
        path = self.root / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(mtime_ns, mtime_ns))

    def delete(self, ref: str) -> None:
        (self.root / ref).unlink()

    def break_file(self, ref: str) -> None:
        # chmod does not stop root: a directory where the file was cannot be read as one.
        (self.root / ref).unlink()
        (self.root / ref).mkdir()

    def content_read(self) -> int:
        with open("/proc/self/io", encoding="ascii") as handle:
            fields = dict(line.split(": ") for line in handle.read().splitlines())
        return int(fields["rchar"])


class TestFolderSource(SourceContract):
    @pytest.fixture
    def world(self, tmp_path: Path) -> FolderWorld:
        if not os.path.exists("/proc/self/io"):
            pytest.skip("/proc/self/io is needed to count the bytes a listing reads")
        return FolderWorld(tmp_path / "source")
