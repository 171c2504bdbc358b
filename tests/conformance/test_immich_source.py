"""The Immich source passes the source contract against the spec-validated fake Immich."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from picpipe.jobs.retry import RetryPolicy
from picpipe.sources.immich import ImmichSource, ImmichSourceOptions
from tests.conformance.contract import SourceContract
from tests.fakes.immich import FakeImmich
from tests.servers.immich import ImmichAccount

FAST = RetryPolicy(retries=2, base=0.01, cap=0.05)


class ImmichWorld:
    """One fake Immich user; files become assets as Immich's own clients would store them."""

    trash_keeps_bytes = True  # Immich's delete moves to the trash; the original stays there

    def __init__(self, account: ImmichAccount) -> None:
        self.fake: FakeImmich = account.fake
        self.user_id = account.user_id
        self.ids: dict[str, str] = {}
        options = ImmichSourceOptions(url=account.url, api_key=SecretStr(account.api_key))
        self.source = ImmichSource("immich", options, retry=FAST)

    def ref_of(self, path: str) -> str:
        return self.ids.get(path, path)  # not stored yet: no id

    def put(self, ref: str, data: bytes, mtime_ns: int) -> None:
        moment = datetime.fromtimestamp(mtime_ns / 1e9, UTC)
        if ref in self.ids:  # the file replaced: Immich reads it again (new checksum)
            self.fake.corrupt(self.ids[ref], data)
            self.fake.asset(self.ids[ref]).file_modified_at = moment
            return
        # A name without an extension is still a photo to Immich (it reads the content).
        kind = "IMAGE" if "." not in ref.rpartition("/")[2] else None
        self.ids[ref] = self.fake.put_asset(self.user_id, ref, data, modified=moment, kind=kind).id

    def delete(self, ref: str) -> None:
        self.fake.trash(self.ids[ref])

    def break_file(self, ref: str) -> None:
        self.fake.delete_asset(self.ids[ref])

    def content_read(self) -> int:
        with self.fake.lock:
            return sum(
                self.fake.assets[i].file_size * n
                for i, n in self.fake.downloads.items()
                if i in self.fake.assets
            )


class TestImmichSource(SourceContract):
    @pytest.fixture
    def world(self, immich_account: ImmichAccount) -> Iterator[ImmichWorld]:
        world = ImmichWorld(immich_account)
        yield world
        world.source.close()
