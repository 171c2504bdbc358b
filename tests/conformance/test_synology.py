"""The Synology source passes the source contract against the fake NAS (in process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.contract import SourceContract
from tests.fakes.synology_world import SynologyWorld


class TestSynologySource(SourceContract):
    @pytest.fixture
    def world(self, tmp_path: Path) -> Iterator[SynologyWorld]:
        world = SynologyWorld(tmp_path / "home")
        yield world
        world.source.close()
