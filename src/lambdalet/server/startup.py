"""Before anything is built: this server claims its data dir and its volatile run dir, clears what
servers that are gone left behind, and moves into a mount namespace of its own."""
from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass
from typing import IO

from lambdalet.config import Settings
from lambdalet.sandbox import mounts
from lambdalet.sandbox.api import Backend
from lambdalet.sandbox.instances import RunDir, sweep_stale
from lambdalet.store.permissions import secure_data_dir

log = logging.getLogger("lambdalet")


@dataclass
class Claim:
    lock: IO[str]      # the data dir's lock, held for the life of the process
    run_dir: RunDir    # held while we live: other servers' sweeps skip it

    def release(self) -> None:
        try:
            (self.run_dir.path / ISOLATION_FILE).unlink()      # written by announce_isolation
        except FileNotFoundError:
            pass
        self.run_dir.release()


def claim(settings: Settings) -> Claim:
    lock = _lock_data_dir(settings)
    layout = settings.layout
    secure_data_dir(settings.data_dir, None if settings.database_url else layout.state_db)
    run_dir = RunDir.claim(settings.run_dir)
    sweep_stale(settings.run_dir.parent, keep=settings.run_dir)   # leftovers of servers that are gone
    _own_mount_namespace(settings)
    return Claim(lock, run_dir)


def _lock_data_dir(settings: Settings) -> IO[str]:
    """One server per data dir: a second one would share its database, keys and cgroups."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fh = open(settings.layout.lock_file, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another lambdalet server is using {settings.data_dir}") from None
    return fh


def _own_mount_namespace(settings: Settings) -> None:
    """Everything this server mounts (unpacked code and layers, the fork server's mounts) lives in a
    mount namespace of its own, so it is gone with the server's processes, even after kill -9: no
    plaintext code stays on the host's /dev/shm. After the sweep (it unmounts in the host's namespace)
    and before anything is mounted or any thread starts."""
    if settings.sandbox == "process" or os.geteuid() != 0:
        return          # not root: no mount namespace of our own (rootless mode mounts nothing on the host side)
    why = mounts.private_mount_namespace()
    if why is not None:
        log.warning("could not give the server a mount namespace of its own (%s): its mounts are in the "
                    "host's and outlive a killed server until the next start", why)


ISOLATION_FILE = "isolation.json"      # in the run dir: what `lambdalet status` says about isolation


def announce_isolation(settings: Settings, backend: Backend) -> dict:
    """Say at start-up which isolation is in force, and loudly what it lacks on this host (rootless
    mode: sandbox/rootless.py); leave it in the run dir for `lambdalet status`."""
    iso = backend.isolation()
    log.info("isolation: %s", iso.get("summary", iso.get("mode")))
    for missing in iso.get("missing", []):
        log.warning("ISOLATION MISSING (%s): %s", iso.get("mode"), missing)
    try:
        path = settings.run_dir / ISOLATION_FILE
        path.write_text(json.dumps(iso))
        os.chmod(path, 0o644)
    except OSError as e:
        log.warning("could not record the isolation in force for `lambdalet status`: %s", e)
    return iso


def read_isolation(settings: Settings) -> dict | None:
    try:
        return json.loads((settings.run_dir / ISOLATION_FILE).read_text())
    except (OSError, ValueError):
        return None
