"""A Synology source over the fake NAS, and the means to change the NAS behind its back.

Refs of the source contract map onto the NAS as ``<album>/<file name>``: the folder part is
the album's name (the top level an album named ""), the rest the item's file name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from picpipe.jobs.retry import RetryPolicy
from picpipe.sources.synology import SynologyOptions, SynologySource
from tests.fakes.synology import FakeItem, FakeSynology

FAST_RETRY = RetryPolicy(retries=3, base=0.01, cap=0.02)


def synology_source(
    fake: FakeSynology, home: Path, name: str = "kitchen", **options: Any
) -> SynologySource:
    """A source on ``fake`` in process; ``options`` override the defaults (password inline)."""
    raw: dict[str, Any] = {"url": "http://nas:5000", "username": fake.account}
    raw |= {"password": fake.password} | options
    return SynologySource(
        name,
        SynologyOptions.model_validate(raw),
        home=home,
        transport=fake.transport(),
        retry=FAST_RETRY,
    )


class SynologyWorld:
    """The contract's World: albums and items on a fake NAS, a source listing every album."""

    def __init__(self, home: Path) -> None:
        self.fake = FakeSynology()
        self.source = synology_source(self.fake, home)

    def item(self, ref: str) -> FakeItem:
        folder, _, name = ref.rpartition("/")
        album = self.fake.album(folder)
        found = [self.fake.items[i] for i in album.items if self.fake.items[i].filename == name]
        assert found, ref
        return found[0]

    def put(self, ref: str, data: bytes, mtime_ns: int) -> None:
        folder, _, name = ref.rpartition("/")
        album = self.fake.album(folder)
        taken = mtime_ns // 1_000_000_000
        for item_id in album.items:
            item = self.fake.items[item_id]
            if item.filename == name:
                self.fake.replace(item, data, taken)
                return
        self.fake.add_item(album, name, data, taken)

    def delete(self, ref: str) -> None:
        self.fake.delete_item(self.item(ref))

    def break_file(self, ref: str) -> None:
        self.item(ref).unreadable = True

    def content_read(self) -> int:
        return self.fake.bytes_sent
