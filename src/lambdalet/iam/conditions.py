"""The Condition element: operators, set qualifiers, ...IfExists, Null and policy variables.

Pure logic, no I/O. AWS's documented semantics:
- Every operator in a Condition block must be true, and every key under an operator (AND).
  Several values for one key are ORed for positive operators; for negated operators
  (StringNotEquals, NotIpAddress, ArnNotLike, ...) the request value must match none of them (NOR).
- A key absent from the request context makes a positive operator false and a negated operator
  true; `...IfExists` makes any operator true when the key is absent; `Null` tests presence.
- `ForAnyValue:` is true when at least one request value matches (false if the key is absent or
  empty); `ForAllValues:` is true when every request value matches (true if absent or empty).
- Condition key names are case-insensitive, values are case-sensitive unless the operator says not.
- Policy variables (`${aws:username}`, `${aws:PrincipalTag/x}`, `${key, 'default'}`, `${*}`,
  `${?}`, `${$}`) are replaced in condition values and in Resource, only in Version 2012-10-17
  policies. A variable with no value and no default makes the condition false, for every operator
  (negated ones included); in Resource it makes that pattern match nothing.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
from typing import Any, Callable, Iterable, Mapping

from lambdalet.iam.arnmatch import arn_match, glob_match

LITERAL = "\ue000"   # marks the next character as literal in a wildcard pattern (from ${*} etc.)

_VAR_RE = re.compile(r"\$\{([^}]*)\}")


class ConditionError(ValueError):
    """An operator or value that cannot be evaluated (reported as MalformedPolicyDocument on write)."""


# ---------------------------------------------------------------- request context values


class ContextValues:
    """The request context: case-insensitive keys; each value a tuple of strings (multi-valued
    keys like aws:TagKeys have several). Booleans become "true"/"false", numbers their decimal form."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        self._v: dict[str, tuple[str, ...]] = {}
        for k, v in (values or {}).items():
            self.set(k, v)

    def set(self, key: str, value: Any) -> None:
        if value is None:
            self._v.pop(key.lower(), None)
            return
        if isinstance(value, (list, tuple, set, frozenset)):
            self._v[key.lower()] = tuple(_text(x) for x in value)
        else:
            self._v[key.lower()] = (_text(value),)

    def get(self, key: str) -> tuple[str, ...] | None:
        return self._v.get(key.lower())

    def has(self, key: str) -> bool:
        return key.lower() in self._v

    def single(self, key: str) -> str | None:
        v = self._v.get(key.lower())
        return v[0] if v else None

    def copy(self) -> "ContextValues":
        c = ContextValues()
        c._v = dict(self._v)
        return c

    def as_dict(self) -> dict[str, tuple[str, ...]]:
        return dict(self._v)


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(v)


# ---------------------------------------------------------------- policy variables


def substitute(text: str, ctx: ContextValues, *, wildcard: bool) -> str | None:
    """Replace ${...} variables. With `wildcard`, substituted text is marked literal so `*`/`?`
    coming from a variable (or ${*}) never act as wildcards. None when a variable has no value."""
    if "${" not in text:
        return text
    missing = False

    def lit(s: str) -> str:
        return "".join(LITERAL + c for c in s) if wildcard else s

    def repl(m: re.Match) -> str:
        nonlocal missing
        body = m.group(1).strip()
        if body in ("*", "?", "$"):
            return lit(body)
        name, default = body, None
        dm = re.fullmatch(r"(.+?)\s*,\s*'(.*)'", body, re.DOTALL)
        if dm:
            name, default = dm.group(1).strip(), dm.group(2)
        values = ctx.get(name)
        if values:   # multi-valued keys cannot be used as variables; use the first value
            return lit(values[0])
        if default is not None:
            return lit(default)
        missing = True
        return ""

    out = _VAR_RE.sub(repl, text)
    return None if missing else out


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """glob_match that honours LITERAL markers."""
    if LITERAL not in pattern:
        return glob_match(pattern, value, ignore_case)
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == LITERAL and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def unliteral(s: str) -> str:
    return s.replace(LITERAL, "")


def arn_wildcard_match(pattern: str, value: str) -> bool:
    if LITERAL not in pattern:
        return arn_match(pattern, value)
    # Split on colons that are not literal-marked, then match component-wise.
    p = _split_arn_marked(pattern)
    if p is None:
        return wildcard_match(pattern, value)
    v = value.split(":", 5)
    if len(v) != 6:
        return False
    return all(wildcard_match(pc, vc) for pc, vc in zip(p, v))


