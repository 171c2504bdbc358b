"""The watched and icloudpd folder sources pass the source contract on a real tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from picpipe.sources.icloudpd import IcloudpdSource
from picpipe.sources.watched import WatchedOptions, WatchedSource
from tests.conformance.contract import SourceContract
from tests.conformance.test_folder import FolderWorld


class WatchedWorld(FolderWorld):
    def __init__(self, root: Path, kind: type[WatchedSource]) -> None:
        super().__init__(root)
        # No settle time: the contract lists files right after writing them (the settle
        # rule has its own tests in tests/sources/test_watched.py).
        options = WatchedOptions(path=root, settle_seconds=0, pair_seconds=0)
        self.source = kind("watched", root, options=options)


@pytest.fixture(params=[WatchedSource, IcloudpdSource], ids=["watched", "icloudpd"])
def kind(request: pytest.FixtureRequest) -> type[WatchedSource]:
    cls: type[WatchedSource] = request.param
    return cls


class TestWatchedSources(SourceContract):
    @pytest.fixture
    def world(self, tmp_path: Path, kind: type[WatchedSource]) -> FolderWorld:
        if not os.path.exists("/proc/self/io"):
            pytest.skip("/proc/self/io is needed to count the bytes a listing reads")
        return WatchedWorld(tmp_path / "source", kind)
