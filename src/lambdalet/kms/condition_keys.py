"""KMS's own condition keys, put in the request context of KMS decisions so that a key policy or an IAM
policy conditioned on them applies (a Deny) or matches (an Allow), as AWS documents them in "AWS KMS
condition keys":

- every operation on a key: kms:CallerAccount (the caller's account, also across accounts),
  kms:KeySpec, kms:KeyUsage, kms:KeyOrigin, kms:MultiRegion (the key's properties) and
  aws:ResourceTag/<tag> (its tags);
- cryptographic operations: kms:EncryptionContext:<key> (one per pair of the request's context),
  kms:EncryptionContextKeys (its keys; absent when there is no context, so `Null` tests it) and
  kms:EncryptionAlgorithm (SYMMETRIC_DEFAULT unless the request names another);
- a request naming the key by an alias: kms:RequestAlias;
- a call Lambda makes on a caller's behalf (kms/lambda_keys.py): kms:ViaService
  (`lambda.<region>.amazonaws.com`), and for its grant kms:GrantIsForAWSResource = true;
- CreateKey / PutKeyPolicy: kms:BypassPolicyLockoutSafetyCheck, and CreateKey the requested key's
  properties.

Values come from the request and the stored key, never from anything else the caller could choose.
"""
from __future__ import annotations

from typing import Any, Mapping

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"


def via_service(service: str, region: str) -> str:
    """kms:ViaService's value for an AWS service acting in a region (e.g. lambda.us-east-1.amazonaws.com)."""
    return f"{service}.{region}.amazonaws.com"


def caller_keys(caller_account: str) -> dict[str, Any]:
    return {"kms:CallerAccount": caller_account}


def key_properties(key_spec: str, key_usage: str, *, origin: str = "AWS_KMS", multi_region: bool = False
                   ) -> dict[str, Any]:
    return {"kms:KeySpec": key_spec, "kms:KeyUsage": key_usage, "kms:KeyOrigin": origin,
            "kms:MultiRegion": multi_region}


def resource_tags(tags) -> dict[str, Any]:
    """The key's tags ([{"TagKey", "TagValue"}]) as aws:ResourceTag/<key>."""
    return {f"aws:ResourceTag/{t['TagKey']}": t["TagValue"] for t in tags or ()}


def encryption_context(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """kms:EncryptionContext:<key> per pair and kms:EncryptionContextKeys; nothing for an empty context.
    Non-string members are left out (the operation refuses them before anything is sealed or opened)."""
    pairs = {k: v for k, v in (context or {}).items() if isinstance(k, str) and isinstance(v, str)}
    if not pairs:
        return {}
    out: dict[str, Any] = {"kms:EncryptionContextKeys": sorted(pairs)}
    for k, v in pairs.items():
        out[f"kms:EncryptionContext:{k}"] = v
    return out


def cryptographic(context: Mapping[str, Any] | None, algorithm: str | None = None) -> dict[str, Any]:
    """The keys of Encrypt, Decrypt, ReEncrypt and GenerateDataKey*."""
    out = encryption_context(context)
    out["kms:EncryptionAlgorithm"] = algorithm or SYMMETRIC_DEFAULT
    return out


def request_alias(ref: Any) -> dict[str, Any]:
    """kms:RequestAlias when the request names the key by an alias name or alias ARN."""
    if not isinstance(ref, str):
        return {}
    if ref.startswith("alias/"):
        return {"kms:RequestAlias": ref}
    if ref.startswith("arn:") and ":alias/" in ref:
        return {"kms:RequestAlias": ref[ref.index(":alias/") + 1:]}
    return {}
