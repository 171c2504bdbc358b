"""Thumbnail paths: one definition in ``library/layout.py``, used everywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import picpipe
from picpipe.library.layout import THUMB_SIZES, thumb_folder, thumb_metadata_path, thumb_path

SRC = Path(picpipe.__file__).parent
SHA = "ab" + "0" * 62


def test_thumbnail_paths() -> None:
    assert [thumb_folder(size) for size in THUMB_SIZES] == [
        "thumbs/tiny",
        "thumbs/small",
        "thumbs/medium",
    ]
    assert thumb_path(SHA, "medium", "webp") == f"thumbs/medium/ab/{SHA}.webp"
    assert thumb_path(SHA, "small").startswith(thumb_folder("small") + "/ab/")
    assert thumb_metadata_path(SHA) == f"thumbs/metadata/ab/{SHA}.json"


def hand_built_thumb_paths(source: str) -> list[int]:
    """Lines that build a ``thumbs/…`` path themselves: a ``"thumbs/…"`` string or f-string
    (docstrings aside), or ``"thumbs"`` as an operand of ``/``."""
    tree = ast.parse(source)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    found: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and str(first.value).startswith("thumbs/"):
                found.append(node.lineno)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("thumbs/")
            and id(node) not in docstrings
        ):
            found.append(node.lineno)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value == "thumbs":
                    found.append(node.lineno)
    return found


def test_only_layout_builds_thumbnail_paths() -> None:
    found = [
        f"src/picpipe/{path.relative_to(SRC).as_posix()}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).as_posix() != "library/layout.py"
        for line in hand_built_thumb_paths(path.read_text())
    ]
    assert not found, "use library/layout.py for thumbnail paths:\n" + "\n".join(found)


def test_the_check_catches_hand_built_paths() -> None:
    assert hand_built_thumb_paths('p = home / "thumbs" / size\n')
    assert hand_built_thumb_paths('p = f"thumbs/{size}/{sha[:2]}/{sha}.jpg"\n')
    assert not hand_built_thumb_paths('"""Files under ``thumbs/``."""\nd = {"thumbs": 1}\n')
