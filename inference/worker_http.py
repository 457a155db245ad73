"""A reference pull worker: the studio's worker HTTP protocol, the same backends, no Ray.

For machines outside the Ray cluster (a rented GPU box, a user's own card with a
personal access token). The loop:

1. `POST /api/workers/claim` `{worker_id, run_type, current_model}` for each run
   type it serves → 200 with `{task_id, task_type, params, project_id}`, or 204;
2. reads the inputs the params name (`/media/...` from the server, or any URL;
   a stitch asks `GET /api/tasks/{id}` for each segment's output);
3. runs the backend while a thread heartbeats (`POST /api/workers/heartbeat`
   with the task id); a task listed in the answer's `stop` is cancelled, which
   the backend's step callback notices within one step;
4. uploads the file and its thumbnail (`POST /api/uploads`) and completes
   (`POST /api/tasks/{id}/complete`), or fails (`POST /api/tasks/{id}/fail`);
   an error that running again may cure goes back to the queue instead
   (`PATCH /api/tasks/{id}/status` Queued: the studio counts the attempt);
5. stopped with Ctrl-C or SIGTERM mid-task, it hands the task back
   (`POST /api/tasks/{id}/release`: no attempt spent) before it exits.

Run it: `python -m inference.worker_http --url http://studio:8085 --token $KEY`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from inference.errors import InvalidInputError, MediaNotFoundError, TaskCancelledError
from inference.handlers.results import Backend, Result
from inference.inputs import download, input_locations
from inference.models import TASK_MODELS
from inference.outcomes import describe, retryable

log = logging.getLogger("darkroom.worker")


@dataclass
class WorkerConfig:
    worker_id: str = f"http:{socket.gethostname()}:{os.getpid()}"
    run_types: Sequence[str] = ("gpu", "api")
    current_model: str | None = None
    poll_interval: float = 1.0
    heartbeat_interval: float = 5.0


class HttpWorker:
    """Claims, runs and finishes tasks over HTTP with any `Backend`."""

    def __init__(
        self, client: httpx.Client, backend: Backend, config: WorkerConfig | None = None
    ) -> None:
        self.client = client
        self.backend = backend
        self.config = config or WorkerConfig()
        self.handled: list[tuple[str, str]] = []  # (task id, outcome), newest last
        self.last_position: int | None = None  # of the last command: read your own writes

    # -- the loop ---------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                worked = self.run_once()
            except httpx.HTTPError as error:
                log.warning("studio unreachable: %s", error)
                worked = False
            if not worked:
                stop.wait(self.config.poll_interval)

    def run_once(self) -> bool:
        """Claims and finishes at most one task; False when there was nothing to do."""
        claimed = self.claim()
        if claimed is None:
            return False
        self.handled.append((claimed["task_id"], self.handle(claimed)))
        return True

    def claim(self) -> dict[str, Any] | None:
        for run_type in self.config.run_types:
            response = self.client.post(
                "/api/workers/claim",
                json={
                    "worker_id": self.config.worker_id,
                    "run_type": run_type,
                    "current_model": self.config.current_model,
                },
            )
            if response.status_code == 204:
                continue
            response.raise_for_status()
            return dict(response.json())
        return None

    def handle(self, claimed: dict[str, Any]) -> str:
        task_id = str(claimed["task_id"])
        try:
            return self._handle(task_id, claimed)
        except KeyboardInterrupt:
            # Stopped by its operator, not failed: the task goes back to the queue
            # without spending an attempt (otherwise the sweeper would requeue it
            # later, one attempt down). Best effort: if the studio is unreachable,
            # that sweep is still the fallback.
            self._release(task_id, "the worker was stopped")
            raise

    def _handle(self, task_id: str, claimed: dict[str, Any]) -> str:
        cancelled = threading.Event()
        beating = threading.Event()
        model = TASK_MODELS.get(str(claimed.get("task_type")))
        beat = threading.Thread(
            target=self._heartbeat, args=(task_id, cancelled, beating, model), daemon=True
        )
        beat.start()
        try:
            inputs = self.read_inputs(claimed["task_type"], claimed.get("params") or {})
            result = self.backend.run(
                claimed["task_type"],
                claimed.get("params") or {},
                inputs,
                lambda step, total: None,
                cancelled.is_set,
            )
        except TaskCancelledError:
            return "cancelled"  # the studio said stop: it is Cancelled there already
        except Exception as error:
            return self._give_back(task_id, error)
        finally:
            beating.set()
            beat.join()
        return self._finish(task_id, result)

    # -- pieces -----------------------------------------------------------------------
    def read_inputs(self, task_type: str, params: dict[str, Any]) -> dict[str, bytes]:
        locations = input_locations(task_type, params, self._output_of)
        return {name: self._read(location) for name, location in locations.items()}

    def _read(self, location: str) -> bytes:
        if location.startswith("/media/"):
            response = self.client.get(location)
            if response.status_code == 404:
                raise MediaNotFoundError(f"no media at {location}")
            response.raise_for_status()
            return response.content
        if location.startswith(("http://", "https://")):
            return download(location)
        raise InvalidInputError(f"not a media location or URL: {location!r}")

    def _output_of(self, task_id: str) -> str | None:
        response = self.client.get(f"/api/tasks/{task_id}")
        response.raise_for_status()
        return response.json().get("output_location")

    def _heartbeat(
        self,
        task_id: str,
        cancelled: threading.Event,
        done: threading.Event,
        model: str | None = None,
    ) -> None:
        """Beats while a task runs, reporting `busy` and the model the task runs on (kept
        for `GET /api/workers`)."""
        while True:
            try:
                answer = self.client.post(
                    "/api/workers/heartbeat",
                    json={
                        "worker_id": self.config.worker_id,
                        "task_ids": [task_id],  # the one task it holds: all of them
                        "exhaustive": True,
                        "status": "busy",
                        "current_model": model,
                    },
                )
                if answer.is_success and task_id in answer.json().get("stop", []):
                    cancelled.set()
            except httpx.HTTPError as error:
                log.warning("heartbeat failed: %s", error)
            if done.wait(self.config.heartbeat_interval):
                return

    def upload(self, data: bytes, name: str, content_type: str) -> str:
        response = self.client.post("/api/uploads", files={"file": (name, data, content_type)})
        response.raise_for_status()
        return str(response.json()["location"])

    def _finish(self, task_id: str, result: Result) -> str:
        media = result.media
        location = self.upload(media.data, f"output{media.suffix}", media.content_type)
        thumbnail = self.upload(media.thumbnail, "thumbnail.png", "image/png")
        data = {
            "content_type": media.content_type,
            "media_type": "video" if media.is_video else "image",
            "width": media.width,
            "height": media.height,
            "frames": media.frames,
            "seed": result.seed,
            "worker": self.config.worker_id,
        }
        response = self.client.post(
            f"/api/tasks/{task_id}/complete",
            json={
                "worker_id": self.config.worker_id,
                "output_location": location,
                "thumbnail_url": thumbnail,
                "result_data": data,
            },
        )
        if response.status_code == 409:
            return "dropped"  # cancelled or requeued meanwhile: the studio refuses, rightly
        response.raise_for_status()
        self._remember_position(response)
        return "complete"

    def _remember_position(self, response: httpx.Response) -> None:
        header = response.headers.get("X-Darkroom-Position")
        self.last_position = int(header) if header and header.isdigit() else None

    def _release(self, task_id: str, reason: str) -> None:
        try:
            response = self.client.post(
                f"/api/tasks/{task_id}/release",
                json={"reason": reason, "worker_id": self.config.worker_id},
                timeout=5,
            )
        except httpx.HTTPError as error:
            log.warning("could not hand task %s back: %s", task_id, error)
            return
        if response.is_success:
            self._remember_position(response)
        elif response.status_code != 409:  # 409: it finished or was taken meanwhile
            log.warning(
                "could not hand task %s back: %s %s",
                task_id,
                response.status_code,
                response.text[:200],
            )

    def _give_back(self, task_id: str, error: BaseException) -> str:
        message = describe(error)
        if retryable(error):
            response = self.client.patch(
                f"/api/tasks/{task_id}/status",
                json={
                    "status": "Queued",
                    "error_message": message,
                    "worker_id": self.config.worker_id,
                },
            )
            outcome = "requeue"
        else:
            response = self.client.post(
                f"/api/tasks/{task_id}/fail",
                json={"error_message": message, "worker_id": self.config.worker_id},
            )
            outcome = "fail"
        if response.status_code == 409:
            return "dropped"
        response.raise_for_status()
        self._remember_position(response)
        return outcome


def stop_on_sigterm() -> None:
    """`docker stop` and systemd send SIGTERM: treat it as Ctrl-C, so the task in hand
    is handed back (`HttpWorker.handle`) instead of waiting for the sweeper."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Darkroom reference pull worker")
    parser.add_argument("--url", required=True, help="the studio, e.g. http://localhost:8085")
    parser.add_argument(
        "--token",
        default=os.environ.get("DARKROOM_WORKER_TOKEN", ""),
        help="service key or personal access token",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="folder of tiny models to build/use (default: ./.darkroom/tiny)",
    )
    parser.add_argument("--run-type", action="append", dest="run_types")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from inference.handlers import DiffusersBackend
    from inference.tiny import ensure_tiny_models

    models = ensure_tiny_models(Path(args.models or ".darkroom/models/tiny"))
    backend = DiffusersBackend(models)
    backend.load()
    headers = {"Authorization": f"Bearer {args.token}"}
    config = WorkerConfig(run_types=tuple(args.run_types or ("gpu", "api")))
    stop = threading.Event()
    stop_on_sigterm()
    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
        try:
            HttpWorker(client, backend, config).run_forever(stop)
        except KeyboardInterrupt:
            stop.set()


if __name__ == "__main__":
    main()
