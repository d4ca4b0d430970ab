"""Hostile functions made and called through boto3: what the tests of this directory share."""
from __future__ import annotations

import io
import json
import os
import socket
import uuid
import zipfile
from pathlib import Path

from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::000000000000:role/lambda-role"   # the default role: logs only
WAIT = {"Delay": 1, "MaxAttempts": 30}


def zip_code(code: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        z.writestr(info, code)
    return buf.getvalue()


def create(lam, code: str, prefix: str = "hostile", **kw) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    params = dict(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                  Code={"ZipFile": zip_code(code)}, Timeout=10)
    params.update(kw)
    lam.create_function(**params)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def invoke(lam, name: str, event=None, **kw) -> tuple[dict, object]:
    try:
        resp = lam.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}).encode(), **kw)
    except ClientError as e:
        raise AssertionError(f"Invoke {name} failed at the API: {e.response['Error']}") from None
    raw = resp.pop("Payload").read()
    return resp, (json.loads(raw) if raw else None)


def ok(lam, name: str, event=None, **kw):
    resp, payload = invoke(lam, name, event, **kw)
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, payload
    return payload


def host_addresses() -> list[str]:
    addrs = {"127.0.0.1"}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))                   # picks the outbound address; sends nothing
            addrs.add(s.getsockname()[0])
    except OSError:
        pass
    with_hostname = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            with_hostname.add(info[4][0])
    except OSError:
        pass
    return sorted(addrs | with_hostname)


def procs_of_uid(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = os.stat(f"/proc/{d}")
                state = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if st.st_uid == uid and state not in ("Z", "X"):
                out.append(int(d))
    return out


# a function that fills /tmp until the kernel says ENOSPC
TMP_FILL = r'''
import os
def handler(event, context):
    n = 0
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(b"x" * (1 << 20)); f.flush(); n += 1
    except OSError as e:
        return {"mb": n, "errno": e.errno}
'''
