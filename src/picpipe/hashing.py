"""Streaming SHA-256: the only content-hashing code in picpipe.

Reads 1 MiB at a time into one reused buffer; hashlib releases the GIL on large updates, so
several threads hash in parallel. Everything that hashes content (identity, verification,
remote checksums) calls these functions. Digests of things that are not content stay where
they are, each with a comment: the folder-listing digest (``pipeline/scan.py``), the
shuffle-filter key (``catalog/browse.py``) and the login cookie's HMAC (``web/auth.py``).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

CHUNK = 1 << 20


def sha256_stream(
    stream: BinaryIO, *, chunk: int = CHUNK, tee: Callable[[memoryview], object] | None = None
) -> tuple[str, int]:
    """Hash ``stream`` to its end; returns (hex digest, bytes read).

    ``tee`` sees every chunk too, in order (a view of the reused buffer, valid only during
    the call): what else needs the file's bytes rides on this one read.
    """
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    total = 0
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(view)
            if not n:
                break
            digest.update(view[:n])
            if tee is not None:
                tee(view[:n])
        else:
            data = stream.read(chunk)
            if not data:
                break
            n = len(data)
            digest.update(data)
            if tee is not None:
                tee(memoryview(data))
        total += n
    return digest.hexdigest(), total


def sha256_file(path: str | bytes | os.PathLike[str], *, chunk: int = CHUNK) -> tuple[str, int]:
    """Hash the file at ``path`` (unbuffered reads); returns (hex digest, bytes read)."""
    with open(path, "rb", buffering=0) as stream:
        return sha256_stream(stream, chunk=chunk)


def is_sha256(text: str) -> bool:
    """True for 64 lower-case hex characters (the form picpipe stores and accepts)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def digest_stream(
    stream: BinaryIO, algorithms: tuple[str, ...], *, chunk: int = CHUNK, keep: bool = False
) -> tuple[dict[str, str], int, bytes | None]:
    """Hash ``stream`` with several algorithms in one read.

    Returns (hex digest by algorithm name, bytes read, the bytes themselves when ``keep``).
    MD5 and SHA-1 are computed for remote checksums (Content-MD5, Immich), never for identity.
    """
    hashers = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    kept = bytearray() if keep else None
    total = 0
    while data := stream.read(chunk):
        total += len(data)
        for hasher in hashers.values():
            hasher.update(data)
        if kept is not None:
            kept += data
    return (
        {n: h.hexdigest() for n, h in hashers.items()},
        total,
        None if kept is None else bytes(kept),
    )


Algorithm = Literal["sha256", "sha1", "md5"]


class Hasher(Protocol):
    """An incremental digest (what `new_hasher` returns): feed it, then read the digest."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: Algorithm = "sha256") -> Hasher:
    """An incremental digest for bytes hashed as they stream past (a copy, an upload).

    SHA-256 is content identity; MD5 and SHA-1 only ever serve remote checksums
    (Content-MD5, S3 ETags, Immich's SHA-1), so they are flagged as not for security.
    """
    return hashlib.new(algorithm, usedforsecurity=algorithm == "sha256")


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of bytes already in memory."""
    return hashlib.sha256(data).hexdigest()


def md5_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """Raw MD5 of bytes in memory, for remote checksums (``.hex()`` gives the ETag form)."""
    return hashlib.md5(data, usedforsecurity=False).digest()
