"""The true floor for the warm-path benchmarks: a no-op HTTPS server on lambdalet's own stack.

Same listening socket (server/run.py `_bind`: TCP_NODELAY on accepted connections), same uvicorn
configuration (uvloop + httptools, lambdalet's coalescing protocol: head and body in one TLS write,
60 s keep-alive, no proxy headers), same certificate and key (the data dir's tls/ files, read, never
re-issued). The app reads the request's body and answers 200 `null` (application/json), which is what
a no-op function's Invoke returns: boto3's `invoke` and bench/loadgen.py call it unchanged. No SigV4
check, no routing, no work: whatever a real call costs above this is lambdalet's.

    python bench/floor_server.py --data-dir DIR        # prints {"url": ..., "pid": ...} on one line
"""
from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"4")]


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:                                   # the whole body, as the real server reads it
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"null"})


class FloorServer:
    """This module as a subprocess on a lambdalet data dir's certificate; stop() ends it."""

    def __init__(self, data_dir: Path, python: str = sys.executable):
        import subprocess
        self.proc = subprocess.Popen([python, __file__, "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()          # one line once it listens (or nothing if it failed)
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"floor server exited with {self.proc.returncode}")
        doc = json.loads(line)
        self.url, self.pid = doc["url"], doc["pid"]

    def stop(self) -> None:
        import subprocess
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()


def main() -> None:
    import os

    import uvicorn

    from lambdalet.server.http_protocol import CoalescingHttpToolsProtocol
    from lambdalet.server.run import KEEP_ALIVE_S, _bind
    from lambdalet.server.tls import TlsFiles, server_context

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="a lambdalet data dir: its tls/ certificate is served")
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    tls_dir = Path(a.data_dir) / "tls"
    files = TlsFiles(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server.key")
    sock = _bind(a.host, 0)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=KEEP_ALIVE_S,
                            proxy_headers=False, http=CoalescingHttpToolsProtocol)
    config.load()
    config.ssl = server_context(files)
    server = uvicorn.Server(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    gc.collect()
    gc.freeze()                                   # as server/run.py does
    print(json.dumps({"url": f"https://{a.host}:{sock.getsockname()[1]}", "pid": os.getpid()}), flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
