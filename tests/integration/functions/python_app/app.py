"""Sample function for tests/integration/test_invoke.py: behaviour chosen by the event."""
import json
import os
import sys
import time
import uuid

MARKER = uuid.uuid4().hex          # one per execution environment (module scope runs once per init)
COUNT = 0


def _client_context(context):
    cc = context.client_context
    if cc is None:
        return None
    # AWS (awslambdaric): a ClientContext object with .client, .custom and .env attributes
    out = {"type": type(cc).__name__}
    for attr in ("custom", "env", "client"):
        try:
            value = getattr(cc, attr)
            out[attr] = value if value is None or isinstance(value, (dict, list, str, int, float)) else vars(value)
        except AttributeError as e:
            out[attr + "_error"] = str(e)
    return out


def handler(event, context):
    global COUNT
    COUNT += 1
    event = event if isinstance(event, dict) else {"value": event}
    print("handler saw", json.dumps(event, sort_keys=True))
    if "print" in event:
        print(event["print"])
    if event.get("raise"):
        raise ValueError(event["raise"])
    if event.get("exit") is not None:
        sys.exit(event["exit"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("alloc_mb"):
        hog = []
        for _ in range(event["alloc_mb"]):
            hog.append(bytearray(1024 * 1024))   # touched: bytearray zero-fills
        return {"allocated": len(hog)}
    return {
        "marker": MARKER,
        "count": COUNT,
        "event": event,
        "env": dict(os.environ),
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "client_context": _client_context(context),
        },
    }
