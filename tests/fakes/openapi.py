"""An OpenAPI 3.0 document as a strict request and response checker for spec-built fakes.

`OpenApiSpec` finds the operation for a method and path, checks path, query and header
parameters, JSON and multipart bodies, and the fake's own JSON responses. Problems come back
as a list of ``{"path": [...], "code": ..., "message": ...}`` dicts (the shape of Immich v3's
Zod validation errors), empty when the request matches.

OpenAPI 3.0 → JSON Schema 2020-12: ``nullable`` becomes a ``null`` alternative; ``date-time``
must carry ``Z`` or an offset (the v3 regex, also where a field has no ``pattern``); objects
that list ``properties`` and say nothing about ``additionalProperties`` accept no other keys.
That last rule is stricter than Immich (whose Zod objects drop unknown keys): a misspelt field
would be ignored by the real server, so the fake refuses it to make the client's mistake show.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

Problem = dict[str, Any]

# Immich's own date-time pattern (the spec repeats it on every pattern-carrying date-time).
DATE_TIME = re.compile(
    r"^(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29"
    r"|\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    r"|(?:02)-(?:0[1-9]|1\d|2[0-8])))T(?:(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
    r"(?:Z|([+-](?:[01]\d|2[0-3]):[0-5]\d)))$"
)

_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(DATE_TIME.match(value))


@_FORMATS.checks("uuid")
def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@_FORMATS.checks("date")
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


@_FORMATS.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or value.count("@") == 1


@dataclass(frozen=True)
class Operation:
    """One operation of the document, with the path parameters of the matched URL."""

    method: str
    template: str
    spec: dict[str, Any]
    path_params: dict[str, str]

    @property
    def operation_id(self) -> str:
        return str(self.spec["operationId"])

    @property
    def permission(self) -> str | None:
        return self.spec.get("x-immich-permission")

    @property
    def secured(self) -> bool:
        return bool(self.spec.get("security"))

    def body_types(self) -> list[str]:
        return list(self.spec.get("requestBody", {}).get("content", {}))


class OpenApiSpec:
    """A loaded OpenAPI 3.0 document; see the module docstring."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.prefix = document.get("servers", [{"url": ""}])[0]["url"].rstrip("/")
        self._components = {
            name: _convert(schema) for name, schema in document["components"]["schemas"].items()
        }
        self._validators: dict[str, Draft202012Validator] = {}
        self._routes: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        for template, item in document["paths"].items():
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self._routes.append((re.compile(f"^{pattern}$"), template, item))
        # Literal segments beat parameters: /assets/statistics before /assets/{id}.
        self._routes.sort(key=lambda r: (r[1].count("{"), -len(r[1])))

    @classmethod
    def load(cls, path: Path) -> OpenApiSpec:
        return _load(str(path))

    # -- matching -----------------------------------------------------------------------------

    def match(self, method: str, path: str) -> Operation | None:
        """The operation for ``method`` on ``path`` (below the server prefix), or None."""
        for pattern, template, item in self._routes:
            found = pattern.match(path)
            if found and method.lower() in item:
                return Operation(method.lower(), template, item[method.lower()], found.groupdict())
        return None

    # -- requests -----------------------------------------------------------------------------

    def check_parameters(
        self, op: Operation, query: dict[str, list[str]], headers: dict[str, str]
    ) -> list[Problem]:
        """Path, query and header parameters; unknown query parameters are refused."""
        problems: list[Problem] = []
        declared = {(p["in"], p["name"]) for p in op.spec.get("parameters", [])}
        for name in query:
            if ("query", name) not in declared:
                problems.append(_problem([name], "unrecognized_keys", f"unknown parameter {name}"))
        for param in op.spec.get("parameters", []):
            where, name = param["in"], param["name"]
            if where == "path":
                raw: list[str] | None = [op.path_params[name]]
            elif where == "query":
                raw = query.get(name)
            elif where == "header":
                value = headers.get(name.lower())
                raw = None if value is None else [value]
            else:
                continue
            if raw is None:
                if param.get("required"):
                    problems.append(_problem([name], "invalid_type", "Required"))
                continue
            schema = _convert(param["schema"])
            value = _coerce(self._resolve(schema), raw)
            problems += self._problems(schema, value, [name])
        return problems

    def check_json(self, op: Operation, body: bytes) -> tuple[Any, list[Problem]]:
        """Parse and check a JSON request body."""
        schema = op.spec["requestBody"]["content"]["application/json"]["schema"]
        try:
            value = json.loads(body)
        except ValueError as exc:
            return None, [_problem([], "invalid_json", f"body is not JSON ({exc})")]
        return value, self._problems(_convert(schema), value, [])

    def check_form(
        self, op: Operation, fields: list[FormField]
    ) -> tuple[dict[str, FormField], list[Problem]]:
        """Check multipart fields: file parts where the schema says binary, typed text elsewhere."""
        schema = self._resolve(
            _convert(op.spec["requestBody"]["content"]["multipart/form-data"]["schema"])
        )
        props: dict[str, Any] = schema.get("properties", {})
        by_name: dict[str, FormField] = {}
        problems: list[Problem] = []
        values: dict[str, Any] = {}
        for field in fields:
            if field.name in by_name:
                problems.append(_problem([field.name], "custom", "field sent twice"))
                continue
            by_name[field.name] = field
            prop = self._resolve(props.get(field.name, {}))
            if prop.get("format") == "binary":
                if field.filename is None:
                    problems.append(_problem([field.name], "invalid_type", "expected a file part"))
                values[field.name] = "<binary>"
            elif field.filename is not None:
                problems.append(_problem([field.name], "invalid_type", "expected a text field"))
            else:
                values[field.name] = _coerce(prop, [field.data.decode("utf-8", "replace")])
        problems += self._problems(schema, values, [])
        return by_name, problems

    # -- responses ----------------------------------------------------------------------------

    def check_response(self, op: Operation, status: int, body: Any) -> list[Problem]:
        """The fake's own JSON answer against the documented response (drift detector)."""
        response = op.spec.get("responses", {}).get(str(status))
        if response is None:
            return [_problem([], "undocumented", f"status {status} is not documented")]
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return [_problem([], "undocumented", f"status {status} has no JSON body")]
        return self._problems(_convert(schema), body, [])

    # -- helpers --------------------------------------------------------------------------------

    def _problems(self, schema: dict[str, Any], value: Any, base: list[Any]) -> list[Problem]:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            root = {**schema, "components": {"schemas": self._components}}
            validator = Draft202012Validator(root, format_checker=_FORMATS)
            self._validators[key] = validator
        out: list[Problem] = []
        seen: set[tuple[str, str]] = set()
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
            path = [*base, *error.absolute_path]
            if error.validator == "required":
                path.append(str(error.message).split("'")[1])
            code = _CODES.get(str(error.validator), "custom")
            message = error.message
            if error.validator == "pattern":  # the date-time regex is long; say what it wants
                message = f"{error.instance!r} does not match the pattern of {path[-1:]}"
            if (json.dumps(path), code) not in seen:  # format and pattern report one mistake
                seen.add((json.dumps(path), code))
                out.append(_problem(path, code, message))
        return out

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self._components[schema["$ref"].rsplit("/", 1)[1]]
        for key in ("anyOf", "allOf"):
            if key in schema:  # nullable or wrapped reference: the first alternative
                return self._resolve(schema[key][0])
        return schema


