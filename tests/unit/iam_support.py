"""An IAM of a test's own, in memory: what the IAM, Organizations and execution-role tests start from."""
from __future__ import annotations

from lambdalet.crypto.keyring import Keyring, MemoryKeyMaterialStore
from lambdalet.iam import IdentityStore
from lambdalet.iam.directory import Directory
from lambdalet.store import open_database


def in_memory_iam():
    """(database, identity store, the bootstrap administrator, directory with the built-in policies)."""
    db = open_database("sqlite://")
    identity = IdentityStore(db, Keyring.open(b"m" * 32, MemoryKeyMaterialStore()))
    admin = identity.bootstrap_admin()
    directory = Directory(db)
    directory.ensure_builtin()
    return db, identity, admin, directory
