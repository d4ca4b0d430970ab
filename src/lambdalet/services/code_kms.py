"""SourceKMSKeyArn: a deployment package sealed under the customer's KMS key instead of the platform key.

CreateFunction (Code.SourceKMSKeyArn) and UpdateFunctionCode (SourceKMSKeyArn) name the key for the
package they upload; it is checked (kms.FunctionKeys: exists, Enabled, caller may kms:GenerateDataKey)
before anything is written, and recorded in the version's configuration next to the code digest, so
published versions keep the key their code was sealed with. Omitting it, as in AWS, means the
platform's own key. The blob itself is addressed by (digest, key, function ARN): see blobs/store.py.
"""
from __future__ import annotations

import re

from lambdalet.crypto.tokens import make_token
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.services.deps import Deps
from lambdalet.services.validation import KMS_PATTERN, constraint_error

CONFIG_MEMBER = "SourceKMSKeyArn"      # in the version's stored configuration


def source_key_arn(value, field: str) -> str | None:
    """The member's value after the model's checks; "" (allowed by the pattern) means none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise constraint_error(value, field, "Member must be a string")
    if not re.fullmatch(KMS_PATTERN, value):
        raise constraint_error(value, field, f"Member must satisfy regular expression pattern: {KMS_PATTERN}")
    return value or None


def check(deps: Deps, ctx: RequestContext, key_arn: str | None) -> None:
    """Refuses (Lambda's KMS*Exception) before any write, like KMSKeyArn."""
    if not key_arn:
        return
    if deps.kms is None:
        raise InvalidParameterValueException("SourceKMSKeyArn needs lambdalet's KMS, which is not available here.")
    deps.kms.check_code_configurable(ctx, key_arn)


def sealer(deps: Deps, key_arn: str | None, function_arn: str):
    """The blobs.BlobSealer for this function's package: None (the platform key) without a key."""
    return deps.kms.code_sealer(key_arn, function_arn) if key_arn else None


def record(cfg: dict, key_arn: str | None) -> None:
    """Stamp the version's configuration with the key its code is sealed under (or none)."""
    if key_arn:
        cfg[CONFIG_MEMBER] = key_arn
    else:
        cfg.pop(CONFIG_MEMBER, None)


def code_section(deps: Deps, ctx: RequestContext, function_arn: str, sha256_hex: str, cfg: dict,
                 ttl_s: int, *, function_id: str, version: str) -> dict:
    """GetFunction's Code: a download URL; with a SourceKMSKeyArn, only for a caller who may decrypt
    with an Enabled key (otherwise AWS reports the KMS error in Code.Error and gives no Location).
    The URL is bound to the version's current code (api/code_download.py refuses it once changed)."""
    out: dict = {"RepositoryType": "S3"}
    claims = {"a": ctx.account_id, "s": sha256_hex, "i": function_id, "v": version}
    key_arn = cfg.get(CONFIG_MEMBER)
    if key_arn:
        out["SourceKMSKeyArn"] = key_arn
        err = deps.kms.code_download_error(ctx, key_arn) if deps.kms is not None else None
        if err is not None:
            out["Error"] = {"ErrorCode": err.code, "Message": err.message}
            return out
        claims.update(k=key_arn, f=function_arn)      # the download opens the blob with this sealer
    token = make_token(deps.keyring.derive_key("code-url"), claims, ttl_s)
    out["Location"] = f"{ctx.base_url}/_lambdalet/code?token={token}"
    return out
