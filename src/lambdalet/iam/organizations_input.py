"""Input checks shared by the Organizations API modules (organizations_service.py, scp_service.py):
the patterns and lengths of botocore's organizations model (the protocol checks types only), tags,
and NextToken/MaxResults paging, each refused as InvalidInputException with AWS's reason."""
from __future__ import annotations

import base64
import json
import re
from typing import Any

from lambdalet.iam.organizations import InvalidInputException

# Patterns and lengths of botocore's organizations model (the protocol checks types only).
_ACCOUNT_ID = re.compile(r"\d{12}")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_ACCOUNT_NAME = re.compile(r"[\u0020-\u007E]+")
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_REQUEST_ID = re.compile(r"car-[a-z0-9]{8,32}")
_PARENT_ID = re.compile(r"(r-[0-9a-z]{4,32})|(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})")
_TAG_CHARS = re.compile(r"[\w\s.:/=+\-@]*", re.UNICODE)
_STATES = ("IN_PROGRESS", "SUCCEEDED", "FAILED")
MAX_RESULTS = 20
MAX_TAGS = 50


def _invalid(message: str, reason: str) -> InvalidInputException:
    return InvalidInputException(message, reason=reason)


def _check(value: Any, pattern: re.Pattern, lo: int, hi: int) -> str:
    if not isinstance(value, str) or len(value) < lo:
        raise _invalid("You provided a value that is too short.", "MIN_LENGTH_EXCEEDED")
    if len(value) > hi:
        raise _invalid("You provided a value that is too long.", "MAX_LENGTH_EXCEEDED")
    if not pattern.fullmatch(value):
        raise _invalid("You provided a value that does not match the required pattern.", "INVALID_PATTERN")
    return value


def _check_tags(tags: Any) -> list[dict]:
    tags = list(tags or [])
    if len(tags) > MAX_TAGS:
        raise _invalid("You provided too many tags.", "INVALID_LIST_MEMBER")
    keys = [x.get("Key", "") for x in tags]
    if len(set(keys)) != len(keys):
        raise _invalid("You provided a duplicate tag key.", "DUPLICATE_TAG_KEY")
    for tag in tags:
        _check(tag.get("Key"), _TAG_CHARS, 1, 128)
        _check(tag.get("Value", ""), _TAG_CHARS, 0, 256)
        if tag["Key"].lower().startswith("aws:"):
            raise _invalid("You provided a tag key with the reserved prefix aws:.", "INVALID_SYSTEM_TAGS_PARAMETER")
    return [{"Key": x["Key"], "Value": x.get("Value", "")} for x in tags]


def _tag_keys(tags: list[dict]) -> dict[str, Any]:
    keys: dict[str, Any] = {f"aws:RequestTag/{x['Key']}": x["Value"] for x in tags}
    if tags:
        keys["aws:TagKeys"] = [x["Key"] for x in tags]
    return keys


def _page(items: list, params: dict, key: str) -> dict:
    """NextToken (opaque) + MaxResults (1-20) -> one page."""
    size = params.get("MaxResults")
    if size is None:
        size = MAX_RESULTS
    if size < 1:
        raise _invalid("You provided a value that is too small.", "MIN_VALUE_EXCEEDED")
    if size > MAX_RESULTS:
        raise _invalid("You provided a value that is too large.", "MAX_VALUE_EXCEEDED")
    start = 0
    token = params.get("NextToken")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()).decode())["o"])
        except (ValueError, KeyError, TypeError):
            raise _invalid("The specified token is invalid.", "INVALID_NEXT_TOKEN") from None
        if start < 0:
            raise _invalid("The specified token is invalid.", "INVALID_NEXT_TOKEN")
    out: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        out["NextToken"] = base64.urlsafe_b64encode(json.dumps({"o": start + size}).encode()).decode()
    return out
