"""Fixtures the unit tests share. A module with a fixture of the same name (several have an `env` of
their own) overrides the one here, as pytest does for any closer definition."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lambdalet.config import Settings
from lambdalet.crypto import FileKeyMaterialStore, Keyring
from lambdalet.queues import QueueService
from lambdalet.store.db import open_database

from . import kms_support, queues_support, services_support


# ---- the Lambda control plane (services/) on a temporary data dir
@pytest.fixture
def env(tmp_path) -> services_support.Env:
    e = services_support.build_env(tmp_path)
    yield e
    e.svc.deps.db.close()


# ---- KMS (kms/) on a temporary data dir
@pytest.fixture
def kms_env(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    e = kms_support.Env(data)
    yield e
    e.db.close()


# ---- SQS (queues/): the service and its data dir, the service alone, a caller
@pytest.fixture
def queue_env(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    db = open_database(f"sqlite:///{data / 'state.db'}")
    keyring = Keyring.open(os.urandom(32), FileKeyMaterialStore(data / "keys"))
    svc = QueueService(db, keyring, Settings(data_dir=data))
    yield svc, data
    db.close()


@pytest.fixture
def svc(queue_env):
    return queue_env[0]


@pytest.fixture
def ctx():
    return queues_support.make_ctx()
