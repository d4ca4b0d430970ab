"""KmsService over a real (temporary, migrated) SQLite database and a real keyring: what the KMS tests
share (the `kms_env` fixture over it: tests/unit/conftest.py)."""
from __future__ import annotations

import os
from pathlib import Path

from lambdalet.crypto import FileKeyMaterialStore, Keyring
from lambdalet.kms import KmsService
from lambdalet.models.context import Caller, RequestContext
from lambdalet.store.db import open_database

ACCOUNT = "123456789012"
OTHER = "210987654321"
REGION = "us-east-1"


def make_ctx(account: str = ACCOUNT, region: str = REGION, user: str = "admin") -> RequestContext:
    return RequestContext(Caller(account, f"arn:aws:iam::{account}:user/{user}", "LKIATEST", "AIDATEST"),
                          region, "req-1", "https://127.0.0.1:9000")


class Env:
    def __init__(self, data: Path):
        self.data = data
        self.db = open_database(f"sqlite:///{data / 'state.db'}")
        self.master = os.urandom(32)
        self.keyring = Keyring.open(self.master, FileKeyMaterialStore(data / "keys"))
        self.now = [1_700_000_000.0]
        self.kms = KmsService(self.db, self.keyring, clock=lambda: self.now[0])
        self.ctx = make_ctx()

    def call(self, op: str, ctx: RequestContext | None = None, **params) -> dict:
        return getattr(self.kms, op)(ctx or self.ctx, params)

    def key(self, **params) -> dict:
        return self.call("create_key", **params)["KeyMetadata"]


ROOT = {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
