"""JSON values <-> operation params, checked against botocore shapes. Shared by the rest-json and
awsJson protocols; each protocol supplies the errors its clients expect (`Faults`)."""
from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from botocore.model import Shape

from lambdalet.models.errors import AwsError, constraint_text


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


# ---- the model's constraints (min / max / pattern / enum / required), worded as AWS words them ----

def member_field(path: str, name: str) -> str:
    """AWS names a member in validation messages by its lower-camel-case name: KMSKeyArn -> kMSKeyArn."""
    field = name[:1].lower() + name[1:]
    return f"{path}.{field}" if path else field


@functools.lru_cache(maxsize=None)
def _compiled(pattern: str) -> re.Pattern | None:
    try:
        return re.compile(pattern)
    except re.error:          # a Java-only construct: the service's own check is the only one then
        return None


def _bound(shape: Shape, n) -> str:
    return str(float(n)) if shape.type_name in ("float", "double") else str(n)


def _rules(shape: Shape, value) -> list[str]:
    """The constraints `value` breaks, in AWS's order (enum, max, min, pattern)."""
    meta, t, out = shape.metadata, shape.type_name, []
    if t == "string" and isinstance(value, str):
        if "enum" in meta and value not in meta["enum"]:
            out.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"Member must have length less than or equal to {meta['max']}")
        if meta.get("min") and len(value) < meta["min"]:
            out.append(f"Member must have length greater than or equal to {meta['min']}")
        pattern = meta.get("pattern")
        if pattern and (compiled := _compiled(pattern)) is not None and not compiled.fullmatch(value):
            out.append(f"Member must satisfy regular expression pattern: {pattern}")
    elif t in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "max" in meta and value > meta["max"]:
            out.append(f"Member must have value less than or equal to {_bound(shape, meta['max'])}")
        if "min" in meta and value < meta["min"]:
            out.append(f"Member must have value greater than or equal to {_bound(shape, meta['min'])}")
    elif t in ("list", "map") and isinstance(value, (list, dict)):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"Member must have length less than or equal to {meta['max']}")
        if meta.get("min") and len(value) < meta["min"]:
            out.append(f"Member must have length greater than or equal to {meta['min']}")
    return out


def _all_rules(shape: Shape) -> str:
    """Every constraint of a list element / map key or value, as AWS lists them: [..., Member must not be null]."""
    meta, rules = shape.metadata, []
    length = shape.type_name in ("string", "list", "map")
    if "enum" in meta:
        rules.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    if "max" in meta:
        rules.append(f"Member must have {'length' if length else 'value'} less than or equal to {_bound(shape, meta['max'])}")
    if "min" in meta and (meta["min"] or not length):
        rules.append(f"Member must have {'length' if length else 'value'} greater than or equal to "
                     f"{_bound(shape, meta['min'])}")
    if meta.get("pattern"):
        rules.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    rules.append("Member must not be null")
    return "[" + ", ".join(rules) + "]"


def constraint_violations(shape: Shape, params: dict, *, unchecked: frozenset[str] = frozenset(),
                          members: dict[str, Shape] | None = None, path: str = "") -> list[str]:
    """Every member of `params` (decoded, keyed by member name) that breaks its shape's constraints,
    as AWS's ValidationException lists them. `unchecked`: shape names the service checks itself
    (with its own, different error)."""
    out: list[str] = []
    members = shape.members if members is None else members
    for name, member in members.items():
        value = params.get(name)
        field = member_field(path, name)
        if value is None:
            if name in shape.required_members:
                out.append(constraint_text(None, field, "Member must not be null"))
            continue
        if member.name in unchecked:
            continue
        sensitive = bool(member.metadata.get("sensitive"))
        out += [constraint_text(value, field, rule, sensitive=sensitive) for rule in _rules(member, value)]
        if member.type_name == "structure" and isinstance(value, dict) and not member.is_document_type:
            out += constraint_violations(member, value, unchecked=unchecked, path=field)
        elif member.type_name == "list" and isinstance(value, list) and member.member.name not in unchecked:
            if any(v is None or _rules(member.member, v) for v in value):
                out.append(constraint_text(value, field, f"Member must satisfy constraint: {_all_rules(member.member)}",
                                           sensitive=sensitive))
        elif member.type_name == "map" and isinstance(value, dict):
            if member.key.name not in unchecked and any(_rules(member.key, k) for k in value):
                out.append(constraint_text(value, field, f"Map keys must satisfy constraint: {_all_rules(member.key)}",
                                           sensitive=sensitive or bool(member.key.metadata.get("sensitive"))))
            if member.value.name not in unchecked and any(_rules(member.value, v) for v in value.values()):
                out.append(constraint_text(value, field, f"Map value must satisfy constraint: "
                                           f"{_all_rules(member.value)}", sensitive=sensitive))
    return out
