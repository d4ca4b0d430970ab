"""What the SQS tests share: a caller's context, and a queue made and read the way a client would
(the queue service fixtures `svc`, `ctx`, `queue_env`: tests/unit/conftest.py)."""
from __future__ import annotations

from lambdalet.models.context import Caller, RequestContext

ACCOUNT = "000000000000"


def make_ctx(account: str = ACCOUNT, region: str = "us-east-1") -> RequestContext:
    return RequestContext(Caller(account, f"arn:aws:iam::{account}:user/admin", "AKIATEST", "AIDATEST"),
                          region, "req-1", "https://127.0.0.1:9000")


def new_queue(svc, ctx, name="q", **attrs) -> str:
    return svc.create_queue(ctx, {"QueueName": name, "Attributes": {k: str(v) for k, v in attrs.items()}})["QueueUrl"]


def receive(svc, ctx, url, **kw):
    return svc.receive_message(ctx, {"QueueUrl": url, "MessageSystemAttributeNames": ["All"],
                                     "MessageAttributeNames": ["All"], **kw}).get("Messages", [])
