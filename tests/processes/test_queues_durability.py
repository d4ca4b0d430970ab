"""A message is committed before SendMessage answers: SIGKILL a process that is sending, reopen the
data dir, and every message it had an answer for is receivable (and still sealed at rest)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from lambdalet.config import Settings
from lambdalet.crypto import FileKeyMaterialStore, Keyring, load_or_create_master_key
from lambdalet.queues import QueueService
from lambdalet.store.db import open_database

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lambdalet.config import Settings
    from lambdalet.crypto import FileKeyMaterialStore, Keyring, load_or_create_master_key
    from lambdalet.queues import QueueService
    from lambdalet.store.db import open_database
    data = Path(sys.argv[1])
    keyring = Keyring.open(load_or_create_master_key(data / "master.key"), FileKeyMaterialStore(data / "keys"))
    svc = QueueService(open_database(f"sqlite:///{data / 'state.db'}"), keyring, Settings(data_dir=data))
    svc.ensure_queue("000000000000", "durable")
    i = 0
    while True:
        mid = svc.enqueue("000000000000", "durable", f"payload {i} {sys.argv[2]}".encode())
        print(mid, flush=True)
        i += 1
""")


def test_sigkill_while_sending_loses_nothing_that_was_acknowledged(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    marker = "DURABLE-MARKER-" + os.urandom(6).hex()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), marker], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    acked = []
    try:
        for line in proc.stdout:
            acked.append(line.strip())
            if len(acked) >= 150:
                break
        assert len(acked) >= 150, proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    keyring = Keyring.open(load_or_create_master_key(data / "master.key"), FileKeyMaterialStore(data / "keys"))
    db = open_database(f"sqlite:///{data / 'state.db'}")
    try:
        svc = QueueService(db, keyring, Settings(data_dir=data))
        arn = svc.queue_arn("000000000000", "durable")
        got = {}
        while True:
            batch = svc.claim(arn, 10, 300)
            if not batch:
                break
            got.update({m.message_id: m.body for m in batch})
        missing = [mid for mid in acked if mid not in got]
        assert not missing, f"{len(missing)} acknowledged messages lost"
        assert all(marker.encode() in body for body in got.values())
    finally:
        db.close()
    for p in data.rglob("*"):
        if p.is_file():
            assert marker.encode() not in p.read_bytes(), p
