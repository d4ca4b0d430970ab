"""Response streaming (issue 13 §3): time to first byte of InvokeWithResponseStream next to a buffered
Invoke of the same function, in the same run, against a real `lambdalet serve` (namespace sandbox, TLS,
SigV4), driven by boto3 (botocore decodes the event stream).

    sudo .venv/bin/python bench/streaming_bench.py [--rounds 20]

Cases, warm environments, rounds interleaved:
  slow:  a Node.js streamifyResponse handler that writes, sleeps 500 ms, writes. Streamed: the first
         PayloadChunk, and the end; buffered (Invoke of the same function): the whole answer (its first byte).
  tiny:  the same handler with no sleep, next to a plain (non-streaming) Node handler through Invoke: what
         the streaming path itself costs on a warm invoke.
  python: a buffered Python function through InvokeWithResponseStream (one PayloadChunk) and Invoke.
  6 MB:  a stream of 6 MB (AWS's uncapped burst): MB/s end to end.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import invoke_bench as ib  # noqa: E402  (the Server harness, role and zip helpers)

NODE = """
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.stream = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType("text/plain");
  responseStream.write("first");
  if (event.sleepMs) await sleep(event.sleepMs);
  if (event.bytes) {
    const block = Buffer.alloc(256 * 1024, 120);
    for (let n = 0; n < event.bytes; n += block.length)
      if (!responseStream.write(block)) await new Promise((r) => responseStream.once("drain", r));
  }
  responseStream.write("rest");
  responseStream.end();
});
exports.plain = async (event) => "firstrest";
"""
PYTHON = "def handler(event, context):\n    return {'ok': True}\n"


def node_zip() -> bytes:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.js", NODE)
    return buf.getvalue()


def streamed(lam, name: str, event: dict) -> tuple[float, float, int]:
    """(ms to the first PayloadChunk, ms to InvokeComplete, payload bytes)."""
    t0 = time.perf_counter()
    resp = lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(event).encode())
    first, size = None, 0
    for ev in resp["EventStream"]:
        if "PayloadChunk" in ev:
            size += len(ev["PayloadChunk"]["Payload"])
            if first is None:
                first = ib.ms_since(t0)
        elif "InvokeComplete" in ev:
            assert "ErrorCode" not in ev["InvokeComplete"], ev
    return first if first is not None else float("nan"), ib.ms_since(t0), size


def buffered(lam, name: str, event: dict) -> float:
    t0 = time.perf_counter()
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    resp["Payload"].read()
    assert "FunctionError" not in resp, resp
    return ib.ms_since(t0)


def create(lam, name: str, code: bytes, runtime: str, handler: str) -> None:
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=ib.ROLE, Code={"ZipFile": code},
                        Timeout=30, MemorySize=1769)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runtime", default="nodejs22.x")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lambdalet-streambench-") as tmp:
        srv = ib.Server(Path(tmp)).start()
        try:
            lam = srv.client()
            ib.make_role(srv)
            create(lam, "stream", node_zip(), args.runtime, "index.stream")
            create(lam, "plain", node_zip(), args.runtime, "index.plain")
            create(lam, "py", ib.make_zip(PYTHON), "python3.11", "app.handler")
            for _ in range(2):                          # warm-up: environments up, connections open
                streamed(lam, "stream", {})
                buffered(lam, "plain", {})
                streamed(lam, "py", {})
            r: dict[str, list[float]] = {k: [] for k in (
                "slow streamed first byte", "slow streamed end", "slow buffered (first byte = end)",
                "tiny streamed first byte", "tiny streamed end", "tiny buffered (plain handler)",
                "python via stream: first byte", "python via Invoke", "6 MB stream MB/s")}
            for _ in range(args.rounds):
                first, end, _ = streamed(lam, "stream", {"sleepMs": 500})
                r["slow streamed first byte"].append(first)
                r["slow streamed end"].append(end)
                r["slow buffered (first byte = end)"].append(buffered(lam, "stream", {"sleepMs": 500}))
                first, end, _ = streamed(lam, "stream", {})
                r["tiny streamed first byte"].append(first)
                r["tiny streamed end"].append(end)
                r["tiny buffered (plain handler)"].append(buffered(lam, "plain", {}))
                r["python via stream: first byte"].append(streamed(lam, "py", {})[0])
                r["python via Invoke"].append(buffered(lam, "py", {}))
            for _ in range(max(3, args.rounds // 4)):
                _, end, size = streamed(lam, "stream", {"bytes": 6 * 1024 * 1024 - 16})
                r["6 MB stream MB/s"].append(size / 1e6 / (end / 1000))
            out = {"machine": ib.machine(), "rounds": args.rounds,
                   "results": {k: ib.summ(v) for k, v in r.items()}}
            print(json.dumps(out, indent=1))
        finally:
            problems = srv.stop()
            if problems:
                print("clean-up:", problems, file=sys.stderr)


if __name__ == "__main__":
    main()
