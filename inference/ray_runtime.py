"""Starting and joining Ray: called by entry points only (CLI, serve, tests, bench).

Nothing in `inference` calls `ray.init` on import or inside a library function;
the process that owns the dispatcher decides whether it starts a local cluster
(`address=None`, the one-machine default) or joins one (`ray://…`, `auto`, or a
GCS address such as `10.0.0.5:6379`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("darkroom.inference")

# What every Ray worker process of ours needs in its environment. Hub access stays off:
# a worker never downloads at task time; weights are fetched ahead into a cache or folder.
WORKER_ENV: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}

# A local cluster's object store: results are a few MB, not the default 30% of RAM.
DEFAULT_OBJECT_STORE_BYTES = 256 * 1024**2


def prepare_environment(local: bool) -> None:
    """Environment that must be set before `ray.init`.

    Usage stats are off everywhere. Ray 2.60's token auth is switched off only for
    a cluster this process starts itself (it listens on this machine only); a
    remote cluster keeps whatever auth it was deployed with.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    if local:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def start_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = DEFAULT_OBJECT_STORE_BYTES,
    namespace: str = "darkroom",
    log_to_driver: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Start a local Ray (no `address`) or join one; returns the cluster's resources.

    Idempotent: a process already connected keeps its connection. Call it from the
    main thread, so the process keeps its own signal handlers (see below).
    """
    import ray

    prepare_environment(local=address is None)
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    env_vars = {**WORKER_ENV, **(extra_env or {})}
    options: dict[str, Any] = {
        "namespace": namespace,
        "log_to_driver": log_to_driver,
        "runtime_env": {"env_vars": env_vars},
    }
    if address is None:
        options.update(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            object_store_memory=object_store_memory,
        )
    else:
        options["address"] = address
    with _host_signal_handlers():
        ray.init(**options)
    return dict(ray.cluster_resources())


@contextmanager
def _host_signal_handlers() -> Iterator[None]:
    """Keep the host process's SIGTERM/SIGINT handlers across `ray.init`.

    `ray.init` installs a crash handler that takes SIGTERM and kills the process on
    the spot, so uvicorn (or `darkroom worker`) would never run its graceful stop:
    the dispatcher would not record finished results or hand back running tasks.
    Handlers can only be set from the main thread; call `start_ray` there.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("Ray started off the main thread: its SIGTERM handler stays in place")
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def stop_ray() -> None:
    """Disconnect (and stop the cluster if this process started it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def cluster_has_gpus() -> bool:
    """Whether any node of the connected cluster offers a GPU to the scheduler."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) > 0
