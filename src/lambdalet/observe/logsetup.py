"""The server's own log: Python's logging, one line per record, text (`key=value` fields after the
message) or JSON (one object a line). Fields travel as `extra={"fields": {...}}`; callers put only
what is safe to show there (ids, names, counts, reasons), never request bodies, headers or
credentials (docs/threat-model.md, "Observability")."""
from __future__ import annotations

import json
import logging
import re
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


_PLAIN = re.compile(r'[^\s"=]+\Z')


def _text_value(value) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return text if _PLAIN.match(text) else json.dumps(text)


class TextFormatter(logging.Formatter):
    """`2026-01-01T00:00:00.000Z INFO lambdalet.request: api-request account=… status=200 …`"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_iso(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": _iso(record.created), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), default=str)


def configure(level: str = "info", fmt: str = "text", stream=None) -> None:
    """The root logger: one handler on stderr (or `stream`) with the chosen format and level."""
    if level not in LEVELS or fmt not in FORMATS:
        raise ValueError(f"log level {level!r} / format {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # No formatter here prints a record's file or line: the logging HOWTO's "Optimization" says to skip
    # finding them (a walk up the stack for every record, about a third of a request line's cost).
    logging._srcfile = None
    # Libraries' chatter stays at warnings unless debugging the server itself.
    for noisy in ("alembic", "uvicorn", "uvicorn.error", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.INFO)
