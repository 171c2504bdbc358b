"""The options of a ``kind: immich`` source entry, and its API key from them."""

from __future__ import annotations

import os
from pathlib import Path  # noqa: TC003 - pydantic resolves the option's type at runtime
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from picpipe.config import StrictOptions
from picpipe.errors import SourceMisconfigured


class ImmichSourceOptions(StrictOptions):
    """An Immich server, one user's API key, and optionally the albums to import."""

    url: str = Field(description="Immich server URL, e.g. https://photos.example.org (/api added)")
    api_key: SecretStr | None = Field(
        default=None, description="API key (prefer api_key_env or api_key_file)"
    )
    api_key_env: str | None = Field(
        default=None, description="name of an environment variable that holds the API key"
    )
    api_key_file: Path | None = Field(default=None, description="file that holds the API key")
    albums: list[str] = Field(
        default_factory=list, description="album names to import; none: the whole library"
    )
    verify_tls: bool = Field(default=True, description="check the server's TLS certificate")
    mode: Literal["library", "index"] = Field(
        default="library", description="library: keep originals; index: catalog and thumbnails"
    )
    poll_seconds: float = Field(default=60.0, gt=0, description="interval of the service's polls")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _has_key(self) -> ImmichSourceOptions:
        if self.api_key is None and not self.api_key_env and self.api_key_file is None:
            raise ValueError("one of api_key, api_key_env or api_key_file is required")
        return self


def resolve_api_key(name: str, options: ImmichSourceOptions) -> str:
    """The API key from the config, a named environment variable or a file (first given);
    SourceMisconfigured names the variable or file, never the key."""
    if options.api_key is not None:
        return options.api_key.get_secret_value()
    if options.api_key_env:
        found = os.environ.get(options.api_key_env)
        if not found:
            raise SourceMisconfigured(
                source=name,
                detail=f"api_key_env: environment variable {options.api_key_env} is not set",
            )
        return found
    assert options.api_key_file is not None
    try:
        return options.api_key_file.expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SourceMisconfigured(
            source=name,
            detail=f"api_key_file: cannot read {options.api_key_file} ({exc.strerror})",
        ) from exc
