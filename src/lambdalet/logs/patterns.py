"""CloudWatch Logs filter patterns, text form (what FilterLogEvents' `filterPattern` takes for
unstructured logs such as Lambda's):

- empty or blank: every event matches;
- `ERROR Exception`: every term must occur (AND), case-sensitive substring match;
- `"Task timed out"`: a quoted phrase is one term (`\\"` escapes a quote inside it);
- `?ERROR ?WARN`: at least one of the `?` terms must occur (OR);
- `ERROR -healthcheck`: the `-` terms must not occur.
Mixed forms combine as: all plain terms AND at least one `?` term (if any) AND no `-` term.

JSON (`{ $.level = ... }`), space-delimited (`[ip, user, ...]`) and regex (`%...%`) patterns are
refused with InvalidParameterException rather than silently matching the wrong events.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lambdalet.logs.errors import InvalidParameterException

MAX_PATTERN = 1024


@dataclass(frozen=True)
class TextPattern:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def __call__(self, message: str) -> bool:
        if any(t not in message for t in self.required):
            return False
        if self.optional and not any(t in message for t in self.optional):
            return False
        return not any(t in message for t in self.excluded)

    @property
    def matches_all(self) -> bool:
        return not (self.required or self.optional or self.excluded)


def compile_pattern(text: str | None) -> Callable[[str], bool]:
    if text is None:
        return TextPattern()
    if len(text) > MAX_PATTERN:
        raise InvalidParameterException(f"Filter pattern must be at most {MAX_PATTERN} characters long.")
    stripped = text.strip()
    if stripped[:1] in ("{", "[") or (stripped.startswith("%") and stripped.endswith("%") and len(stripped) > 1):
        raise InvalidParameterException(
            "lambdalet supports only text filter patterns (terms, \"quoted phrases\", ?term, -term); "
            "JSON, space-delimited and regex patterns are not implemented.")
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    i, n = 0, len(stripped)
    while i < n:
        if stripped[i].isspace():
            i += 1
            continue
        kind = ""
        if stripped[i] in "?-" and i + 1 < n and not stripped[i + 1].isspace():
            kind = stripped[i]
            i += 1
        if stripped[i] == '"':
            i += 1
            buf = []
            while i < n and stripped[i] != '"':
                if stripped[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(stripped[i])
                i += 1
            if i >= n:
                raise InvalidParameterException("Invalid filter pattern: unterminated quoted term.")
            i += 1
            term = "".join(buf)
        else:
            start = i
            while i < n and not stripped[i].isspace():
                if stripped[i] == '"':
                    raise InvalidParameterException(
                        f"Invalid character(s) in term '{stripped[start:i + 1]}': quote the whole term.")
                i += 1
            term = stripped[start:i]
        if not term:
            continue          # "" matches everything: no constraint
        {"": required, "?": optional, "-": excluded}[kind].append(term)
    return TextPattern(tuple(required), tuple(optional), tuple(excluded))
