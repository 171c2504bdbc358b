"""The one place secrets are hidden before anything is printed, logged or answered.

- `mask_url`: a URL with its user-info password and secret query parameters (``password``,
  ``sig``, ``key``, ``token``… and every Azure SAS part) replaced by ``********``; used
  wherever a URL is shown (``picpipe config``, catalog connection errors, destination
  reports, HTTP error bodies).
- `looks_secret`: whether a setting's *name* suggests a secret, misspellings included
  (``acess_key``, ``pasword``, ``secrt``), so a value under a mistyped key is masked too.
- `mask_values`: plain data (the effective config) with secret-named values masked and
  every URL-shaped string passed through `mask_url`.
- `validation_problems`: a pydantic ``ValidationError`` as ``key: problem`` lines; the input
  value only when neither the key nor the value looks secret (pydantic's own text repeats
  every value).

Nothing here raises; a value it cannot parse is returned masked rather than shown.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

MASK = "********"

# Query parameters that carry a secret: database passwords, API keys, Azure SAS parts (the
# signature ``sig`` is the secret; ``sv``, ``se``, ``sp``… tell what it grants and when).
_SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
        "sv",
        "ss",
        "srt",
        "sp",
        "se",
        "st",
        "spr",
        "sr",
        "skoid",
        "sktid",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "sslpassword",
    }
)

# A setting name that holds (or, misspelt, probably holds) a secret. Deliberately loose:
# masking a harmless value costs nothing, showing a key costs a rotation.
_SECRET_NAME = re.compile(
    r"pas+w|pass|pwd|secr?e?t|token|key|cred|sas|sig|auth|connection_?string|private|"
    r"ac+es+_?id|ac+ess",
    re.IGNORECASE,
)
# Names that match the pattern above but only ever hold paths or variable names.
_NOT_SECRET_SUFFIXES = ("_env", "_file")

# A URL in free text ends before trailing punctuation ("…/db: refused", "(at http://h/).").
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>:.,;)]")


def looks_secret(name: str) -> bool:
    """True when a setting called ``name`` may hold a secret (``*_env``/``*_file`` do not)."""
    lowered = name.lower()
    if lowered.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return bool(_SECRET_NAME.search(lowered))


def mask_url(url: str) -> str:
    """``url`` with the user-info password and secret query parameters masked.

    A user name alone (``https://token@host``) is masked too: for many services (Immich
    share links, Git hosts) the "user" is the credential.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_userinfo_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in _SECRET_PARAMS for name, _ in pairs):
            query = "&".join(
                f"{quote(name, safe='')}="
                + (MASK if name.lower() in _SECRET_PARAMS else quote(value, safe="/:,"))
                for name, value in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    # Rebuilt by hand: urlunsplit drops the empty authority of ``postgresql:///db``.
    shown = (
        f"{parts.scheme}://{netloc}{parts.path}" if "://" in url else f"{parts.scheme}:{parts.path}"
    )
    if query:
        shown += f"?{query}"
    if parts.fragment:
        shown += f"#{parts.fragment}"
    return shown


def mask_urls_in(text: str) -> str:
    """Free text with every URL in it passed through `mask_url`."""
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)


def _mask_userinfo_text(url: str) -> str:
    return re.sub(r"(://)[^/@\s]*@", rf"\1{MASK}@", url)


def mask_values(value: Any, key: str = "") -> Any:
    """``value`` (plain data) with secret-named entries masked and URLs in strings masked."""
    if isinstance(value, dict):
        return {k: mask_values(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_values(v, key) for v in value]
    if value in (None, "") or isinstance(value, bool | int | float):
        return value
    if key and looks_secret(key):
        return MASK
    if isinstance(value, str) and "://" in value:
        return mask_urls_in(value)
    return value


def validation_problems(
    exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> list[str]:
    """Each error of ``exc`` as one ``key: problem`` line.

    ``prefix`` (``destinations.nas.``) is put before each location. Unknown keys read
    "unknown key" rather than pydantic's "Extra inputs are not permitted", with the keys that
    are allowed there when ``model`` (the validated model) is given. The input value is shown
    (``got 'LOUD'``) unless the key looks secret or the value could be a key or token
    (a secret pasted under the wrong name must not be echoed either).
    """
    lines = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = tuple(error.get("loc", ()))
        where = (prefix + ".".join(str(part) for part in loc)).rstrip(".")
        if error.get("type") == "extra_forbidden":
            problem = "unknown key"
            known = _known_keys(model, loc[:-1]) if model is not None else []
            if known:
                close = difflib.get_close_matches(str(loc[-1]) if loc else "", known, n=1)
                if close:
                    problem += f" (did you mean {close[0]}?)"
                problem += f"; known: {', '.join(known)}"
        else:
            problem = error["msg"].removeprefix("Value error, ")  # our validators' own words
            shown = _shown_input(loc, error.get("input"))
            if shown is not None:
                problem += f" (got {shown})"
        lines.append(f"{where}: {problem}" if where else problem)
    return lines or ["invalid settings"]


def _shown_input(loc: tuple[Any, ...], value: Any) -> str | None:
    """The offending value as ``repr``, or None when it may be a secret or says nothing."""
    if any(looks_secret(str(part)) for part in loc):
        return None
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, str) and not _looks_like_token(value):
        text = mask_urls_in(value)
        return repr(text if len(text) <= 60 else text[:57] + "...")
    return None


def _looks_like_token(text: str) -> bool:
    """A value that may be a key pasted under the wrong name: long, no spaces, mixed
    letters and digits (or just long). ``LOUD``, ``gif``, ``by-dat`` are shown."""
    if any(ch.isspace() for ch in text) or len(text) < 12:
        return False
    mixed = any(ch.isdigit() for ch in text) and any(ch.isalpha() for ch in text)
    return mixed or len(text) >= 24


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` (inside ``model``) accepts; [] when it is not a model."""
    from pydantic import BaseModel as _BaseModel

    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, _BaseModel)):
            return []
        fields = current.model_fields
        field = fields.get(str(part)) or next(
            (f for f in fields.values() if str(part) in _aliases(f)), None
        )
        if field is None:
            return []
        current = _model_of(field.annotation)
    if not (isinstance(current, type) and issubclass(current, _BaseModel)):
        return []
    return sorted(f.serialization_alias or name for name, f in current.model_fields.items())


def _aliases(field: Any) -> set[str]:
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return {c for c in choices if isinstance(c, str)}
    names = {field.alias, field.serialization_alias, alias if isinstance(alias, str) else None}
    return {n for n in names if n}


def _model_of(annotation: Any) -> Any:
    """``X`` for ``X | None`` annotations (the optional sub-models), else the annotation."""
    from pydantic import BaseModel as _BaseModel

    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, _BaseModel):
            return arg
    return annotation


__all__ = [
    "MASK",
    "looks_secret",
    "mask_url",
    "mask_urls_in",
    "mask_values",
    "validation_problems",
]