@dataclass(frozen=True)
class FormField:
    """One multipart part: its name, file name (None for a text field) and bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> list[FormField] | None:
    """Split a ``multipart/form-data`` body; None when it is not well formed."""
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if not found:
        return None
    delimiter = b"--" + found.group(1).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        return None
    fields = []
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            return None
        head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            return None
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name_match = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        if not disposition.startswith("form-data") or name_match is None:
            return None
        file_match = re.search(r'filename="([^"]*)"', disposition)
        fields.append(
            FormField(
                name_match.group(1),
                file_match.group(1) if file_match else None,
                headers.get("content-type"),
                data,
            )
        )
    return fields


_CODES = {
    "required": "invalid_type",
    "type": "invalid_type",
    "format": "invalid_format",
    "pattern": "invalid_format",
    "enum": "invalid_value",
    "additionalProperties": "unrecognized_keys",
    "minimum": "too_small",
    "minItems": "too_small",
    "minLength": "too_small",
    "maximum": "too_big",
    "maxItems": "too_big",
}


def _problem(path: list[Any], code: str, message: str) -> Problem:
    return {"path": path, "code": code, "message": message}


def _convert(schema: dict[str, Any]) -> dict[str, Any]:
    """One OpenAPI 3.0 schema as JSON Schema 2020-12 (see the module docstring)."""
    out = {k: v for k, v in schema.items() if k not in {"nullable", "example"}}
    if "properties" in out:
        out["properties"] = {name: _convert(s) for name, s in out["properties"].items()}
        if out.get("type") == "object" and "additionalProperties" not in out:
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(out["additionalProperties"])
    if "items" in out:
        out["items"] = _convert(out["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [_convert(s) for s in out[key]]
    if schema.get("nullable"):
        if "type" in out and "$ref" not in out and "allOf" not in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _coerce(schema: dict[str, Any], raw: list[str]) -> Any:
    """Text from a URL, header or form field typed as the schema says (left as text if not)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "array":
        return [_coerce(schema.get("items", {}), [item]) for item in raw]
    text = raw[-1]
    if kind == "integer" and re.fullmatch(r"-?\d+", text):
        return int(text)
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean" and text in {"true", "false"}:
        return text == "true"
    if kind == "object":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


@cache
def _load(path: str) -> OpenApiSpec:
    return OpenApiSpec(json.loads(Path(path).read_text(encoding="utf-8")))
