"""Logging setup for entry points only: Rich on a terminal, JSON lines otherwise."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from picpipe.redact import mask_urls_in

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RedactUrls(logging.Filter):
    """Mask URL passwords and secret query parameters in every record's message (a library
    may log the URL it connects to; picpipe's own messages are masked already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format string: the handler reports it
        if "://" in message:
            record.msg, record.args = mask_urls_in(message), None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text: the traceback (chained errors' texts) is masked too.
            record.exc_text = mask_urls_in(_PLAIN.formatException(record.exc_info))
        return True


_PLAIN = logging.Formatter()


def setup_logging(level: str = "INFO", *, force_json: bool = False) -> None:
    """Configure the root logger once per process (stderr only; stdout is for results)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_picpipe", False):  # replace only our own (keep a test runner's)
            root.removeHandler(old)
    handler: logging.Handler
    if sys.stderr.isatty() and not force_json:
        from rich.logging import RichHandler

        rich_handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        rich_handler.setFormatter(logging.Formatter("%(message)s"))
        handler = rich_handler
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLineFormatter())
    handler.addFilter(RedactUrls())
    setattr(handler, "_picpipe", True)  # noqa: B010 - a marker, not an attribute of the class
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that log every request (URLs only, but a line per object) or their retries.
    for noisy in ("alembic", "sqlalchemy", "httpx", "httpcore", "botocore", "boto3", "s3transfer",
                  "urllib3", "azure", "smbprotocol", "smbclient", "spnego",
                  "uvicorn.access"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A dropped SMB connection logs a traceback at ERROR that picpipe already reports per item.
    logging.getLogger("smbprotocol.connection").setLevel(logging.CRITICAL)
