"""Tiny models built once per test session, and one backend holding them loaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
