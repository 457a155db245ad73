"""Ray actors that hold loaded models, and the pool the dispatcher draws them from.

One long-lived `ModelActor` per model (or small group of models sharing weights)
and device: the pipeline loads once, in the constructor, and serves task after
task (model affinity). Actors are created with `max_restarts=-1` (a crashed
process comes back and reloads its model) and `max_task_retries=0` (a task lost
with its process is not run again by Ray: attempts are counted in the domain,
which requeues it). A slot joins the idle pool only after its actor's `ready()`
returned, at start and after every restart, so no work goes to an actor that is
still loading.

Progress leaves the actors through one `ProgressRelay` (an async actor): the
denoising loop calls `report` fire-and-forget; the dispatcher long-polls `drain`.
The relay lives on the head node (it needs no CPU; a worker node's death does not
take it along) and comes back if it dies anyway, its calls waiting for it rather
than failing in a loop; the same failure logged again within `QUIET_FOR` seconds is
counted, not printed again.
Cancellation arrives as `ray.cancel(ref)`, which a running sync method only sees
by asking `ray.get_runtime_context().is_canceled()`: the backend asks it in
every step callback and stops the loop there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from inference.models import TASK_MODELS
from inference.quiet import quiet_repeated_failures
from inference.ray_runtime import WORKER_ENV

log = logging.getLogger("darkroom.inference")
# The relay's place: Ray's head-node resource (as Ray Train places its state actor).
HEAD_NODE = {"node:__internal_head__": 0.001}

DEFAULT_BACKEND = "inference.handlers:DiffusersBackend"
PROGRESS_EVERY = 0.1  # seconds between an actor's progress messages for one task

STARTING = "starting"
IDLE = "idle"
BUSY = "busy"
RESTARTING = "restarting"


@dataclass(frozen=True)
class ActorSpec:
    """A kind of actor: the models it loads, how many of them, and their GPU share.

    `gpus` is what each actor declares when GPUs are used (0.25 packs four small
    models on one card: Ray's fractional GPUs are scheduler bookkeeping, so the
    models must fit together in memory). `cpus` None keeps Ray's actor default
    (one CPU to place it, none held while it runs); a number is held for the
    actor's life and also caps torch's CPU threads, so actors sharing a machine's
    cores do not oversubscribe them.
    """

    models: tuple[str, ...]
    count: int = 1
    gpus: float = 1.0
    cpus: float | None = None

    @property
    def name(self) -> str:
        return "+".join(self.models) or "media"

    @property
    def task_types(self) -> frozenset[str]:
        """Task types this actor runs: its models' and those needing no model (stitching)."""
        return frozenset(
            t for t, model in TASK_MODELS.items() if model is None or model in self.models
        )


def default_specs() -> list[ActorSpec]:
    """One actor per model; image-to-image shares the text-to-image weights and actor."""
    return [
        ActorSpec(("text_to_image", "image_to_image")),
        ActorSpec(("inpaint",)),
        ActorSpec(("upscale",)),
        ActorSpec(("image_to_video",)),
    ]


# --- inside the actor process ------------------------------------------------------------


def _quiet_libraries() -> None:
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Progress:
    """Forwards step i of n to the relay, at most every `PROGRESS_EVERY` (and the last)."""

    def __init__(self, relay: Any, task_id: str) -> None:
        self.relay = relay
        self.task_id = task_id
        self.sent_at = 0.0

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if self.relay is None or (now - self.sent_at < PROGRESS_EVERY and step < total):
            return
        self.sent_at = now
        self.relay.report.remote(self.task_id, step, total)


