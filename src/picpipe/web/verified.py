"""Library originals the server has checked against their SHA-256, remembered by their stat.

The server never sends bytes that do not match their hash. A hash cannot be checked while
streaming: the status and headers are gone before the last byte is read, so a mismatch found
then can only cut the connection. Hashing every full-size read before its headers costs a
whole extra read per request. So an original is hashed once, before its first answer, and
remembered as verified together with its identity (device, inode, size, mtime and ctime in
nanoseconds); a later request whose ``fstat`` gives the same identity is sent without
re-reading. Any write to the file, a rename over it or a restore changes that identity (ctime
cannot be set back by a user, unlike mtime), and the next request hashes it again.

What this does not see is bit rot that leaves the inode untouched; ``picpipe verify`` finds
that, and ``picpipe repair`` fixes it. The memory is per process and bounded: at `KEPT`
entries the oldest is forgotten (it is hashed again when asked for).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from picpipe.hashing import new_hasher

if TYPE_CHECKING:
    from picpipe.catalog.origins import AssetFacts

log = logging.getLogger(__name__)
KEPT = 50_000  # about 10 MB of identities
_READ = 1 << 20

Identity = tuple[int, int, int, int, int]


class VerifiedOriginals:
    """Which library originals matched their hash, and as which file (thread-safe)."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self.hashed = 0  # full reads done (for tests and stats)
        self.refused = 0  # originals that did not match
        self._known: OrderedDict[str, Identity] = OrderedDict()
        self._lock = threading.Lock()

    def matches(self, fd: int, facts: AssetFacts) -> bool:
        """True when the open original ``fd`` holds ``facts``' bytes (blocking; a thread).

        Reads with ``pread`` so the descriptor's offset stays at 0 for the response.
        """
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            if self._known.get(facts.sha256) == identity:
                self._known.move_to_end(facts.sha256)
                return True
        ok = st.st_size == facts.size and _sha256_of(fd) == facts.sha256
        with self._lock:
            self.hashed += 1
            if ok:
                self._known[facts.sha256] = identity
                self._known.move_to_end(facts.sha256)
                while len(self._known) > self.kept:
                    self._known.popitem(last=False)
            else:
                self.refused += 1
                self._known.pop(facts.sha256, None)
        if not ok:
            log.warning(
                "library original of %s does not match its SHA-256; not served from the "
                "library (run `picpipe verify`, then `picpipe repair`)",
                facts.sha256[:12],
            )
        return ok


def _sha256_of(fd: int) -> str:
    digest = new_hasher()
    offset = 0
    while chunk := os.pread(fd, _READ, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()