def _split_arn_marked(pattern: str) -> list[str] | None:
    parts, cur, i = [], [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == LITERAL and i + 1 < len(pattern):
            cur.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == ":" and len(parts) < 5:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    if len(parts) != 6 or unliteral(parts[0]) != "arn":
        return None
    return parts


# ---------------------------------------------------------------- operators


def _num(s: str) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def _date(s: str) -> float | None:
    s = s.strip()
    n = _num(s)
    if n is not None:
        return n
    try:
        d = dt.datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()


def _cmp(parse: Callable[[str], float | None], test: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def match(pv: str, cv: str) -> bool:
        a, b = parse(cv), parse(unliteral(pv))
        return a is not None and b is not None and test(a, b)
    return match


def _ip(pv: str, cv: str) -> bool:
    try:
        net = ipaddress.ip_network(unliteral(pv).strip(), strict=False)
        addr = ipaddress.ip_address(cv.strip())
    except ValueError:
        return False
    return addr.version == net.version and addr in net


def _bool(pv: str, cv: str) -> bool:
    return unliteral(pv).lower() == cv.lower()


def _binary(pv: str, cv: str) -> bool:
    try:
        return base64.b64decode(unliteral(pv)) == base64.b64decode(cv)
    except ValueError:
        return unliteral(pv) == cv


# name -> (matcher(policy_value, context_value), negated, wildcard-capable)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool, bool]] = {
    "StringEquals": (lambda p, c: unliteral(p) == c, False, False),
    "StringNotEquals": (lambda p, c: unliteral(p) == c, True, False),
    "StringEqualsIgnoreCase": (lambda p, c: unliteral(p).lower() == c.lower(), False, False),
    "StringNotEqualsIgnoreCase": (lambda p, c: unliteral(p).lower() == c.lower(), True, False),
    "StringLike": (wildcard_match, False, True),
    "StringNotLike": (wildcard_match, True, True),
    "NumericEquals": (_cmp(_num, lambda a, b: a == b), False, False),
    "NumericNotEquals": (_cmp(_num, lambda a, b: a == b), True, False),
    "NumericLessThan": (_cmp(_num, lambda a, b: a < b), False, False),
    "NumericLessThanEquals": (_cmp(_num, lambda a, b: a <= b), False, False),
    "NumericGreaterThan": (_cmp(_num, lambda a, b: a > b), False, False),
    "NumericGreaterThanEquals": (_cmp(_num, lambda a, b: a >= b), False, False),
    "DateEquals": (_cmp(_date, lambda a, b: a == b), False, False),
    "DateNotEquals": (_cmp(_date, lambda a, b: a == b), True, False),
    "DateLessThan": (_cmp(_date, lambda a, b: a < b), False, False),
    "DateLessThanEquals": (_cmp(_date, lambda a, b: a <= b), False, False),
    "DateGreaterThan": (_cmp(_date, lambda a, b: a > b), False, False),
    "DateGreaterThanEquals": (_cmp(_date, lambda a, b: a >= b), False, False),
    "Bool": (_bool, False, False),
    "BinaryEquals": (_binary, False, False),
    "IpAddress": (_ip, False, False),
    "NotIpAddress": (_ip, True, False),
    "ArnEquals": (arn_wildcard_match, False, True),
    "ArnLike": (arn_wildcard_match, False, True),
    "ArnNotEquals": (arn_wildcard_match, True, True),
    "ArnNotLike": (arn_wildcard_match, True, True),
}


def parse_operator(name: str) -> tuple[str | None, str, bool]:
    """'ForAnyValue:StringLikeIfExists' -> ('ForAnyValue', 'StringLike', True). Raises ConditionError."""
    qualifier = None
    if ":" in name:
        qualifier, _, name = name.partition(":")
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise ConditionError(f"Invalid Condition type : {qualifier}:{name}")
    if_exists = False
    base = name
    if name != "Null" and name.endswith("IfExists"):
        base, if_exists = name[: -len("IfExists")], True
    if base != "Null" and base not in _OPERATORS:
        raise ConditionError(f"Invalid Condition type : {name}")
    if base == "Null" and qualifier:
        raise ConditionError(f"Invalid Condition type : {qualifier}:{name}")
    return qualifier, base, if_exists


def _values(raw: Any) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for x in items:
        if isinstance(x, (dict, list)) or x is None:
            raise ConditionError("Condition values must be strings, numbers or booleans.")
        out.append(_text(x))
    return out


def validate_condition_block(block: Any) -> None:
    if not isinstance(block, dict):
        raise ConditionError("Syntax errors in policy.")
    for op_name, keys in block.items():
        parse_operator(op_name)
        if not isinstance(keys, dict) or not keys:
            raise ConditionError("Syntax errors in policy.")
        for key, raw in keys.items():
            if not isinstance(key, str) or not key:
                raise ConditionError("Syntax errors in policy.")
            _values(raw)


def evaluate_condition_block(block: Mapping[str, Any] | None, ctx: ContextValues, *, variables: bool = True) -> bool:
    """True when every operator/key in the Condition block holds for the request context."""
    if not block:
        return True
    for op_name, keys in block.items():
        try:
            qualifier, base, if_exists = parse_operator(op_name)
        except ConditionError:
            return False   # never allow on something we cannot understand
        for key, raw in keys.items():
            try:
                pvals = _values(raw)
            except ConditionError:
                return False
            if not _evaluate_one(qualifier, base, if_exists, key, pvals, ctx, variables):
                return False
    return True


def _evaluate_one(qualifier: str | None, base: str, if_exists: bool, key: str, pvals: list[str],
                  ctx: ContextValues, variables: bool) -> bool:
    cvals = ctx.get(key)
    if base == "Null":
        absent = not cvals
        return any((v.lower() == "true") == absent for v in pvals)
    matcher, negated, wildcard = _OPERATORS[base]
    if variables:
        subst = [substitute(p, ctx, wildcard=wildcard) for p in pvals]
        if any(p is None for p in subst):
            # AWS: a policy variable with no value in the request context (and no default) makes the
            # condition not match, whatever the operator (negated ones, ...IfExists, set qualifiers).
            return False
        pvals = [p for p in subst if p is not None]

    def matches_any(cv: str) -> bool:
        return any(matcher(pv, cv) for pv in pvals)

    if not cvals:
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return negated
    if qualifier == "ForAllValues":
        return all((not matches_any(cv)) if negated else matches_any(cv) for cv in cvals)
    if qualifier == "ForAnyValue":
        return any((not matches_any(cv)) if negated else matches_any(cv) for cv in cvals)
    hit = any(matches_any(cv) for cv in cvals)
    return not hit if negated else hit


def operator_names() -> Iterable[str]:
    return list(_OPERATORS) + ["Null"]
