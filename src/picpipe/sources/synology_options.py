"""The options of a ``kind: synology`` source entry, and where its password comes from."""

from __future__ import annotations

import json
import os
from pathlib import Path  # noqa: TC003 - pydantic reads the annotation at runtime
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from picpipe.config import StrictOptions
from picpipe.errors import SourceMisconfigured


class SynologyOptions(StrictOptions):
    """A ``kind: synology`` source entry: albums of one account on one NAS."""

    url: str = Field(description="the NAS, e.g. http://nas:5000 or https://nas:5001")
    username: str = Field(min_length=1, description="the DSM account")
    password: SecretStr | None = Field(
        default=None, description="password (prefer password_env or password_file)"
    )
    password_env: str | None = Field(
        default=None, description="name of an environment variable holding the password"
    )
    password_file: Path | None = Field(default=None, description="file holding the password")
    otp_env: str | None = Field(
        default=None,
        description="environment variable with a 2-step verification code, needed once: "
        "the device token it earns is kept under the home",
    )
    albums: list[str] = Field(
        default_factory=list,
        description="album names or ids (own or shared with the account); empty = every album",
    )
    folders: list[str] = Field(
        default_factory=list,
        description="whole folders instead of albums (paths such as 2024/kitchen, with their "
        "subfolders) of the personal space, or of the Shared Space with `space: shared`",
    )
    space: Literal["personal", "shared"] = Field(
        default="personal",
        description="personal albums or folders, or the Shared Space (all of it, or `folders`)",
    )
    mode: Literal["library", "index"] = Field(
        default="library", description="keep originals in the library, or only index them"
    )
    poll_seconds: float = Field(default=60.0, ge=5.0, description="interval of the service's polls")
    session: str = Field(default="webui", description="DSM session name (non-admin accounts)")
    timeout: float = Field(default=30.0, gt=0, description="seconds a NAS may stay silent")

    @field_validator("albums", "folders", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        # `albums: [kitchen-dash, 42]`: ids may come as numbers from YAML; from an environment
        # variable (PICPIPE_SOURCES__KITCHEN__ALBUMS) as "a,b" or a JSON list.
        if isinstance(value, str):
            text = value
            try:
                value = json.loads(text)
            except ValueError:
                value = [part.strip() for part in text.split(",") if part.strip()]
        if isinstance(value, list):
            return [str(v) for v in value]
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL of the NAS")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _fits(self) -> SynologyOptions:
        if not any((self.password, self.password_env, self.password_file)):
            raise ValueError("needs password, password_env or password_file")
        if self.space == "shared" and self.albums:
            raise ValueError("the Shared Space has no albums: leave `albums` out for it")
        if self.albums and self.folders:
            raise ValueError("`albums` or `folders`, not both (make two sources)")
        return self


def resolve_password(source: str, options: SynologyOptions) -> str:
    """The password from the config, a named variable or a file; errors name only where."""
    if options.password is not None:
        return options.password.get_secret_value()
    if options.password_env:
        found = os.environ.get(options.password_env)
        if found is None:
            raise SourceMisconfigured(
                source=source,
                detail=f"password: environment variable {options.password_env} is not set",
            )
        return found
    assert options.password_file is not None  # the options' validator saw to it
    try:
        return options.password_file.expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SourceMisconfigured(
            source=source,
            detail=f"password: cannot read {options.password_file} ({exc.strerror})",
        ) from exc


__all__ = ["SynologyOptions", "resolve_password"]
