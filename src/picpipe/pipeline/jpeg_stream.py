"""A JPEG's payload hash and completeness, from the bytes the content hash reads anyway.

The hash stage streams every file through SHA-256 once; `JpegStreamWalk` rides on that read
(`picpipe.hashing.sha256_stream`'s ``tee``) and walks the JPEG's markers chunk by chunk, so
neither the payload hash (`pipeline/payload.py`: every segment but APPn and COM, SOI to EOI)
nor the truncation check (`pipeline/truncation.py`) reads the file a second time.

The walk is strict, as `payload._jpeg` is: a byte that is not a marker where one must be
makes it "malformed", and then the callers fall back to the path-based functions (whose
truncation check tolerates stray bytes as libjpeg does). Bytes after the primary image's EOI
(a motion photo's video) are ignored.
"""

from __future__ import annotations

import re
from typing import Literal

from picpipe.hashing import new_hasher

Verdict = Literal["complete", "short", "malformed", "not-jpeg"]

_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_APP_OR_COM = frozenset([*range(0xE0, 0xF0), 0xFE])
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0-7: no length field
_START, _MARKER, _SEGMENT, _SCAN, _DONE, _FAILED = range(6)


class JpegStreamWalk:
    """Feed the file's bytes in order with `update`; then `verdict` and `payload_sha256`."""

    __slots__ = (
        "_after",
        "_carry",
        "_hasher",
        "_keep",
        "_left",
        "_not_jpeg",
        "_seen",
        "_state",
        "end",
    )

    def __init__(self) -> None:
        self._hasher = new_hasher()
        self._state = _START
        self._carry = b""  # marker bytes split across chunks (at most 4)
        self._left = 0  # bytes of the current segment still to come
        self._keep = False  # the current segment goes into the payload hash
        self._after = _MARKER  # what follows the current segment (a scan after SOS)
        self._not_jpeg = False
        self._seen = 0  # bytes fed before the current chunk
        self.end: int | None = None  # offset just after the EOI marker, once found

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """The next bytes of the file (a reused read buffer is fine: nothing is kept)."""
        state = self._state
        if state >= _DONE:
            return
        view = memoryview(data)
        pos, size = 0, len(view)
        while state < _DONE:
            if state == _SEGMENT:
                take = min(self._left, size - pos)
                if self._keep and take:
                    self._hasher.update(view[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                state = self._after
            elif state == _SCAN:
                if self._carry:  # a 0xFF ended the previous chunk: what follows decides
                    if pos >= size:
                        break
                    following = view[pos]
                    if following in (0x00, 0xFF) or 0xD0 <= following <= 0xD7:
                        self._hasher.update(b"\xff")
                        self._carry = b""
                    else:
                        state = _MARKER
                        continue
                found = _MARKER_IN_SCAN.search(view, pos)
                if found is not None:
                    self._hasher.update(view[pos : found.start()])
                    pos = found.start()
                    state = _MARKER
                    continue
                end = size
                if end > pos and view[end - 1] == 0xFF:
                    end -= 1
                    self._carry = b"\xff"
                self._hasher.update(view[pos:end])
                break
            else:  # _START or _MARKER: gather up to 4 header bytes, then decide
                want = 4 - len(self._carry)
                if want > 0 and pos < size:
                    self._carry += bytes(view[pos : pos + want])
                    pos += min(want, size - pos)
                state = self._header(state)
                if state in (_START, _MARKER) and pos >= size:
                    break
        self._state = state
        if state == _DONE and self.end is None:
            self.end = self._seen + pos - len(self._carry)
        self._seen += size

    def _header(self, state: int) -> int:
        """Consume the marker in ``_carry`` if complete; the next state (same when short)."""
        carry = self._carry
        while True:
            if state == _START:
                if len(carry) < 2:
                    break
                if carry[:2] != b"\xff\xd8":
                    self._not_jpeg = True
                    state = _FAILED
                    break
                self._hasher.update(b"\xff\xd8")
                carry, state = carry[2:], _MARKER
                continue
            if not carry:
                break
            if carry[0] != 0xFF:
                state = _FAILED
                break
            if len(carry) < 2:
                break
            marker = carry[1]
            if marker == 0xFF:  # fill byte
                carry = carry[1:]
                continue
            if marker == 0xD9 or marker in _STANDALONE:
                self._hasher.update(carry[:2])
                carry = carry[2:]
                if marker == 0xD9:
                    state = _DONE
                    break
                continue
            if len(carry) < 4:
                break
            length = carry[2] << 8 | carry[3]
            if length < 2:
                state = _FAILED
                break
            self._keep = marker not in _APP_OR_COM
            if self._keep:
                self._hasher.update(carry[:4])
            self._left = length - 2
            self._after = _SCAN if marker == 0xDA else _MARKER
            carry = carry[4:]
            state = _SEGMENT if self._left else self._after
            break
        self._carry = carry
        return state

    @property
    def verdict(self) -> Verdict:
        """complete: EOI reached; short: the bytes ended first; malformed: not a strict
        marker walk; not-jpeg: no SOI at the start."""
        if self._state == _DONE:
            return "complete"
        if self._state == _FAILED:
            return "not-jpeg" if self._not_jpeg else "malformed"
        return "short"

    @property
    def payload_sha256(self) -> str | None:
        """Hex payload hash, as `payload.payload_sha256` gives it; None unless complete."""
        return self._hasher.hexdigest() if self._state == _DONE else None
