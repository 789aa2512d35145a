"""Logging configuration: one JSON object per line, or plain text for humans.

Log aggregators (Loki, Elasticsearch, Cloud Logging) index JSON fields, so an operator can ask "every
denial in namespace X" without regular expressions. Callers attach context with ``extra={...}``
(uid, namespace, pod, decision, reason); the formatter copies those fields to the top level.
uvicorn's access log is off by default because every admission log line already carries the decision;
when enabled it is emitted as JSON as well. uvicorn's "Uvicorn running on http://..." line is dropped:
it calls the TLS admission port http (the TLS is ours, not uvicorn's); `webhook.server` logs each port's
real URL instead.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)
# Reserved output keys that an ``extra`` field must not overwrite.
_RESERVED: Final = frozenset({"time", "level", "logger", "message", "exception"})
# Longest value written for one extra field: logs must never carry whole pod specs.
MAX_FIELD_CHARS: Final = 2048

_HANDLER_NAME: Final = "package-injector"
# json.dumps(entry, ensure_ascii=False, separators=(",", ":")), without a new encoder for every line.
_LINE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    """Values json can write as they are; everything else as its (truncated) string."""
    if type(value) is str and len(value) <= MAX_FIELD_CHARS:  # the common case first: one line per review
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS] + "...(truncated)"
    if isinstance(value, list | tuple) and len(value) <= 50:
        return [_jsonable(v) for v in value]
    text = str(value)
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "...(truncated)"


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn.access records carry (client, method, path, http_version, status) as args."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 5:
        client, method, path, http_version, status = args
        return {
            "client": client,
            "method": method,
            "path": path,
            "http_version": http_version,
            "status": status,
        }
    return {}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, JSON-ready, never shadowing the reserved keys."""
    fields: dict[str, Any] = {}
    if record.name == "uvicorn.access":
        fields.update(_access_fields(record))
    for key, value in vars(record).items():
        if key in _RECORD_ATTRS or key.startswith("_"):
            continue
        fields[f"extra_{key}" if key in _RESERVED else key] = _jsonable(value)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the extra fields, then any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return _LINE.encode(entry)


class TextFormatter(logging.Formatter):
    """Human-readable lines that still show the extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if record.name == "uvicorn.access":
            return line
        if fields:
            line += " " + " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in fields.items())
        return line


def _not_uvicorns_running_on(record: logging.LogRecord) -> bool:
    """False for uvicorn's startup line, whose scheme is wrong for the admission port (module docstring)."""
    return not (isinstance(record.msg, str) and record.msg.startswith("Uvicorn running on "))


def configure_logging(
    level: str = "info",
    fmt: Literal["json", "text"] = "json",
    *,
    access_log: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Route the root logger (and uvicorn's loggers) to one stream handler in the chosen format.

    Idempotent: calling it again replaces the handler it installed before, so tests and the CLI can
    reconfigure without duplicating lines.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn installs its own handlers when given a log_config; we pass none and let records propagate.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
        uv.setLevel(level.upper())
    error = logging.getLogger("uvicorn.error")
    if _not_uvicorns_running_on not in error.filters:
        error.addFilter(_not_uvicorns_running_on)
    access = logging.getLogger("uvicorn.access")
    access.disabled = not access_log
