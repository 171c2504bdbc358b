from __future__ import annotations

import picpipe


def test_public_surface_is_explicit() -> None:
    assert picpipe.__all__ == ["__version__"]
    for name in picpipe.__all__:
        assert hasattr(picpipe, name)