class ModelActor:
    """A backend with its models loaded, in a Ray worker process (wrapped by `ray.remote`)."""

    def __init__(
        self,
        models: Mapping[str, str] | None,
        load: Sequence[str],
        relay_name: str | None,
        tiny_root: str | None = None,
        backend: str = DEFAULT_BACKEND,
        backend_options: Mapping[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        import ray

        _quiet_libraries()
        if threads:
            import torch

            torch.set_num_threads(threads)
        configured = dict(models or {})
        if tiny_root:
            from inference.tiny import ensure_tiny_models

            built = ensure_tiny_models(Path(tiny_root))
            configured = {**{k: str(v) for k, v in built.items()}, **configured}
        module, _, name = backend.partition(":")
        factory = getattr(import_module(module), name)
        self.backend = factory(configured, **dict(backend_options or {}))
        if load:
            self.backend.load(*load)
        self.models = tuple(load)
        # By name, not handle: a handle argument would live in the object store, and an
        # actor restarted after its arguments were released could not be rebuilt.
        self.relay = ray.get_actor(relay_name) if relay_name else None

    def ready(self) -> dict[str, Any]:
        """Answers once the models are loaded (the constructor has returned)."""
        import ray

        return {
            "pid": os.getpid(),
            "device": getattr(self.backend, "device", "cpu"),
            "models": list(self.models),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def run(
        self, task_id: str, task_type: str, params: dict[str, Any], inputs: dict[str, bytes]
    ) -> dict[str, Any]:
        """Runs one task; `ray.cancel` on this call stops it at the next denoising step."""
        import ray

        context = ray.get_runtime_context()
        started = time.time()
        result = self.backend.run(
            task_type, params, inputs, _Progress(self.relay, task_id), context.is_canceled
        )
        return {"result": result, "started": started, "finished": time.time(), "pid": os.getpid()}


class ProgressRelay:
    """Latest progress per task, from the actors to the dispatcher (an async Ray actor)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, int]] = {}
        self.changed: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self.changed is None:
            self.changed = asyncio.Event()
        return self.changed

    async def report(self, task_id: str, step: int, total: int) -> None:
        self.latest[task_id] = (step, total)
        self._event().set()

    async def drain(self, timeout: float) -> dict[str, tuple[int, int]]:
        """Everything reported since the last drain; waits up to `timeout` for something."""
        event = self._event()
        if not self.latest:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        out, self.latest = self.latest, {}
        event.clear()
        return out


# --- the pool, on the dispatcher's side -----------------------------------------------------


@dataclass(eq=False)
class Slot:
    """One actor of the pool and what it is doing."""

    spec: ActorSpec
    index: int
    actor: Any
    state: str = STARTING
    probe: Any = None
    retry_at: float = 0.0
    restarts: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    ready_at: float = 0.0  # wall clock of the last `ready()` answer

    @property
    def name(self) -> str:
        return f"{self.spec.name}#{self.index}"


@dataclass
class PoolConfig:
    """How to build the actors: model sources, the tiny default, GPU use, backend class."""

    specs: Sequence[ActorSpec] = field(default_factory=default_specs)
    models: Mapping[str, str] = field(default_factory=dict)
    tiny_root: str | None = None
    use_gpu: bool | None = None  # None: when torch sees CUDA here (see `wants_gpu`)
    backend: str = DEFAULT_BACKEND
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    probe_backoff: float = 0.5


def wants_gpu(configured: bool | None) -> bool:
    """GPU actors only when the cluster has GPUs and torch sees CUDA in this process.

    A driver on a CPU-only head node of a GPU cluster says so explicitly
    (`use_gpu=True`); inside the actor the device comes from torch either way.
    """
    from inference.ray_runtime import cluster_has_gpus

    if configured is not None:
        return configured
    if not cluster_has_gpus():
        return False
    import torch

    return bool(torch.cuda.is_available())


class ActorPool:
    """The actors of one dispatcher, their states, and the shared progress relay."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.slots: list[Slot] = []
        self.relay: Any = None
        self.relay_name = f"darkroom-progress-{uuid.uuid4().hex[:12]}"
        self.use_gpu = False

    def start(self) -> None:
        """Create the relay and every actor; each becomes idle when its `ready()` answers."""
        import ray

        quiet_repeated_failures(log)

        self.use_gpu = wants_gpu(self.config.use_gpu)
        relay = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(ProgressRelay)
        self.relay = relay.options(name=self.relay_name, resources=HEAD_NODE).remote()
        for spec in self.config.specs:
            for index in range(spec.count):
                slot = Slot(spec, index, self._create(spec))
                self.slots.append(slot)
                self._probe(slot)

    def _create(self, spec: ActorSpec) -> Any:
        import ray

        options: dict[str, Any] = {
            "max_restarts": -1,
            "max_task_retries": 0,
            "runtime_env": {"env_vars": dict(WORKER_ENV)},
        }
        if self.use_gpu and spec.models:
            options["num_gpus"] = spec.gpus
        if spec.cpus is not None:
            options["num_cpus"] = spec.cpus
        remote = ray.remote(**options)(ModelActor)
        return remote.remote(
            dict(self.config.models),
            spec.models,
            self.relay_name,
            self.config.tiny_root,
            self.config.backend,
            dict(self.config.backend_options),
            max(1, round(spec.cpus)) if spec.cpus else None,
        )

    def _probe(self, slot: Slot) -> None:
        slot.probe = slot.actor.ready.remote()

    # -- states ---------------------------------------------------------------------
    def idle(self) -> list[Slot]:
        return [s for s in self.slots if s.state == IDLE]

    def probes(self) -> dict[Any, Slot]:
        return {s.probe: s for s in self.slots if s.probe is not None}

    def probe_answered(self, slot: Slot) -> None:
        """The `ready()` call returned or failed: idle, or try again after a pause."""
        import ray

        ref, slot.probe = slot.probe, None
        try:
            slot.info = ray.get(ref)
        except ray.exceptions.RayActorError as error:
            slot.state = RESTARTING
            slot.retry_at = time.monotonic() + self.config.probe_backoff
            log.debug("actor %s not ready yet: %s", slot.name, type(error).__name__)
            return
        slot.state, slot.ready_at = IDLE, time.time()
        log.info(
            "actor %s ready (pid %s, %s)", slot.name, slot.info.get("pid"), slot.info.get("device")
        )

    def lost(self, slot: Slot) -> None:
        """The actor died under a task: it restarts; probe it until it answers."""
        slot.state = RESTARTING
        slot.task_id = None
        slot.restarts += 1
        slot.retry_at = time.monotonic() + self.config.probe_backoff

    def tick(self, now: float) -> None:
        """Re-probe restarting actors whose pause is over."""
        for slot in self.slots:
            if slot.state == RESTARTING and slot.probe is None and now >= slot.retry_at:
                self._probe(slot)

    def next_probe_at(self) -> float | None:
        due = [s.retry_at for s in self.slots if s.state == RESTARTING and s.probe is None]
        return min(due) if due else None

    def wait_ready(self, timeout: float) -> None:
        """Block until every actor is idle (start-up, tests); raises TimeoutError."""
        import ray

        deadline = time.monotonic() + timeout
        while any(s.state != IDLE for s in self.slots):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                states = {s.name: s.state for s in self.slots}
                raise TimeoutError(f"actors not ready after {timeout} s: {states}")
            self.tick(time.monotonic())
            probes = self.probes()
            if probes:
                done, _ = ray.wait(list(probes), num_returns=1, timeout=min(remaining, 0.5))
                for ref in done:
                    self.probe_answered(probes[ref])
            else:
                time.sleep(min(remaining, 0.05))

    def shutdown(self) -> None:
        import ray

        for slot in self.slots:
            ray.kill(slot.actor, no_restart=True)
        if self.relay is not None:
            ray.kill(self.relay, no_restart=True)
        self.slots.clear()
        self.relay = None
