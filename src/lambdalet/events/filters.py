"""Event filtering for event source mappings: EventBridge pattern syntax, as Lambda applies it.

No well-kept Python library implements EventBridge patterns (the one PyPI port, `event-ruler`, is a
single 2023 release of a Go build for one CPython/arch), so this is a small matcher for what Lambda
documents for FilterCriteria:

    exact values            {"k": ["a", 5, null, true]}    (numbers compare numerically)
    prefix / suffix         {"k": [{"prefix": "a"}]}  {"k": [{"suffix": {"equals-ignore-case": "X"}}]}
    equals-ignore-case      {"k": [{"equals-ignore-case": "aBc"}]}
    wildcard                {"k": [{"wildcard": "a*b*"}]}   (`\\*` is a literal star)
    anything-but            {"k": [{"anything-but": ["a", "b"]}]}  ({"anything-but": {"prefix": "x"}} etc.)
    numeric                 {"k": [{"numeric": [">", 0, "<=", 5]}]}
    exists                  {"k": [{"exists": true}]}   (false also matches a missing field)
    cidr                    {"ip": [{"cidr": "10.0.0.0/24"}]}
    $or                     {"$or": [{"a": [1]}, {"b": [2]}]}

A pattern object matches when every key matches (AND); a key's array matches when any of its
matchers matches (OR). When the event holds an array where the pattern expects a value (or an
object), the pattern matches if any element does. A field missing from the event matches only
`{"exists": false}`. `compile_filter_criteria` validates a FilterCriteria member as Lambda does and
refuses a bad pattern with InvalidParameterValueException.
"""
from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from lambdalet.models.errors import InvalidParameterValueException

MAX_FILTERS = 5               # Lambda's default quota of filters per event source mapping
MAX_PATTERN_CHARS = 4096      # botocore's Pattern max length
INVALID = "Invalid filter pattern definition."

_NUMERIC_OPS = {"<", "<=", "=", ">", ">="}
_MISSING = object()


class PatternError(ValueError):
    pass


@dataclass(frozen=True)
class Filter:
    source: str               # the Pattern string as the user sent it (echoed back by the API)
    pattern: dict


def compile_filter_criteria(criteria: Any) -> list[Filter]:
    """FilterCriteria {"Filters": [{"Pattern": "<json>"}, ...]} -> compiled filters ([] = no filtering)."""
    if criteria is None:
        return []
    if not isinstance(criteria, dict):
        raise InvalidParameterValueException(INVALID)
    filters = criteria.get("Filters")
    if filters is None:
        return []
    if not isinstance(filters, list):
        raise InvalidParameterValueException(INVALID)
    if len(filters) > MAX_FILTERS:
        raise InvalidParameterValueException(
            f"The number of filters ({len(filters)}) exceeds the maximum of {MAX_FILTERS} filters per event "
            "source mapping.")
    out = []
    for f in filters:
        if not isinstance(f, dict) or not isinstance(f.get("Pattern"), str):
            raise InvalidParameterValueException(INVALID)
        out.append(compile_pattern(f["Pattern"]))
    return out


def compile_pattern(source: str) -> Filter:
    if len(source) > MAX_PATTERN_CHARS:
        raise InvalidParameterValueException(
            f"1 validation error detected: Value at 'filterCriteria.filters.member.pattern' failed to satisfy "
            f"constraint: Member must have length less than or equal to {MAX_PATTERN_CHARS}")
    try:
        doc = json.loads(source)
        if not isinstance(doc, dict):
            raise PatternError("a pattern must be a JSON object")
        validate_pattern(doc)
    except (ValueError, PatternError) as e:
        raise InvalidParameterValueException(f"{INVALID} ({e})") from None
    return Filter(source, doc)


# ------------------------------------------------------------------------------------ validation

