"""Exit codes are an interface: scripts depend on them, so they are pinned here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from picpipe import errors
from picpipe.errors import ExitCode


def test_exit_codes_are_pinned() -> None:
    assert {k: v for k, v in vars(ExitCode).items() if k.isupper()} == {
        "OK": 0,
        "INTERNAL": 1,
        "USAGE": 2,
        "ITEMS_FAILED": 3,
        "CONFIG": 4,
        "CATALOG": 5,
        "LIBRARY": 6,
        "DEPENDENCY": 7,
        "SOURCE": 8,
        "INTEGRITY": 9,
        "BUSY": 10,
        "DESTINATION": 11,
    }


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.ConfigError, 4),
        (errors.CatalogError, 5),
        (errors.CatalogBusy, 10),
        (errors.LibraryUnwritable, 6),
        (errors.EmptyFile, 3),
        (errors.ItemsFailed, 3),
        (errors.DependencyMissing, 7),
        (errors.IntegrityProblems, 9),
        (errors.DestinationUnavailable, 11),
        (errors.DestinationMisconfigured, 4),
        (errors.ServeRefused, 4),
    ],
)
def test_each_error_group_has_its_exit_code(cls: type[errors.PicpipeError], code: int) -> None:
    assert cls.exit_code == code


def test_message_is_filled_from_fields_and_reason_drops_the_path() -> None:
    error = errors.UnreadableFile(path="phone:a.jpg", detail="Permission denied")
    assert error.message == "phone:a.jpg: cannot be read (Permission denied); check its permissions"
    assert error.reason == "cannot be read (Permission denied); check its permissions"
    assert not error.retryable
    assert errors.TornRead(path="x").retryable


def test_a_missing_field_still_gives_a_message() -> None:
    assert "ConfigError" in errors.ConfigError().message


def _exception_classes_outside_errors() -> list[str]:
    """Classes defined outside errors.py whose base is an exception (by name)."""
    tree_names = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    found = []
    src = Path(errors.__file__).parent
    for path in sorted(src.rglob("*.py")):
        if path.name == "errors.py" and path.parent == src:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name in tree_names or name.endswith(("Error", "Exception")):
                    found.append(f"{path.relative_to(src)}:{node.lineno}: {node.name}({name})")
    return found


def test_every_error_class_lives_in_errors_py() -> None:
    assert _exception_classes_outside_errors() == []


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (errors.OriginalUnreachable, errors.LibraryError),
        (errors.EntryTooLarge, errors.PicpipeError),
        (errors.ConversionFailed, errors.ItemError),
        (errors.SidecarError, errors.ItemError),
        (errors.ThumbnailFailed, errors.ItemError),
        (errors.OriginalUnreadable, errors.ThumbnailFailed),
        (errors.ThumbnailWriteFailed, errors.ItemError),
        (errors.ExifToolFailed, errors.PicpipeError),
        (errors.ThumbnailsFailed, errors.ItemsFailed),
    ],
)
def test_moved_errors_keep_their_place_in_the_tree(
    cls: type[errors.PicpipeError], base: type[errors.PicpipeError]
) -> None:
    assert issubclass(cls, base)
