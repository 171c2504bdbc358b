"""The fake Immich server (tests/fakes/immich.py) on a loopback port, as pytest fixtures.

- ``immich_server`` (session): one running fake; ``.url`` (no ``/api``) and ``.fake`` (the
  back door: counters, faults, corruption).
- ``immich_account`` (function): a new user with an all-permission API key on that server, so
  each test sees an empty Immich (dedup, search and albums are per owner). Afterwards it clears
  the faults a test set and fails the test if the fake's answers drifted from the spec.

tests/conftest.py registers this module as a plugin, so every test module can ask for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import missing
from tests.fakes.http import LoopbackServer
from tests.fakes.immich import SPEC_PATH, FakeImmich


@dataclass(frozen=True)
class ImmichServer:
    url: str
    fake: FakeImmich


@dataclass(frozen=True)
class ImmichAccount:
    url: str
    api_key: str
    user_id: str
    fake: FakeImmich

    def calls(self, operation: str) -> int:
        """How many authenticated requests of ``operation`` (an operationId) this user made."""
        counts = self.fake.user_calls.get(self.user_id)
        return counts[operation] if counts else 0

    @property
    def created(self) -> int:
        """Uploads of this user that stored a new asset."""
        return self.fake.user_created[self.user_id]

    def config(self, **options: object) -> dict[str, object]:
        """A destination config entry for this account (``open_destination(name, ...)``)."""
        return {"kind": "immich", "url": self.url, "api_key": self.api_key, **options}


@contextmanager
def serve_immich(timeout: float = 10.0) -> Iterator[ImmichServer]:
    """Start the fake on a free port of 127.0.0.1, wait until it answers, stop it after."""
    if not SPEC_PATH.is_file():
        missing(f"Immich OpenAPI spec not found at {SPEC_PATH}")
    fake = FakeImmich()
    with LoopbackServer(fake) as server:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{server.url}/api/server/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fake Immich at {server.url} did not answer in {timeout}s")
            time.sleep(0.02)
        yield ImmichServer(server.url, fake)


@pytest.fixture(scope="session", name="immich_server")
def immich_server_fixture() -> Iterator[ImmichServer]:
    with serve_immich() as server:
        yield server


@pytest.fixture(name="immich_account")
def immich_account_fixture(immich_server: ImmichServer) -> Iterator[ImmichAccount]:
    fake = immich_server.fake
    account = fake.add_user()
    yield ImmichAccount(immich_server.url, account.api_key, account.user_id, fake)
    fake.clear_faults()
    drift, fake.spec_errors[:] = list(fake.spec_errors), []
    assert not drift, f"the fake Immich answered off-spec: {drift}"