def validate_pattern(pattern: dict, depth: int = 0) -> None:
    if depth > 50:
        raise PatternError("pattern nesting too deep")
    if not pattern and depth > 0:
        raise PatternError("empty object in pattern")
    for key, sub in pattern.items():
        if key == "$or":
            if not isinstance(sub, list) or len(sub) < 2 or not all(isinstance(p, dict) and p for p in sub):
                raise PatternError("$or needs an array of at least two non-empty patterns")
            for p in sub:
                validate_pattern(p, depth + 1)
        elif isinstance(sub, dict):
            validate_pattern(sub, depth + 1)
        elif isinstance(sub, list):
            if not sub:
                raise PatternError(f"empty array for {key!r}")
            for m in sub:
                _validate_matcher(m)
        else:
            raise PatternError(f"the value of {key!r} must be an object or an array")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate_matcher(m: Any) -> None:
    if m is None or isinstance(m, (str, bool)) or _is_number(m):
        return
    if not isinstance(m, dict) or len(m) != 1:
        raise PatternError("a matcher must be a value or an object with exactly one operator")
    (op, arg), = m.items()
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            if set(arg) != {"equals-ignore-case"} or not isinstance(arg["equals-ignore-case"], str):
                raise PatternError(f"{op} takes a string or {{\"equals-ignore-case\": string}}")
        elif not isinstance(arg, str):
            raise PatternError(f"{op} takes a string")
    elif op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise PatternError("equals-ignore-case takes a string")
    elif op == "wildcard":
        _check_wildcard(arg)
    elif op == "exists":
        if not isinstance(arg, bool):
            raise PatternError("exists takes true or false")
    elif op == "numeric":
        _check_numeric(arg)
    elif op == "cidr":
        try:
            ipaddress.ip_network(arg, strict=False)
        except (TypeError, ValueError):
            raise PatternError("cidr takes an IPv4 or IPv6 network") from None
    elif op == "anything-but":
        if isinstance(arg, dict):
            if len(arg) != 1:
                raise PatternError("anything-but takes one operator")
            (inner, val), = arg.items()
            if inner in ("prefix", "suffix"):
                if not isinstance(val, str):
                    raise PatternError(f"anything-but {inner} takes a string")
            elif inner in ("equals-ignore-case", "wildcard"):
                vals = val if isinstance(val, list) else [val]
                if not vals or not all(isinstance(v, str) for v in vals):
                    raise PatternError(f"anything-but {inner} takes a string or an array of strings")
                if inner == "wildcard":
                    for v in vals:
                        _check_wildcard(v)
            else:
                raise PatternError(f"unsupported anything-but operator {inner!r}")
        else:
            vals = arg if isinstance(arg, list) else [arg]
            if not vals or not all(isinstance(v, str) or _is_number(v) for v in vals):
                raise PatternError("anything-but takes a string, a number or an array of them")
    else:
        raise PatternError(f"unsupported operator {op!r}")


def _check_wildcard(arg: Any) -> None:
    if not isinstance(arg, str):
        raise PatternError("wildcard takes a string")
    if "**" in arg.replace("\\*", ""):
        raise PatternError("consecutive wildcard characters are not allowed")


def _check_numeric(arg: Any) -> None:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise PatternError("numeric takes [op, number] or [op, number, op, number]")
    ops = arg[0::2]
    nums = arg[1::2]
    if not all(isinstance(o, str) and o in _NUMERIC_OPS for o in ops) or not all(_is_number(n) for n in nums):
        raise PatternError("numeric operators are <, <=, =, >, >= followed by a number")
    if len(arg) == 4:
        lo = [o for o in ops if o in (">", ">=")]
        hi = [o for o in ops if o in ("<", "<=")]
        if len(lo) != 1 or len(hi) != 1:
            raise PatternError("a numeric range needs one lower and one upper bound")
        lo_n = nums[ops.index(lo[0])]
        hi_n = nums[ops.index(hi[0])]
        if lo_n >= hi_n:
            raise PatternError("the lower bound of a numeric range must be below its upper bound")


# ------------------------------------------------------------------------------------ matching

def matches_any(filters: list[Filter], event: Any) -> bool:
    """Lambda keeps a record when any filter matches (no filters: every record)."""
    return not filters or any(matches(f.pattern, event) for f in filters)


