"""List paging: MaxItems validation and opaque markers.

A marker is the sort key of the last item returned (base64url JSON), so pages stay correct
when items are added or deleted between calls, and no offset has to be counted.
"""
from __future__ import annotations

import base64
import binascii
import json

from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.services.validation import constraint_error

DEFAULT_MAX_ITEMS = 50
MAX_ITEMS_LIMIT = 10000


def max_items(params: dict, default: int = DEFAULT_MAX_ITEMS, limit: int = MAX_ITEMS_LIMIT) -> int:
    value = params.get("MaxItems")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint_error(value, "maxItems", "Member must be an integer")
    if value < 1:
        raise constraint_error(value, "maxItems", "Member must have value greater than or equal to 1")
    if value > limit:
        raise constraint_error(value, "maxItems", f"Member must have value less than or equal to {limit}")
    return value


def encode_marker(kind: str, key: list) -> str:
    raw = json.dumps({"k": kind, "v": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_marker(marker, kind: str) -> list | None:
    """The key after which the page starts; None for no marker. Foreign or broken markers are refused."""
    if marker is None or marker == "":
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)))
        if doc.get("k") == kind and isinstance(doc.get("v"), list):
            return doc["v"]
    except (ValueError, TypeError, AttributeError, binascii.Error):
        pass
    raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")


def page(rows: list, limit: int, kind: str, key_of) -> tuple[list, str | None]:
    """Given up to limit+1 rows after the marker, -> (page, NextMarker or None)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_marker(kind, key_of(rows[-1]))
    return rows, None
