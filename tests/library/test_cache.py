"""The full-resolution cache: byte and age limits, LRU order across restarts, one fill per name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from picpipe.catalog.cache_index import INDEX_NAME
from picpipe.errors import EntryTooLarge
from picpipe.library.cache import CachedFile, CacheSink, FullCache
from picpipe.library.layout import TEMP_PREFIX


def name_of(label: str, ext: str = "jpg") -> str:
    return f"{hashlib.sha256(label.encode()).hexdigest()}.{ext}"


def writer(data: bytes, calls: list[str] | None = None, delay: float = 0.0):  # type: ignore[no-untyped-def]
    def produce(sink: CacheSink) -> None:
        if calls is not None:
            calls.append("x")
        if delay:
            time.sleep(delay)
        for start in range(0, len(data), 100):
            sink.write(data[start : start + 100])

    return produce


def read_all(found: CachedFile) -> bytes:
    try:
        return os.pread(found.fd, found.size + 1, 0)
    finally:
        found.close()


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def disk_bytes(root: Path) -> int:
    """Every file under the cache's shard folders, finished or being written.

    Taken while holding the index's write lock (no eviction, reservation or commit can run),
    counting each inode once (a fill renaming its temp file is not counted twice).
    """
    db = sqlite3.connect(root / INDEX_NAME, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        sizes: dict[int, int] = {}
        for shard in root.iterdir():
            if shard.is_dir():
                for entry in os.scandir(shard):
                    with contextlib.suppress(FileNotFoundError):
                        stat = entry.stat()
                        sizes[stat.st_ino] = stat.st_size
        db.execute("ROLLBACK")
    finally:
        db.close()
    return sum(sizes.values())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_cache(tmp_path: Path, clock: Clock) -> Iterator[Callable[..., FullCache]]:
    opened: list[FullCache] = []

    def make(max_bytes: int = 10_000, ttl: float = 3600.0) -> FullCache:
        cache = FullCache(tmp_path / "full", max_bytes=max_bytes, ttl_seconds=ttl, clock=clock)
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()


def test_fill_then_lookup_reads_the_same_bytes(make_cache: Callable[..., FullCache]) -> None:
    cache = make_cache()
    name = name_of("a")
    data = os.urandom(1234)
    assert cache.lookup(name) is None
    first = cache.get_or_fill(name, len(data), writer(data))
    assert first.cached
    assert read_all(first) == data
    assert cache.path_of(name) == cache.root / name[:2] / name
    assert cache.path_of(name).read_bytes() == data
    again = cache.lookup(name)
    assert again is not None
    assert read_all(again) == data
    stats = cache.stats()
    assert stats["entries"] == 1
    assert stats["bytes"] == 1234
    assert stats["fetches"] == 1
    assert stats["hits"] >= 1


def test_names_outside_the_scheme_are_refused(make_cache: Callable[..., FullCache]) -> None:
    cache = make_cache()
    for bad in ("../x.jpg", "a" * 64, "A" * 64 + ".jpg", name_of("a")[:-4] + "/../x.jpg"):
        with pytest.raises(ValueError, match="cache entry"):
            cache.path_of(bad)


def test_least_recently_used_is_evicted_first(
    make_cache: Callable[..., FullCache], clock: Clock
) -> None:
    cache = make_cache(max_bytes=300)
    a, b, c, d = (name_of(x) for x in "abcd")
    for name in (a, b, c):
        read_all(cache.get_or_fill(name, 100, writer(b"x" * 100)))
        clock.now += 1
    found = cache.lookup(a)  # a is now the most recent
    assert found is not None
    found.close()
    clock.now += 1
    read_all(cache.get_or_fill(d, 100, writer(b"y" * 100)))
    assert [n for n, _, _ in cache.entries()] == [c, a, d]
    assert not cache.path_of(b).exists()
    assert cache.stats()["evictions"] == 1


def test_lru_order_survives_a_restart(
    make_cache: Callable[..., FullCache], clock: Clock, tmp_path: Path
) -> None:
    cache = make_cache(max_bytes=300)
    a, b, c, d = (name_of(x) for x in "abcd")
    for name in (a, b, c):
        read_all(cache.get_or_fill(name, 100, writer(b"x" * 100)))
        clock.now += 1
    found = cache.lookup(a)
    assert found is not None
    found.close()
    cache.close()
    assert (tmp_path / "full" / INDEX_NAME).exists()

    clock.now += 1
    reopened = make_cache(max_bytes=300)
    assert [n for n, _, _ in reopened.entries()] == [b, c, a]
    read_all(reopened.get_or_fill(d, 100, writer(b"y" * 100)))
    assert reopened.lookup(b) is None  # the least recently used before the restart
    for name in (a, c, d):
        found = reopened.lookup(name)
        assert found is not None
        found.close()


def test_entries_expire_after_the_age_limit(
    make_cache: Callable[..., FullCache], clock: Clock
) -> None:
    cache = make_cache(ttl=100)
    a, b = name_of("a"), name_of("b")
    read_all(cache.get_or_fill(a, 10, writer(b"a" * 10)))
    read_all(cache.get_or_fill(b, 10, writer(b"b" * 10)))
    clock.now += 60
    found = cache.lookup(b)  # read: its age starts again
    assert found is not None
    found.close()
    clock.now += 60
    assert cache.lookup(a) is None
    assert not cache.path_of(a).exists()
    found = cache.lookup(b)
    assert found is not None
    found.close()
    assert cache.stats()["expirations"] == 1


def test_expired_entries_are_removed_when_the_cache_opens(
    make_cache: Callable[..., FullCache], clock: Clock
) -> None:
    cache = make_cache(ttl=100)
    a = name_of("a")
    read_all(cache.get_or_fill(a, 10, writer(b"a" * 10)))
    cache.close()
    clock.now += 101
    reopened = make_cache(ttl=100)
    assert reopened.entries() == []
    assert not reopened.path_of(a).exists()


def test_a_lowered_limit_is_applied_at_open(
    make_cache: Callable[..., FullCache], clock: Clock
) -> None:
    cache = make_cache(max_bytes=1000)
    for label in "abcde":
        read_all(cache.get_or_fill(name_of(label), 100, writer(b"z" * 100)))
        clock.now += 1
    cache.close()
    reopened = make_cache(max_bytes=250)
    assert [n for n, _, _ in reopened.entries()] == [name_of("d"), name_of("e")]
    assert disk_bytes(reopened.root) == 200


def test_concurrent_fills_never_exceed_the_limit(make_cache: Callable[..., FullCache]) -> None:
    """Forty different entries through a cache that holds three, eight threads at once."""
    limit = 3 * 1000 + 500
    cache = make_cache(max_bytes=limit)
    worst = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            worst[0] = max(worst[0], disk_bytes(cache.root))

    def produce_for(label: str) -> Callable[[CacheSink], None]:
        data = label.encode() * (1000 // len(label))

        def produce(sink: CacheSink) -> None:
            for start in range(0, len(data), 250):
                sink.write(data[start : start + 250])
                worst[0] = max(worst[0], disk_bytes(cache.root))
                time.sleep(0.001)

        return produce

    def one(i: int) -> bytes:
        label = f"{i:04d}"
        return read_all(cache.get_or_fill(name_of(label), 1000, produce_for(label)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(40)))
    finally:
        stop.set()
        watcher.join()
    assert results == [f"{i:04d}".encode() * 250 for i in range(40)]
    assert worst[0] <= limit
    stats = cache.stats()
    assert stats["bytes"] <= limit
    assert stats["reserved_bytes"] == 0
    assert disk_bytes(cache.root) == stats["bytes"]
    assert stats["fetches"] == 40


def test_concurrent_requests_for_one_name_produce_once(
    make_cache: Callable[..., FullCache],
) -> None:
    cache = make_cache()
    name = name_of("one")
    data = os.urandom(700)
    calls: list[str] = []
    with ThreadPoolExecutor(10) as pool:
        results = list(
            pool.map(
                lambda _: read_all(cache.get_or_fill(name, 700, writer(data, calls, 0.2))),
                range(10),
            )
        )
    assert results == [data] * 10
    assert calls == ["x"]
    assert cache.stats()["fetches"] == 1


def test_a_failed_producer_leaves_nothing(make_cache: Callable[..., FullCache]) -> None:
    cache = make_cache()
    name = name_of("bad")

    def broken(sink: CacheSink) -> None:
        sink.write(b"half")
        raise RuntimeError("origin went away")

    with pytest.raises(RuntimeError, match="went away"):
        cache.get_or_fill(name, 100, broken)
    assert cache.lookup(name) is None
    assert cache.stats()["reserved_bytes"] == 0
    assert disk_bytes(cache.root) == 0
    with pytest.raises(EntryTooLarge):
        cache.get_or_fill(name, 10, writer(b"x" * 11))
    with pytest.raises(EntryTooLarge):
        cache.get_or_fill(name, 10, writer(b"x" * 9))
    assert disk_bytes(cache.root) == 0
    assert cache.stats()["reserved_bytes"] == 0


def test_an_entry_larger_than_the_cache_is_served_uncached(
    make_cache: Callable[..., FullCache],
) -> None:
    cache = make_cache(max_bytes=500)
    kept = name_of("kept")
    read_all(cache.get_or_fill(kept, 400, writer(b"k" * 400)))
    big = name_of("big", "mov")
    data = os.urandom(2000)
    found = cache.get_or_fill(big, 2000, writer(data))
    assert not found.cached
    assert read_all(found) == data
    assert not cache.path_of(big).exists()
    assert [n for n, _, _ in cache.entries()] == [kept]  # nothing was evicted for it
    assert disk_bytes(cache.root) == 400
    assert cache.stats()["uncached"] == 1


def test_an_entry_evicted_while_read_stays_readable(make_cache: Callable[..., FullCache]) -> None:
    cache = make_cache(max_bytes=100)
    a, b = name_of("a"), name_of("b")
    read_all(cache.get_or_fill(a, 100, writer(b"a" * 100)))
    reading = cache.lookup(a)
    assert reading is not None
    read_all(cache.get_or_fill(b, 100, writer(b"b" * 100)))
    assert not cache.path_of(a).exists()
    assert read_all(reading) == b"a" * 100


def test_open_cleans_orphans_dead_fills_and_missing_files(
    make_cache: Callable[..., FullCache], tmp_path: Path
) -> None:
    cache = make_cache()
    a, b = name_of("a"), name_of("b")
    read_all(cache.get_or_fill(a, 10, writer(b"a" * 10)))
    read_all(cache.get_or_fill(b, 10, writer(b"b" * 10)))
    cache.path_of(b).unlink()  # the index lists a file that is gone
    orphan = cache.path_of(name_of("orphan"))
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"not indexed")
    dead_temp = cache.path_of(a).with_name(f"{TEMP_PREFIX}999999999-abc-123-{a}")
    dead_temp.write_bytes(b"half")
    stray = cache.path_of(a).with_name("notes.txt")
    stray.write_bytes(b"?")
    index = sqlite3.connect(cache.root / INDEX_NAME, timeout=30, isolation_level=None)
    index.execute(  # a reservation of a process that died mid-fill
        "INSERT INTO reservation (bytes, pid, owner, started) VALUES (500, 999999999, 'x', 0)"
    )
    index.close()
    cache.close()
    reopened = make_cache()
    assert [n for n, _, _ in reopened.entries()] == [a]
    assert not orphan.exists()
    assert not dead_temp.exists()
    assert not stray.exists()
    assert reopened.stats()["reserved_bytes"] == 0
    assert disk_bytes(reopened.root) == 10


def test_the_same_folder_shared_by_two_caches_stays_under_the_limit(
    make_cache: Callable[..., FullCache],
) -> None:
    """Two cache objects on one folder (as two server processes would be) share one budget."""
    first, second = make_cache(max_bytes=2500), make_cache(max_bytes=2500)
    with ThreadPoolExecutor(6) as pool:
        list(
            pool.map(
                lambda i: read_all(
                    (first if i % 2 else second).get_or_fill(
                        name_of(f"s{i}"), 1000, writer(b"s" * 1000, delay=0.005)
                    )
                ),
                range(20),
            )
        )
    assert first.stats()["bytes"] <= 2500
    assert disk_bytes(first.root) <= 2500