def matches(pattern: dict, event: Any) -> bool:
    for key, sub in pattern.items():
        if key == "$or":
            if not any(matches(p, event) for p in sub):
                return False
            continue
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(sub, dict):
            if not _match_object(sub, value):
                return False
        elif not _match_leaf(sub, value):
            return False
    return True


def _match_object(sub: dict, value: Any) -> bool:
    if isinstance(value, list):
        objects = [v for v in value if isinstance(v, dict)]
        return any(matches(sub, v) for v in objects) if objects else matches(sub, {})
    if isinstance(value, dict):
        return matches(sub, value)
    return matches(sub, {})          # missing or a scalar: no field below it exists


def _match_leaf(matchers: list, value: Any) -> bool:
    if isinstance(value, list):
        leaves = [v for v in value if not isinstance(v, (dict, list))]
    elif value is _MISSING or isinstance(value, dict):
        leaves = []                    # not a leaf: only exists:false can match
    else:
        leaves = [value]
    if not leaves:
        return any(isinstance(m, dict) and m.get("exists") is False for m in matchers)
    return any(_match_one(m, v) for m in matchers for v in leaves)


def _match_one(m: Any, v: Any) -> bool:
    if not isinstance(m, dict):
        return _equal(m, v)
    (op, arg), = m.items()
    if op == "exists":
        return arg is True
    if op == "prefix":
        return isinstance(v, str) and _affix(v, arg, str.startswith)
    if op == "suffix":
        return isinstance(v, str) and _affix(v, arg, str.endswith)
    if op == "equals-ignore-case":
        return isinstance(v, str) and v.casefold() == arg.casefold()
    if op == "wildcard":
        return isinstance(v, str) and _wildcard_re(arg).fullmatch(v) is not None
    if op == "numeric":
        return _is_number(v) and _numeric(arg, v)
    if op == "cidr":
        try:
            return isinstance(v, str) and ipaddress.ip_address(v) in ipaddress.ip_network(arg, strict=False)
        except ValueError:
            return False
    if op == "anything-but":
        return _anything_but(arg, v)
    return False


def _equal(m: Any, v: Any) -> bool:
    if m is None or isinstance(m, bool):
        return v is m
    if _is_number(m):
        return _is_number(v) and float(m) == float(v)
    return isinstance(v, str) and v == m


def _affix(v: str, arg: Any, test) -> bool:
    if isinstance(arg, dict):
        return test(v.casefold(), arg["equals-ignore-case"].casefold())
    return test(v, arg)


def _numeric(arg: list, v: float) -> bool:
    for op, n in zip(arg[0::2], arg[1::2]):
        ok = {"<": v < n, "<=": v <= n, "=": v == n, ">": v > n, ">=": v >= n}[op]
        if not ok:
            return False
    return True


def _anything_but(arg: Any, v: Any) -> bool:
    if isinstance(arg, dict):
        (inner, val), = arg.items()
        if not isinstance(v, str):
            return inner not in ("prefix", "suffix", "wildcard")  # a non-string is "anything but" a string rule
        if inner == "prefix":
            return not v.startswith(val)
        if inner == "suffix":
            return not v.endswith(val)
        vals = val if isinstance(val, list) else [val]
        if inner == "equals-ignore-case":
            return all(v.casefold() != x.casefold() for x in vals)
        return all(_wildcard_re(x).fullmatch(v) is None for x in vals)
    vals = arg if isinstance(arg, list) else [arg]
    return not any(_equal(x, v) for x in vals)


_WILDCARD_CACHE: dict[str, re.Pattern] = {}


def _wildcard_re(pattern: str) -> re.Pattern:
    rx = _WILDCARD_CACHE.get(pattern)
    if rx is None:
        parts, i = [], 0
        while i < len(pattern):
            c = pattern[i]
            if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
                parts.append(re.escape(pattern[i + 1]))
                i += 2
                continue
            parts.append(".*" if c == "*" else re.escape(c))
            i += 1
        rx = re.compile("".join(parts), re.DOTALL)
        if len(_WILDCARD_CACHE) < 1024:
            _WILDCARD_CACHE[pattern] = rx
    return rx
