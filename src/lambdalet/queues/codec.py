"""How a message is stored and answered: the sealing AAD, SQS's MD5s, the sealed attribute document, and
the receipt-handle layout.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
from typing import Any

from lambdalet.queues import fifo

_RECEIPT_VERSION = 1
_RECEIPT_LEN = 1 + 16 + 16 + 4 + 32


def _aad(queue_id: str, message_id: str, part: str) -> bytes:
    return f"lambdalet/sqs/v1|{queue_id}|{message_id}|{part}".encode()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_of_attributes(attrs: dict[str, dict]) -> str:
    """SQS's MD5OfMessageAttributes: per attribute, sorted by name: len+name, len+type, transport
    byte (1 string/number, 2 binary), len+value; lengths are 4-byte big-endian."""
    buf = bytearray()
    for name in sorted(attrs):
        a = attrs[name]
        dtype = a["DataType"]
        for part in (name.encode(), dtype.encode()):
            buf += struct.pack(">I", len(part)) + part
        if dtype.startswith("Binary"):
            value = a["BinaryValue"]
            buf += b"\x02"
        else:
            value = a["StringValue"].encode()
            buf += b"\x01"
        buf += struct.pack(">I", len(value)) + value
    return _md5(bytes(buf))


def _attr_size(attrs: dict[str, dict]) -> int:
    size = 0
    for name, a in attrs.items():
        value: Any = a.get("BinaryValue") if a["DataType"].startswith("Binary") else a["StringValue"].encode()
        size += len(name.encode()) + len(a["DataType"].encode()) + len(value)
    return size


def _pack_attrs(attrs: dict[str, dict], sys_attrs: dict[str, dict], fifo_send: "fifo.FifoSend | None" = None) -> bytes:
    def enc(d):
        return {n: {k: (base64.b64encode(v).decode() if k == "BinaryValue" else v) for k, v in a.items()}
                for n, a in d.items()}
    doc: dict[str, Any] = {"a": enc(attrs), "s": enc(sys_attrs)}
    if fifo_send is not None:          # the group and deduplication ids travel sealed, like the attributes
        doc["f"] = {"g": fifo_send.group_id, "d": fifo_send.dedup_id}
    return json.dumps(doc, separators=(",", ":")).encode()


def _unpack_attrs(raw: bytes) -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    doc = json.loads(raw)

    def dec(d):
        return {n: {k: (base64.b64decode(v) if k == "BinaryValue" else v) for k, v in a.items()}
                for n, a in d.items()}
    return dec(doc.get("a", {})), dec(doc.get("s", {})), doc.get("f", {})


def _want_attr(name: str, selectors: list[str]) -> bool:
    for s in selectors:
        if s in ("All", ".*") or s == name or (s.endswith(".*") and name.startswith(s[:-1])):
            return True
    return False
