"""Environment variables at rest: the whole Variables map, JSON-encoded, sealed by the keyring.

The AAD binds a sealed value to one function version (the function's internal id plus the
version), so a sealed blob copied to another row or function does not open.

A function with a KMSKeyArn has its variables sealed under that KMS key's KEK (`kms-<key id>`,
in the keyring, wrapped by the master key) instead of the platform key; the envelope names the
KEK, so opening needs no configuration. `kms` (kms.FunctionKeys) is passed by the data plane: it
checks the KMS key is usable before anything sealed under it is opened (Lambda's KMS*Exception
otherwise). The control plane opens without that check (GetFunctionConfiguration keeps working
while the key is disabled).
"""
from __future__ import annotations

import json

from lambdalet.crypto.keyring import PLATFORM_KEY_ID


def _aad(function_id: str, version: str) -> bytes:
    return b"lambdalet/env/v1\x00" + function_id.encode() + b"\x00" + version.encode()


def kek_id_for(kms_key_arn: str | None) -> str:
    """The KEK a function's variables are sealed under: its KMS key's, else the platform key."""
    if not kms_key_arn:
        return PLATFORM_KEY_ID
    from lambdalet.kms.lambda_keys import FunctionKeys
    return FunctionKeys.kek_id(kms_key_arn)


def seal_env(keyring, function_id: str, version: str, variables: dict[str, str] | None,
             kms_key_arn: str | None = None) -> bytes | None:
    if not variables:
        return None
    plain = json.dumps(variables, sort_keys=True, separators=(",", ":")).encode()
    return keyring.seal(plain, aad=_aad(function_id, version), key_id=kek_id_for(kms_key_arn))


def open_env(keyring, function_id: str, version: str, sealed: bytes | None, kms=None) -> dict[str, str]:
    if not sealed:
        return {}
    if kms is not None:
        kms.check_sealed(sealed)
    return json.loads(keyring.open(bytes(sealed), aad=_aad(function_id, version)))
