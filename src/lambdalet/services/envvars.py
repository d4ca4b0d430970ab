"""Environment variables at rest: the whole Variables map, JSON-encoded, sealed by the keyring.

The AAD binds a sealed value to one function version (the function's internal id plus the
version), so a sealed blob copied to another row or function does not open.
"""
from __future__ import annotations

import json


def _aad(function_id: str, version: str) -> bytes:
    return b"lambdalet/env/v1\x00" + function_id.encode() + b"\x00" + version.encode()


def seal_env(keyring, function_id: str, version: str, variables: dict[str, str] | None) -> bytes | None:
    if not variables:
        return None
    plain = json.dumps(variables, sort_keys=True, separators=(",", ":")).encode()
    return keyring.seal(plain, aad=_aad(function_id, version))


def open_env(keyring, function_id: str, version: str, sealed: bytes | None) -> dict[str, str]:
    if not sealed:
        return {}
    return json.loads(keyring.open(bytes(sealed), aad=_aad(function_id, version)))
