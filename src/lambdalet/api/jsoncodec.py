"""JSON values <-> operation params, checked against botocore shapes. Shared by the rest-json and
awsJson protocols; each protocol supplies the errors its clients expect (`Faults`)."""
from __future__ import annotations

import base64
import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from botocore.model import Shape

from lambdalet.models.errors import AwsError


@dataclass(frozen=True)
class Faults:
    bad_value: Callable[[str], AwsError]        # message -> error
    unknown_field: Callable[[str], AwsError]
    missing: Callable[[str], AwsError] | None = None   # None: required members are not checked here


def _shown(value: Any) -> str:
    return repr(value[:64]) if isinstance(value, str) else json.dumps(value, default=str)[:64]


def decode(shape: Shape, value: Any, path: str, faults: Faults) -> Any:
    t = shape.type_name

    def bad(expected: str, shown: Any = value) -> AwsError:
        return faults.bad_value(f"Value {_shown(shown)} at '{path}' failed to satisfy constraint: must be {expected}.")

    if t == "structure":
        if not isinstance(value, dict):
            raise bad("an object")
        return value if shape.is_document_type else decode_structure(shape, value, path, faults)
    if t == "list":
        if not isinstance(value, list):
            raise bad("a list")
        return [decode(shape.member, v, f"{path}[{i}]", faults) for i, v in enumerate(value)]
    if t == "map":
        if not isinstance(value, dict):
            raise bad("a map")
        return {k: decode(shape.value, v, f"{path}.{k}", faults) for k, v in value.items() if v is not None}
    if t == "blob":
        if not isinstance(value, str):
            raise bad("base64-encoded binary data", "<binary>")
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise bad("base64-encoded binary data", "<binary>") from None
    if t == "string":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if t in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return value
    if t == "boolean":
        if not isinstance(value, bool):
            raise bad("a boolean")
        return value
    if t == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a timestamp in epoch seconds")
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return value


def decode_structure(shape: Shape, value: dict, path: str, faults: Faults,
                     members: dict[str, Shape] | None = None) -> dict:
    """`members` narrows what may appear (rest-json bodies exclude uri/header members)."""
    members = shape.members if members is None else members
    wire_to_member = {m.serialization.get("name", n): n for n, m in members.items()}
    out = {}
    for key, v in value.items():
        name = wire_to_member.get(key)
        if name is None:
            raise faults.unknown_field(f"Unrecognized field \"{key}\"{f' in {path}' if path else ''}.")
        if v is not None:
            out[name] = decode(members[name], v, f"{path}.{name}" if path else name, faults)
    if faults.missing is not None:
        for name in shape.required_members:
            if name in members and name not in out:
                raise faults.missing(f"The request must contain the parameter {f'{path}.{name}' if path else name}.")
    return out


def encode(shape: Shape, value: Any) -> Any:
    t = shape.type_name
    if t == "structure":
        if shape.is_document_type:
            return value
        out = {}
        for k, v in value.items():
            member = shape.members.get(k)
            if member is not None and v is not None:
                out[member.serialization.get("name", k)] = encode(member, v)
        return out
    if t == "list":
        return [encode(shape.member, v) for v in value]
    if t == "map":
        return {str(k): encode(shape.value, v) for k, v in value.items() if v is not None}
    if t == "blob":
        return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()
    if t == "timestamp":
        return value.timestamp() if isinstance(value, dt.datetime) else value
    return value
