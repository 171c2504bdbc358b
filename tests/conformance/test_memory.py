"""The in-memory reference source passes the source contract."""

from __future__ import annotations

import pytest

from tests.conformance.contract import SourceContract
from tests.conformance.memory import MemoryFile, MemorySource, MemoryStore


class MemoryWorld:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.source = MemorySource("memory", self.store)

    def put(self, ref: str, data: bytes, mtime_ns: int) -> None:
        with self.store.lock:
            self.store.files[ref] = MemoryFile(data, mtime_ns)

    def delete(self, ref: str) -> None:
        with self.store.lock:
            del self.store.files[ref]

    def break_file(self, ref: str) -> None:
        with self.store.lock:
            self.store.files[ref].unreadable = True

    def content_read(self) -> int:
        return self.store.bytes_read


class TestMemorySource(SourceContract):
    @pytest.fixture
    def world(self) -> MemoryWorld:
        return MemoryWorld()
