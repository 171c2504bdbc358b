"""hashing.py is the only content-hashing code; its helpers give the standard digests."""

from __future__ import annotations

import io
from pathlib import Path

import picpipe
from picpipe.hashing import md5_bytes, new_hasher, sha256_bytes, sha256_stream

SRC = Path(picpipe.__file__).parent
# Digests of things that are not content; each module says why on its `import hashlib` line.
NON_CONTENT_DIGESTS = frozenset(
    {"pipeline/scan.py", "catalog/browse.py", "web/auth.py", "library/view_state.py"}
)


def test_helpers_give_the_standard_digests() -> None:
    assert sha256_bytes(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert md5_bytes(b"abc").hex() == "900150983cd24fb0d6963f7d28e17f72"
    streamed = new_hasher("sha1")
    for part in (b"a", b"b", b"c"):
        streamed.update(part)
    assert streamed.hexdigest() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    whole = new_hasher()
    whole.update(memoryview(b"abc"))
    assert whole.hexdigest() == sha256_stream(io.BytesIO(b"abc"))[0] == sha256_bytes(b"abc")


def test_only_hashing_py_imports_hashlib() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        if module == "hashing.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            imports = line.strip().startswith(("import hashlib", "from hashlib"))
            if imports and (module not in NON_CONTENT_DIGESTS or "#" not in line):
                found.append(f"src/picpipe/{module}:{number}: {line.strip()}")
    assert not found, "hash content through picpipe.hashing:\n" + "\n".join(found)
