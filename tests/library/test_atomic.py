"""Atomic writes: the final name holds the old bytes or the new ones, never half, no temp left."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import picpipe
from picpipe.library.atomic import atomic_path, atomic_write_bytes, rename_over, temp_path
from picpipe.library.layout import TEMP_PREFIX

SRC = Path(picpipe.__file__).parent


def test_write_bytes_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    final = tmp_path / "a.json"
    final.write_bytes(b"old")
    atomic_write_bytes(final, b"new", fsync=True, middle="run-7-a.json")
    assert final.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_stale_temp_of_the_same_name_is_overwritten(tmp_path: Path) -> None:
    final = tmp_path / "a.json"
    stale = temp_path(final, "a.json")
    stale.write_bytes(b"half of an earlier write")
    atomic_write_bytes(final, b"whole", fsync=False, middle="a.json")
    assert final.read_bytes() == b"whole"
    assert not stale.exists()


def test_temp_names_carry_the_prefix_and_the_callers_middle(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "x.jpg"
    assert temp_path(final, "1234-x.jpg") == tmp_path / "sub" / f"{TEMP_PREFIX}1234-x.jpg"
    seen: list[Path] = []
    final.parent.mkdir()
    with atomic_path(final, fsync=False) as temp:
        seen.append(temp)
        temp.write_bytes(b"x")
    assert seen[0].parent == final.parent
    assert seen[0].name.startswith(TEMP_PREFIX)
    assert not seen[0].exists()
    assert final.read_bytes() == b"x"


def test_a_failing_block_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    final = tmp_path / "a.xmp"
    final.write_bytes(b"old")

    def write_half() -> None:
        with atomic_path(final, fsync=True) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk"):
        write_half()
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.xmp"]


def test_a_failed_rename_removes_the_temp(tmp_path: Path) -> None:
    final = tmp_path / "taken"
    final.mkdir()
    (final / "child").write_bytes(b"a folder that is not empty cannot be renamed over")
    with pytest.raises(IsADirectoryError), atomic_path(final, fsync=False) as temp:
        temp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_rename_over_with_fsync(tmp_path: Path) -> None:
    temp, final = tmp_path / f"{TEMP_PREFIX}t", tmp_path / "f"
    temp.write_bytes(b"data")
    rename_over(temp, final, fsync=True)
    assert (final.read_bytes(), temp.exists()) == (b"data", False)


# Modules that rename folders, not files: link views are built whole and exchanged folder
# by folder (renameat2 RENAME_EXCHANGE, or two renames), which no file helper does.
FOLDER_SWAPS = {"library/atomic.py", "library/views.py"}


def test_only_atomic_py_renames_files_into_place() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).as_posix() in FOLDER_SWAPS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("replace", "rename")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "os"
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, "rename into place with picpipe.library.atomic:\n" + "\n".join(found)
