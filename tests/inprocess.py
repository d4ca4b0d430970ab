"""An API binding served in this process: uvicorn on a loopback port, in a thread, plain HTTP (no TLS,
no server process), for tests that speak to one binding with a real client."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import uvicorn

START_TIMEOUT_S = 10


@contextlib.contextmanager
def serving(asgi) -> Iterator[str]:
    """Serve an ASGI app until the block ends; yields its URL (http://127.0.0.1:<port>)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
