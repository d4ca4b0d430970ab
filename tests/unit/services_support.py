"""The control-plane tests' harness: a real LambdaService on a temporary SQLite file, with the real
keyring, blob store and zip checks (the `env` fixture over it: tests/unit/conftest.py)."""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lambdalet.blobs import BlobStore
from lambdalet.config import Settings
from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller, RequestContext
from lambdalet.services.lambda_service import LambdaService
from lambdalet.store import open_database

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"


def make_ctx(account: str = ACCOUNT, region: str = REGION) -> RequestContext:
    caller = Caller(account, f"arn:aws:iam::{account}:user/admin", "LKIATEST", "AIDATEST")
    return RequestContext(caller=caller, region=region, request_id="req-1", base_url="https://127.0.0.1:9000")


def make_zip(files: dict[str, str] | None = None, *, stored: bool = False) -> bytes:
    files = files or {"app.py": "def handler(event, context):\n    return event\n"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@dataclass
class Env:
    svc: LambdaService
    ctx: RequestContext
    data_dir: Path
    blobs: BlobStore
    keyring: Keyring
    now: list

    def create(self, name: str, *, wait: bool = True, **over) -> dict:
        """CreateFunction; wait: then, as a client with boto3's function_active_v2 waiter, read the
        function once Active (a new RevisionId: services/states.py) and return that configuration."""
        params = dict(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                      Code={"ZipFile": make_zip()})
        params.update(over)
        out = self.svc.create_function(self.ctx, params)
        if not wait:
            return out
        qualifier = {} if out["Version"] == "$LATEST" else {"Qualifier": out["Version"]}
        return self.call("get_function_configuration", FunctionName=name, **qualifier)

    def call(self, op: str, **params) -> dict:
        return getattr(self.svc, op)(self.ctx, params)

    def tick(self, seconds: float = 1.0) -> None:
        self.now[0] += seconds


def build_env(tmp_path: Path, settings: Settings | None = None) -> Env:
    keyring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    blobs = BlobStore(tmp_path / "blobs", keyring)
    now = [1_795_000_000.0]
    svc = LambdaService(db, keyring, blobs, settings or Settings(data_dir=tmp_path), clock=lambda: now[0])
    return Env(svc, make_ctx(), tmp_path, blobs, keyring, now)


def blob_files(e: Env) -> list[Path]:
    return [p for p in e.blobs.root.rglob("*") if p.is_file()] if e.blobs.root.exists() else []
