"""Noisy-neighbour load for the fair-sharing test and bench/noisy_neighbour.py: many SQS long polls
kept open at once (boto3 would need a thread per poll; here one event loop holds raw TLS
connections, each request signed with botocore's SigV4), and latency percentiles."""
from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs)) - 1))] if xs else float("nan")


def timed(fn, n: int) -> list[float]:
    """Seconds taken by each of n sequential calls of fn()."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


class LongPollFlood:
    """`n` ReceiveMessage calls (WaitTimeSeconds=20) kept open on `queue_url`, each re-sent as soon as
    it is answered, from one background thread, until stop()."""

    def __init__(self, endpoint: str, region: str, key: dict, queue_url: str, n: int, ca: str | None):
        self.endpoint, self.region, self.key, self.queue_url, self.n = endpoint, region, key, queue_url, n
        self.ssl = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        self.open = 0           # requests sent and not yet answered
        self.answered = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self, timeout: float = 60) -> "LongPollFlood":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self.open < self.n and time.monotonic() < deadline and not self.errors:
            time.sleep(0.1)
        if self.open < self.n:
            raise RuntimeError(f"only {self.open} of {self.n} long polls open: {self.errors[:3]}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _request(self) -> bytes:
        body = json.dumps({"QueueUrl": self.queue_url, "WaitTimeSeconds": 20, "MaxNumberOfMessages": 1})
        req = AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers={
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ReceiveMessage"})
        SigV4Auth(Credentials(self.key["AccessKeyId"], self.key["SecretAccessKey"]), "sqs", self.region).add_auth(req)
        host = urlsplit(self.endpoint).netloc
        head = ["POST / HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body.encode()

    async def _poller(self) -> None:
        u = urlsplit(self.endpoint)
        try:
            reader, writer = await asyncio.open_connection(u.hostname, u.port, ssl=self.ssl if u.scheme == "https" else None)
        except OSError as e:
            self.errors.append(repr(e))
            return
        try:
            while not self._stop.is_set():
                writer.write(self._request())
                await writer.drain()
                self.open += 1
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    await reader.readexactly(length)
                finally:
                    self.open -= 1
                if not head.startswith(b"HTTP/1.1 200"):
                    self.errors.append(head.split(b"\r\n", 1)[0].decode())
                    return
                self.answered += 1
        except (OSError, asyncio.IncompleteReadError, StopIteration) as e:
            if not self._stop.is_set():
                self.errors.append(repr(e))
        finally:
            writer.close()

    async def _main(self) -> None:
        tasks = []
        for _ in range(self.n):         # paced: TLS handshakes are the server's CPU too
            tasks.append(asyncio.ensure_future(self._poller()))
            await asyncio.sleep(0.005)
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def server_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
