"""The one place secrets are hidden before anything is printed, logged or answered.

- `mask_url`: a URL with its user-info password and secret query parameters (``password``,
  ``sig``, ``key``, ``token``… and every Azure SAS part) replaced by ``********``; used
  wherever a URL is shown (``picpipe config``, catalog connection errors, destination
  reports, HTTP error bodies).
- `looks_secret`: whether a setting's *name* suggests a secret, misspellings included
  (``acess_key``, ``pasword``, ``secrt``), so a value under a mistyped key is masked too.
- `mask_values`: plain data (the effective config) with secret-named values masked and
  every URL-shaped string passed through `mask_url`.
- `validation_problems`: a pydantic ``ValidationError`` as ``key: problem`` lines, never
  with the input values (pydantic's own text repeats them, secrets included).

Nothing here raises; a value it cannot parse is returned masked rather than shown.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

if TYPE_CHECKING:
    from pydantic import ValidationError

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


def validation_problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """Each error of ``exc`` as ``key: problem``, the input value left out.

    ``prefix`` (``destinations.nas.``) is put before each location. Unknown keys read
    "unknown key" rather than pydantic's "Extra inputs are not permitted".
    """
    lines = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = (prefix + ".".join(str(part) for part in error.get("loc", ()))).rstrip(".")
        problem = "unknown key" if error.get("type") == "extra_forbidden" else error["msg"]
        problem = problem.removeprefix("Value error, ")  # our validators' own words
        lines.append(f"{where}: {problem}" if where else problem)
    return lines or ["invalid settings"]


__all__ = [
    "MASK",
    "looks_secret",
    "mask_url",
    "mask_urls_in",
    "mask_values",
    "validation_problems",
]
