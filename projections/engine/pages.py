"""The reader thread: prefetches pages of the log so reading overlaps processing."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

from psycopg import sql

from projections.engine import fastio

if TYPE_CHECKING:
    import psycopg
    from eventsourcing.application import Application

IDLE_TICK = 0.5
END = object()


class PageReader(threading.Thread):
    """Prefetches pages of notifications so reading overlaps processing."""

    def __init__(
        self, app: Application[Any], after: int, page_size: int, stop_at: int | None, conninfo: str
    ) -> None:
        super().__init__(daemon=True, name="projections-reader")
        self.recorder: Any = app.recorder
        self.statement = fastio.select_page_sql(app, bounded=stop_at is not None)
        self.after = after
        self.page_size = page_size
        self.stop_at = stop_at
        self.conninfo = conninfo
        self.pages: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.stopping = threading.Event()
        self.at_head = False

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # handed to the processing thread
            self.pages.put(error)

    def _run(self) -> None:
        import psycopg

        listener = None
        conn = psycopg.connect(self.conninfo, autocommit=True)
        try:
            # Following the log: LISTENing before the first read, so an append committed
            # after any read is announced to this connection (not lost between the two).
            if self.stop_at is None:
                listener = self._listen()
            while not self.stopping.is_set():
                if self.stop_at is not None and self.after >= self.stop_at:
                    self.pages.put(END)
                    return
                page = fastio.read_page(
                    conn, self.statement, self.after, self.page_size, self.stop_at
                )
                if page:
                    self.after = page[-1].id
                    # A partial page reached the head: nothing else is waiting.
                    self.at_head = len(page) < self.page_size
                    self._put(page)
                    if not self.at_head or listener is None:
                        continue
                else:
                    self.at_head = True
                    if listener is None:
                        self.pages.put(END)
                        return
                # At the head: the next read waits for an append's notification. A
                # partial page is not read again at once (that read came back empty
                # under load: half of the reads); an append that committed after the
                # read has already notified, and waking for it drains every
                # notification pending, so one read serves all of them.
                for _ in listener.notifies(timeout=IDLE_TICK, stop_after=1):
                    pass
                for _ in listener.notifies(timeout=0):
                    pass
        finally:
            conn.close()
            if listener is not None:
                listener.close()

    def _put(self, page: Any) -> None:
        while not self.stopping.is_set():
            try:
                self.pages.put(page, timeout=0.2)
                return
            except queue.Full:
                continue

    def _listen(self) -> psycopg.Connection[Any]:
        import psycopg

        conn = psycopg.connect(self.conninfo, autocommit=True)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.recorder.channel_name)))
        except BaseException:
            conn.close()  # not leaked when LISTEN fails
            raise
        return conn

    def stop(self) -> None:
        self.stopping.set()
