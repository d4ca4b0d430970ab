"""Builds the platform's components from Settings, in dependency order. The one place that wires."""
from __future__ import annotations

from dataclasses import dataclass

from lambdalet.blobs import BlobStore
from lambdalet.config import Settings
from lambdalet.crypto.keyring import FileKeyMaterialStore, Keyring
from lambdalet.crypto.master import load_or_create_master_key
from lambdalet.iam import IdentityStore
from lambdalet.services.lambda_service import LambdaService
from lambdalet.store.db import Database, open_database


@dataclass
class Platform:
    settings: Settings
    db: Database
    keyring: Keyring
    blobs: BlobStore
    identity: IdentityStore
    lambda_service: LambdaService

    def close(self) -> None:
        self.db.close()


def open_keyring(settings: Settings) -> Keyring:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    master = load_or_create_master_key(settings.master_key_path)
    return Keyring.open(master, FileKeyMaterialStore(settings.data_dir / "keys"))


def build_platform(settings: Settings) -> Platform:
    keyring = open_keyring(settings)
    db = open_database(settings.db_url)
    blobs = BlobStore(settings.blob_dir, keyring)
    identity = IdentityStore(db, keyring)
    service = LambdaService(db, keyring, blobs, settings)
    return Platform(settings, db, keyring, blobs, identity, service)
