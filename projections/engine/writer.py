"""A batch as plain data, how it is written, and the child process that writes it.

Why a process and not a thread: profiled on the 2-core box, committing in a
writer *thread* while the main thread folded the next batch gained nothing
over committing inline (12.2k events/s either way). Every socket wait inside
psycopg releases the GIL, and getting it back from the thread that folds costs
up to the interpreter's switch interval (5 ms): about thirty waits a batch, a
convoy that ate the overlap. A child process has its own GIL. The parent
pickles the batch (rows are JSON-ready dicts; a row emitted on two topics is
pickled once) and goes on folding while the child formats and writes it.

The child writes each batch in one transaction, exactly as the runner would
(`write_batch`), and answers `ok` or the exception. It never outlives its
runner's batch: idle, it reads end-of-file when the parent goes and exits; busy,
it checks that its parent is still the one that started it just before COMMIT
and rolls back otherwise, so a runner killed mid-batch leaves no writer behind
to commit after a successor has read the positions (the kernel's parent-death
signal would do it too, but it follows the *thread* that spawned the child,
and a runner may flush first from a short-lived thread).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from projections import changelog, db
from projections.engine.writes import apply
from projections.errors import SkippedBatchError, WriterGoneError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("darkroom.projections")
RESUME = b"resume"  # never a pickle
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
GC_EVERY = 100  # batches
# glibc's malloc gives every buffer over 128 KiB (a batch's pickle, its COPY
# text) its own mmap and returns it on free, and trims the heap top: each batch
# then faulted its megabytes in afresh (catching up the bench history: 0.76
# page faults and 2.8 µs of kernel time an event). Kept in the heap and reused
# instead: 0.09 faults and 1.1 µs. Set in the child's environment only; a
# value the operator set wins.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


@dataclass
class DeadLetter:
    view: str
    position: int
    topic: str
    originator_id: Any
    originator_version: int | None
    error: str
    trace: str


@dataclass
class Batch:
    """One transaction's worth: ops per view version, change rows, dead letters."""

    position: int
    ops: list[tuple[str, int, dict[str, str], list[Any]]]
    changes: list[changelog.Entry]
    dead: list[DeadLetter]
    retried: list[tuple[str, int]]


TRACK = (
    "UPDATE projection_tracking t SET position = %s, updated_at = now() "
    "FROM unnest(%s::text[], %s::int[]) AS w(view, version) "
    "WHERE t.view = w.view AND t.version = w.version"
)
NOTIFY = f"SELECT pg_notify('{db.NOTIFY_CHANNEL}', %s)"
TRACK_AND_NOTIFY = f"WITH tracked AS ({TRACK}) {NOTIFY}"


def write_batch(cur: psycopg.Cursor[Any], batch: Batch) -> None:
    """Everything of `batch` inside the caller's transaction."""
    for _name, _version, names, ops in batch.ops:
        apply(cur, names, ops)
    if batch.changes:
        changelog.write(cur, batch.changes)
    if batch.retried:
        cur.executemany(
            "DELETE FROM projection_dead_letters WHERE view = %s AND position = %s", batch.retried
        )
    if batch.dead:
        write_dead(cur, batch.dead)
    # The positions and the change log's NOTIFY: one prepared statement (two before).
    if batch.ops:
        track = (batch.position, [o[0] for o in batch.ops], [o[1] for o in batch.ops])
        if batch.changes:
            cur.execute(TRACK_AND_NOTIFY, (*track, str(batch.position)), prepare=True)
        else:
            cur.execute(TRACK, track, prepare=True)
    elif batch.changes:
        cur.execute(NOTIFY, (str(batch.position),), prepare=True)


def write_dead(cur: psycopg.Cursor[Any], dead: list[DeadLetter]) -> None:
    cur.executemany(
        "INSERT INTO projection_dead_letters (view, position, topic, originator_id, "
        "originator_version, error, traceback) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (view, position) DO UPDATE SET error = EXCLUDED.error, "
        "traceback = EXCLUDED.traceback, attempts = projection_dead_letters.attempts + 1, "
        "retry_requested = false, updated_at = now()",
        [
            (d.view, d.position, d.topic, d.originator_id, d.originator_version, d.error, d.trace)
            for d in dead
        ],
    )


def widen(fd: int) -> None:
    """As big a pipe buffer as this process may have (1 MiB by default on Linux).

    With the default 64 KiB, handing a batch (about 0.9 MB pickled at 2,000
    events) to a child still busy with the one before blocked the runner until
    the child read it: 2.5 s of a 20 s catch-up spent not folding. Batches
    bigger than the buffer still wait for the child, only less.
    """
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(fd, F_SETPIPE_SZ, limit)
    except (OSError, ValueError):
        pass  # not Linux, or a tighter limit: a smaller buffer only costs speed


