"""No log line of the whole test run contains a credential the tests used (issue 12).

A pytest plugin (registered by tests/conftest.py; `-p tests.logcheck` elsewhere):

- **Registry.** Every token the run mints or uses is recorded: each JWT made by
  `jwt.encode` (the helpers' `issue_jwt` too), each personal access token a
  `Studio.issue_token` returns in this process, every `token`/`ticket` value in a
  JSON answer and every bearer credential sent by an httpx client, and the
  credential-named variables (`DARKROOM_SERVICE_KEY`, `DARKROOM_JWT_SECRET`, ...)
  of every process the tests start. `record(value)` adds one by hand.
- **Every log line.** In this process, each log record (any logger, uvicorn's
  included, whatever its handlers or propagation) is appended, as formatted, to a
  file under a session directory; the process installs `darkroom.redact` first,
  exactly as `darkroom serve` does, so records are checked as they would be
  written. A child process the tests start with an inherited (or discarded)
  stdout/stderr writes them to files in the same directory instead; a child
  whose output goes to a named file has that file read too, and so are the logs of
  the Ray sessions begun during the run.
- **The check.** When the session finishes every file is searched for every
  recorded token; a hit fails the run and prints the line (the token replaced,
  the rest redacted). The search is by shape for JWTs and `drk_` tokens (one
  regex pass and set lookups), by substring for the few other secrets.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

MIN_LENGTH = 12  # shorter values ("postgres", "abc") match innocent text
SECRET_VARIABLE = re.compile(r"SECRET|SERVICE_KEY|API_KEY|TOKEN|PASSWORD", re.IGNORECASE)
SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|drk_[A-Za-z0-9_-]+")


@dataclass
class Leak:
    path: Path
    line_number: int
    line: str
    kind: str


@dataclass
class Registry:
    """The recorded secrets: shaped ones (JWTs, PATs) by value and length, others apart."""

    shaped: dict[str, str] = field(default_factory=dict)
    lengths: set[int] = field(default_factory=set)
    other: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, value: object, kind: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_LENGTH:
            return
        with self.lock:
            if SHAPED.fullmatch(value):
                self.shaped.setdefault(value, kind)
                self.lengths.add(len(value))
            else:
                self.other.setdefault(value, kind)

    def __len__(self) -> int:
        return len(self.shaped) + len(self.other)

    def find(self, text: str) -> Iterator[tuple[str, str]]:
        """(secret, kind) for each recorded secret `text` contains (once each)."""
        seen: set[str] = set()
        lengths = sorted(self.lengths)
        for found in SHAPED.finditer(text):
            candidate = found[0]
            for length in lengths:
                if length > len(candidate):
                    break
                secret = candidate[:length]
                if secret in self.shaped and secret not in seen:
                    seen.add(secret)
                    yield secret, self.shaped[secret]
        for secret, kind in self.other.items():
            if secret in text:
                yield secret, kind


REGISTRY = Registry()


def record(value: object, kind: str = "token") -> None:
    """Record a credential the tests use: no log line may contain it."""
    REGISTRY.add(value, kind)


# -- where the lines go -----------------------------------------------------------------------
class Capture:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="darkroom-test-logs-"))
        self.started = time.time()
        self.extra_files: set[Path] = set()
        self.children = 0
        self.lock = threading.Lock()
        self.python_log = (self.directory / "python-logging.log").open(
            "a", encoding="utf-8", errors="replace"
        )

    def child_file(self, args: Any, stream: str) -> IO[bytes]:
        with self.lock:
            self.children += 1
            number = self.children
        words = [args] if isinstance(args, str | bytes | os.PathLike) else list(args or ())
        name = re.sub(
            r"[^A-Za-z0-9_.-]+", "_", " ".join(os.path.basename(str(w)) for w in words[:3])
        )[:60]
        return (self.directory / f"child-{number:04d}-{name}.{stream}").open("ab")

    def write_record(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        with self.lock:
            self.python_log.write(f"{record.name}: {text}\n")

    def files(self) -> list[Path]:
        self.python_log.flush()
        found = sorted(p for p in self.directory.iterdir() if p.is_file())
        return found + sorted(p for p in self.extra_files if p.is_file()) + self.ray_logs()

    def ray_logs(self) -> list[Path]:
        """The logs of the Ray sessions begun during the run (Ray's workers and daemons
        write there, not to a stream of a process the tests started)."""
        root = Path(os.environ.get("RAY_TMPDIR", tempfile.gettempdir())) / "ray"
        found: list[Path] = []
        with contextlib.suppress(OSError):
            for session in root.glob("session_2*"):
                if session.is_symlink() or session.stat().st_ctime < self.started:
                    continue
                found += [
                    p
                    for p in (session / "logs").rglob("*")
                    if p.is_file() and p.stat().st_size < 50_000_000
                ]
        return sorted(found)


CAPTURE: Capture | None = None


# -- hooks into what the tests call -----------------------------------------------------------
def _patch_jwt() -> None:
    import jwt

    original = jwt.encode
    if getattr(original, "_logcheck", False):
        return

    def encode(*args: Any, **kwargs: Any) -> str:
        token = original(*args, **kwargs)
        record(token, "jwt")
        secret = args[1] if len(args) > 1 else kwargs.get("key")
        record(secret, "jwt secret")
        return token

    encode._logcheck = True  # type: ignore[attr-defined]
    jwt.encode = encode  # type: ignore[assignment]


def _patch_studio() -> None:
    from domain.services.accounts import AccountServices

    original = AccountServices.issue_token
    if getattr(original, "_logcheck", False):
        return

    def issue_token(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if isinstance(result, Mapping):  # a TokenIssued reads as its JSON answer
            record(result.get("token"), "personal access token")
        return result

    issue_token._logcheck = True  # type: ignore[attr-defined]
    AccountServices.issue_token = issue_token  # type: ignore[method-assign]


BEARER = re.compile(r"^\s*bearer\s+(\S+)", re.IGNORECASE)


def _note_exchange(request: Any, response: Any) -> None:
    auth = request.headers.get("authorization")
    if auth and (found := BEARER.match(auth)):
        record(found[1], "bearer credential")
    content = getattr(response, "_content", None)  # only answers already read
    if content and (b'"token"' in content or b'"ticket"' in content):
        with contextlib.suppress(ValueError):
            _record_json(json.loads(content))


def _record_json(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("token", "ticket") and isinstance(item, str):
                record(item, f"{key} from an API answer")
            else:
                _record_json(item)
    elif isinstance(value, list):
        for item in value[:100]:
            _record_json(item)


def _patch_httpx() -> None:
    import httpx

    sync_send = httpx.Client.send
    if getattr(sync_send, "_logcheck", False):
        return
    async_send = httpx.AsyncClient.send

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = sync_send(self, request, *args, **kwargs)
        _note_exchange(request, response)
        return response

    async def asend(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = await async_send(self, request, *args, **kwargs)
        _note_exchange(request, response)
        return response

    send._logcheck = True  # type: ignore[attr-defined]
    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = asend  # type: ignore[method-assign]


def _patch_popen(capture: Capture) -> None:
    original = subprocess.Popen.__init__
    if getattr(original, "_logcheck", False):
        return

    def init(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        env = kwargs.get("env")
        for name, value in (env or {}).items():
            if SECRET_VARIABLE.search(name) and os.environ.get(name) != value:
                record(value, name)
        opened: list[IO[bytes]] = []
        if not rest:  # positional bufsize/executable/stdin/stdout...: left alone
            for stream in ("stdout", "stderr"):
                target = kwargs.get(stream)
                if target is None or target == subprocess.DEVNULL:
                    handle = capture.child_file(args, stream)
                    opened.append(handle)
                    kwargs[stream] = handle
                elif isinstance(getattr(target, "name", None), str):
                    capture.extra_files.add(Path(target.name))
        try:
            original(self, args, *rest, **kwargs)
        finally:
            for handle in opened:
                handle.close()

    init._logcheck = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = init  # type: ignore[method-assign]


def _patch_logging(capture: Capture) -> None:
    from darkroom import redact

    redact.install()  # the records are checked as `darkroom serve` would write them
    made = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made_record = made(*args, **kwargs)
        capture.write_record(made_record)
        return made_record

    logging.setLogRecordFactory(factory)


# -- the check ---------------------------------------------------------------------------------
def scan(files: list[Path], registry: Registry = REGISTRY) -> list[Leak]:
    leaks: list[Leak] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for secret, kind in list(registry.find(text)):
            lines = (
                Leak(path, number, line, kind)
                for number, line in enumerate(text.splitlines(), 1)
                if secret in line
            )
            leaks.extend(itertools.islice(lines, 3))  # a few lines per secret and file
    return leaks


def shown(line: str) -> str:
    """A leaking line fit to print: recorded secrets and credential shapes replaced."""
    from darkroom import redact

    pieces = [line]
    for secret, _ in REGISTRY.find(line):
        pieces = [part for piece in pieces for part in piece.split(secret)]
    return "[recorded secret]".join(redact.redact(piece) for piece in pieces)[:500]


@dataclass
class Outcome:
    leaks: list[Leak]
    files: int
    size: int
    seconds: float
    exitstatus: int


OUTCOME: list[Outcome] = []


def pytest_configure(config: pytest.Config) -> None:
    global CAPTURE
    if CAPTURE is not None:
        return
    CAPTURE = Capture()
    _patch_logging(CAPTURE)
    _patch_popen(CAPTURE)
    _patch_jwt()
    _patch_httpx()
    with contextlib.suppress(ImportError):
        _patch_studio()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if CAPTURE is None:
        return
    started = time.monotonic()
    files = CAPTURE.files()
    leaks = scan(files)
    size = sum(p.stat().st_size for p in files if p.exists())
    OUTCOME.append(Outcome(leaks, len(files), size, time.monotonic() - started, int(exitstatus)))
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not OUTCOME or CAPTURE is None:
        return
    outcome = OUTCOME[-1]
    report = (
        f"log check: {len(REGISTRY)} recorded secrets, {outcome.files} log files "
        f"({outcome.size / 1e6:.1f} MB) searched in {outcome.seconds:.2f} s"
    )
    if not outcome.leaks:
        terminalreporter.write_line(f"{report}: no secret in any log line")
        if outcome.exitstatus == 0:
            shutil.rmtree(CAPTURE.directory, ignore_errors=True)
        else:  # what the servers said, for the failures above
            terminalreporter.write_line(f"server and log output kept in {CAPTURE.directory}")
        return
    terminalreporter.section("secrets in log lines", sep="=", red=True, bold=True)
    terminalreporter.write_line(
        f"{report}: {len(outcome.leaks)} leaking lines; logs kept in {CAPTURE.directory}"
    )
    for leak in outcome.leaks[:50]:
        terminalreporter.write_line(
            f"SECRET IN LOG ({leak.kind}) {leak.path.name}:{leak.line_number}: {shown(leak.line)}",
            red=True,
        )
