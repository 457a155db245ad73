"""Tiny models built once per test session, one backend holding them loaded, and one
real Ray cluster (with one pool of model actors) shared by every test that needs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A media store, once a local folder and once an S3 bucket (moto: in-process, no server)."""
    from inference.media import LocalMediaStore, S3MediaStore

    if request.param == "local":
        yield LocalMediaStore(tmp_path / "media")
        return
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="darkroom-test")
        yield S3MediaStore("darkroom-test", client=client)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from inference.tiny import ensure_tiny_models

    return ensure_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def backend(tiny_models: dict[str, Path]):
    from inference.backends import DiffusersBackend

    backend = DiffusersBackend(tiny_models, default_size=(64, 64))
    backend.load()
    return backend


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, Any]]:
    """A local Ray for the whole session: 2 CPUs, no dashboard, a small object store."""
    from inference.ray_runtime import start_ray, stop_ray

    resources = start_ray(
        num_cpus=2,
        object_store_memory=128 * 1024**2,
        log_to_driver=False,
        namespace="darkroom-tests",
    )
    yield resources
    stop_ray()


@pytest.fixture(scope="session")
def actor_pool(ray_cluster: dict[str, Any], tiny_models: dict[str, Path]):
    """Model actors on the tiny pipelines, ready; shared by every dispatcher of the session."""
    from inference_harness import POOL_MODELS

    from inference.actors import ActorPool, ActorSpec, PoolConfig

    root = next(iter(tiny_models.values())).parent
    pool = ActorPool(
        PoolConfig(
            specs=[ActorSpec(models) for models in POOL_MODELS],
            tiny_root=str(root),
            backend_options={"default_size": (64, 64)},
        )
    )
    pool.start()
    pool.wait_ready(timeout=240)
    yield pool
    pool.shutdown()


@pytest.fixture(scope="module")
def rig(database, schema: str, actor_pool, tmp_path_factory: pytest.TempPathFactory):
    """A studio with a running dispatcher over the session's actors (one per test module)."""
    from inference_harness import start_rig

    started = start_rig(database, schema, actor_pool, tmp_path_factory.mktemp("media"))
    yield started
    started.close()