class WriterProcess:
    """The parent's handle: `submit` a batch, later `wait` for its outcome.

    The child is `python -m projections.engine.writer` (not `multiprocessing`'s
    spawn, which re-runs the parent's main module: any script without a
    `__main__` guard would break); it talks over two pipes it inherits.
    """

    def __init__(self, conninfo: str, schema: str, *, durable: bool = False) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.durable = durable
        self._to: Connection | None = None
        self._from: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.pending = 0  # batches submitted, outcome not read yet
        self._failed = False

    def start(self) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        widen(down_w)
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}
        for name, value in MALLOC_ENV.items():
            env.setdefault(name, value)
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "projections.engine.writer",
                    str(down_r),
                    str(up_w),
                    str(os.getpid()),
                ],
                pass_fds=(down_r, up_w),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(down_w)
            os.close(up_r)
            raise
        finally:
            os.close(down_r)
            os.close(up_w)
        self._to, self._from = Connection(down_w, readable=False), Connection(up_r, writable=False)
        try:
            # Sent, not passed on the command line: a conninfo may hold a password.
            self._to.send((self.conninfo, self.schema, self.durable))
        except OSError as error:
            self.close()
            raise WriterGoneError(f"the writer process is gone: {error}") from error

    def submit(self, batch: Batch) -> None:
        if self._to is None:
            self.start()
        assert self._to is not None
        if self._failed:
            self._resume()
        try:
            self._to.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
        except OSError as error:
            self.close()
            raise WriterGoneError(f"the writer process is gone: {error}") from error
        self.pending += 1

    def wait(self) -> None:
        """The outcome of the oldest batch not waited for: returns, or raises its error."""
        if self._from is None:
            raise WriterGoneError("the writer process is gone")
        assert self.pending
        self.pending -= 1
        try:
            outcome, error = self._from.recv()
        except (EOFError, OSError) as gone:
            code = self._process.poll() if self._process is not None else None
            self.close()
            raise WriterGoneError(f"the writer process died (exit code {code})") from gone
        if outcome == "error":
            self._failed = True
            raise error
        if outcome == "skipped":
            raise SkippedBatchError("not written: an earlier batch failed")

    def answered(self, timeout: float) -> bool:
        """Whether the oldest batch's outcome is there to `wait` for, waiting up to
        `timeout` seconds (True when the child is gone: `wait` then says so)."""
        if self._from is None:
            return True
        try:
            return self._from.poll(timeout)
        except (EOFError, OSError):
            return True

    def _resume(self) -> None:
        """After a failed batch the child skips what was already queued; once those
        answers are read (the runner has gone back to its last commit), go on."""
        while self.pending:
            with contextlib.suppress(SkippedBatchError):
                self.wait()
        assert self._to is not None
        self._to.send_bytes(RESUME)
        self._failed = False

    def kill(self) -> None:
        """Stop the child at once, from any thread (a reader blocked on it gets EOF)."""
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._process.kill()

    def close(self) -> None:
        for end in (self._to, self._from):
            if end is not None:
                end.close()
        self._to = self._from = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)  # it exits when its pipe closes
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
        self.pending = 0
        self._failed = False


# ---------------------------------------------------------------- the child


def serve(down: Connection, up: Connection, parent: int) -> None:
    """The child's loop: one transaction per batch received, answered in order."""
    conninfo, schema, durable = down.recv()
    conn = None
    failed = False
    # A batch is a tree of dicts and strings, freed by reference counting when
    # it is written. The cyclic GC only rescanned it while it was unpickled
    # (about a fifth of this process's CPU went to unpickling): it runs after a
    # failure instead, when a broken connection or a traceback may hold cycles,
    # and every `GC_EVERY` batches for whatever else might.
    gc.disable()
    written = 0
    while True:
        try:
            data = down.recv_bytes()
        except (EOFError, OSError):
            break
        if data == RESUME:
            failed = False
            continue
        if failed:
            # Written after a batch that failed, it would commit a later position
            # without the earlier rows: skipped until the parent has recovered.
            if not _answer(up, ("skipped", None)):
                break
            continue
        try:
            if conn is None or conn.closed or conn.broken:
                conn = _connect(conninfo, schema, durable)
            batch = pickle.loads(data)
            with conn.transaction():
                write_batch(conn.cursor(), batch)
                if os.getppid() != parent:
                    raise ParentGoneError  # rolls back: see the module docstring
        except ParentGoneError:
            break
        except Exception as error:
            failed = True
            answered = _answer(up, ("error", _portable(error)))
        else:
            answered = _answer(up, ("ok", None))
        if not answered:
            break
        batch = data = b""  # freed now, not while the next one is read
        written += 1
        if failed or written % GC_EVERY == 0:
            gc.collect()  # after a failure: a broken connection's or a traceback's cycles
    if conn is not None:
        conn.close()


def _answer(up: Connection, outcome: tuple[str, Any]) -> bool:
    """Send an outcome; False when the parent has closed its end (it is going away)."""
    try:
        up.send(outcome)
    except OSError:
        return False
    return True


def _connect(conninfo: str, schema: str, durable: bool) -> psycopg.Connection[Any]:
    conn = db.connect(conninfo, schema, autocommit=True)
    if not durable:
        conn.execute("SET synchronous_commit = off")  # see Runner.open
    conn.autocommit = False
    return conn


def _portable(error: Exception) -> Exception:
    """The error itself if it survives pickling (psycopg's do), else its text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


class ParentGoneError(Exception):
    """The runner that started this writer died while a batch was being written."""


def main(argv: list[str]) -> None:
    down_fd, up_fd, parent = (int(a) for a in argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    gc.disable()  # see serve
    serve(Connection(down_fd, writable=False), Connection(up_fd, readable=False), parent)


if __name__ == "__main__":
    main(sys.argv[1:])
