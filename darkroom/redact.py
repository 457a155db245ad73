"""No credential in any log line: redaction applied to every log record of the process.

uvicorn's access log prints each request's full target, so `GET /ws?token=T`
(documented) or `/api/...?access_token=T` would put a bearer token in the log.
`install()` (called by `darkroom serve` and `darkroom worker`) wraps the
logging module's record factory, so every record made in the process, whichever
logger and handler it goes to, is redacted once, when it is made:

- query-string parameters whose (percent-decoded, case-insensitive) name says
  credential (`token`, `access_token`, `apikey`, `api_key`, `key`, `secret`,
  `password`, `auth`, `jwt`, `ticket`, `signature`, `session`, …) keep their
  name and lose their value: `/ws?token=[redacted]`;
- quoted keys with such a name in a JSON or repr dump (`"token": "…"`, as in a
  logged `auth` frame) lose their value the same way;
- passwords in URLs (`postgresql://user:[redacted]@host/db`) and in
  `password=…` connection strings;
- `Bearer <token>`, anything shaped like a JWT (`eyJ….….…`) and personal access
  tokens (`drk_…`) anywhere in a message, its arguments or its traceback.

Arguments are redacted one by one so formatters that read them (uvicorn's
access formatter unpacks `record.args`) keep working.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
SECRET_NAME = re.compile(
    r"token|api[_-]?key|^key$|[_-]key$|secret|passw|^pwd$|^auth$|authori[sz]ation|jwt|ticket|"
    r"signature|^sig$|session|credential",
    re.IGNORECASE,
)
QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#\s\"'?]{1,100})=(?P<value>[^&;#\s\"']*)")
QUOTED_PAIR = re.compile(  # "token": "…" in a JSON (or repr) dump, e.g. a logged frame
    r"(?P<key>[\"'](?P<name>[\w.-]{1,100})[\"']\s*:\s*[\"'])(?P<value>[^\"']+)"
)
URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)(?P<value>[^@\s/]+)(?=@)", re.IGNORECASE
)
CONNINFO_PASSWORD = re.compile(
    r"(?P<head>(?<![\w-])(?:password|passwd|pwd)\s*=\s*)"
    r"(?P<value>'[^']*'|[^\s'&;]+)",
    re.IGNORECASE,
)
BEARER = re.compile(r"(?P<scheme>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
JWT_SHAPE = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
PAT_SHAPE = re.compile(r"\bdrk_[A-Za-z0-9_-]{8,}")
_HINT = re.compile(r"[?&;:=]|bearer|eyJ|drk_", re.IGNORECASE)  # cheap pre-check


def _pair(found: re.Match[str]) -> str:
    name = found["name"]
    if found["value"] and SECRET_NAME.search(unquote_plus(name)):
        return f"{found['sep']}{name}={REDACTED}"
    return found[0]


def _quoted(found: re.Match[str]) -> str:
    return found["key"] + REDACTED if SECRET_NAME.search(found["name"]) else found[0]


def redact(text: str) -> str:
    """`text` with every credential-looking part replaced by `[redacted]`."""
    if not _HINT.search(text):
        return text
    text = QUERY_PAIR.sub(_pair, text)
    text = QUOTED_PAIR.sub(_quoted, text)
    text = URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = CONNINFO_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = BEARER.sub(lambda m: m["scheme"] + REDACTED, text)
    text = JWT_SHAPE.sub(REDACTED, text)
    return PAT_SHAPE.sub(REDACTED, text)


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    try:
        shown = str(value)
    except Exception:
        return value
    cleaned = redact(shown)
    return value if cleaned == shown else cleaned


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place: message, arguments and traceback text."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    elif record.msg is not None and not isinstance(record.msg, int | float):
        record.msg = _redact_arg(record.msg)
    args = record.args
    if isinstance(args, tuple):
        record.args = tuple(_redact_arg(a) for a in args)
    elif isinstance(args, dict):
        record.args = {k: _redact_arg(v) for k, v in args.items()}
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # Formatters reuse `exc_text` when it is set: format the traceback once,
        # redacted, instead of letting a handler print the raw one.
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactSecrets(logging.Filter):
    """The same redaction as a filter, for handlers configured elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed = threading.Lock()
_factory: Callable[..., logging.LogRecord] | None = None


def install() -> None:
    """Redact every log record made in this process from now on (idempotent)."""
    global _factory
    with _installed:
        if _factory is not None:
            return
        original = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(original(*args, **kwargs))

        _factory = factory
        logging.setLogRecordFactory(factory)
