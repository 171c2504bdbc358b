"""Exit codes are an interface: scripts depend on them, so they are pinned here."""

from __future__ import annotations

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
