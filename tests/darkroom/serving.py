"""Starting `darkroom serve` in tests: a free loopback port, and waiting for /health."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Returns once /health answers 200; kills the server and fails if it exits or the
    deadline passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start (exit {proc.poll()})")
        time.sleep(0.2)
