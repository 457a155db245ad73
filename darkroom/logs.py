"""Log lines as text (the default) or as JSON objects (`DARKROOM_LOG_FORMAT=json`).

JSON: one object per line with `ts`, `level`, `logger`, `message`, a record's dict
arguments as fields of their own, and `exc` for a traceback. The access line
(`darkroom.access`, realtime/observe.py: one per request) thus carries `method`,
`route` (the template), `path`, `status`, `duration_ms`, `actor` and `correlation_id`,
the id the command's events carry (`darkroom history` shows it). In JSON mode uvicorn's
own access log is off: the access line replaces it.

Redaction still applies: `darkroom.redact.install()` cleans every record (message,
each argument, traceback) when it is made, before any formatter sees it.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

JSON, TEXT = "json", "text"
BASE_FIELDS = ("ts", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if isinstance(record.args, Mapping):
            line.update((k, v) for k, v in record.args.items() if k not in BASE_FIELDS)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def dict_config(fmt: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for JSON: everything at INFO through the root's one
    handler on stderr, uvicorn's loggers included (they propagate to it)."""
    if fmt != JSON:
        raise ValueError(f"only the json format has a config of its own, not {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {JSON: {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": JSON,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def uvicorn_options(fmt: str) -> dict[str, Any]:
    """What `uvicorn.run` takes for this format (text: uvicorn's own defaults)."""
    return {"log_config": dict_config(fmt), "access_log": False} if fmt == JSON else {}


def configure(fmt: str) -> None:
    """For processes that do not run uvicorn (`darkroom worker`)."""
    if fmt == JSON:
        logging.config.dictConfig(dict_config(fmt))
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
