"""Response shapes: stored rows -> AWS output members (FunctionConfiguration, AliasConfiguration)."""
from __future__ import annotations

import base64
import hashlib
import json
import time

from sqlalchemy.engine import Row

from lambdalet.services.arns import Scope
from lambdalet.services import states
from lambdalet.services.records import LATEST, config_of

# ListFunctions and ListVersionsByFunction return a subset of FunctionConfiguration: AWS documents
# that these come only from GetFunction / GetFunctionConfiguration.
_NOT_LISTED = ("State", "StateReason", "StateReasonCode", "LastUpdateStatus", "LastUpdateStatusReason",
               "LastUpdateStatusReasonCode", "RuntimeVersionConfig")


def aws_timestamp(epoch: float) -> str:
    """AWS's LastModified format: 2026-11-27T02:53:00.000+0000."""
    whole = int(epoch)
    millis = int(round((epoch - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}+0000"


def code_sha256_b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def configuration(scope: Scope, fn: Row, ver: Row, env: dict[str, str], *, listed: bool = False,
                  qualified_latest: bool = False) -> dict:
    """GetFunctionConfiguration's shape for one version row. listed: an entry of a List* answer;
    qualified_latest: $LATEST named explicitly (AWS then answers its ARN with :$LATEST)."""
    cfg = config_of(ver)
    qualifier = None if ver.version == LATEST and not qualified_latest else ver.version
    out = {
        "FunctionName": fn.name,
        "FunctionArn": scope.function_arn(fn.name, qualifier),
        "Runtime": cfg.get("Runtime"),
        "Role": cfg.get("Role"),
        "Handler": cfg.get("Handler"),
        "CodeSize": ver.code_size,
        "Description": cfg.get("Description", ""),
        "Timeout": cfg.get("Timeout", 3),
        "MemorySize": cfg.get("MemorySize", 128),
        "LastModified": aws_timestamp(ver.last_modified),
        "CodeSha256": code_sha256_b64(ver.code_sha256),
        "Version": ver.version,
        "TracingConfig": cfg.get("TracingConfig", {"Mode": "PassThrough"}),
        "RevisionId": ver.revision_id,
        **states.describe(ver),
        "PackageType": cfg.get("PackageType", "Zip"),
        "Architectures": cfg.get("Architectures", ["x86_64"]),
        "EphemeralStorage": cfg.get("EphemeralStorage", {"Size": 512}),
        "SnapStart": {"ApplyOn": cfg.get("SnapStart", {}).get("ApplyOn", "None"), "OptimizationStatus": "Off"},
        "LoggingConfig": cfg.get("LoggingConfig", {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fn.name}"}),
    }
    # AWS echoes the Environment it was given, an empty one included; absent only when never set.
    if env or cfg.get("EnvironmentSet"):
        out["Environment"] = {"Variables": dict(env)}
    if cfg.get("TenancyConfig"):      # PER_TENANT, set at create (services/tenancy.py)
        out["TenancyConfig"] = cfg["TenancyConfig"]
    if cfg.get("KMSKeyArn"):
        out["KMSKeyArn"] = cfg["KMSKeyArn"]
    if cfg.get("DeadLetterConfig"):
        out["DeadLetterConfig"] = cfg["DeadLetterConfig"]
    if cfg.get("Layers"):          # the digest and unzipped size stored with them are lambdalet's own
        out["Layers"] = [{"Arn": layer["Arn"], "CodeSize": layer["CodeSize"]} for layer in cfg["Layers"]]
    for member in ("SigningProfileVersionArn", "SigningJobArn"):   # verified signer (services/code_signing.py)
        if cfg.get(member):
            out[member] = cfg[member]
    if cfg.get("Runtime"):
        out["RuntimeVersionConfig"] = {"RuntimeVersionArn": runtime_version_arn(scope.region, cfg["Runtime"])}
    if listed:
        for member in _NOT_LISTED:
            out.pop(member, None)
    return out


def runtime_version_arn(region: str, runtime: str) -> str:
    """arn:aws:lambda:<region>::runtime:<64 hex>: AWS names the runtime build a function runs on. Here
    one build per runtime identifier, so the digest of the identifier names it."""
    return f"arn:aws:lambda:{region}::runtime:{hashlib.sha256(runtime.encode()).hexdigest()}"


def alias(scope: Scope, fn: Row, row: Row) -> dict:
    out = {
        "AliasArn": scope.function_arn(fn.name, row.name),
        "Name": row.name,
        "FunctionVersion": row.function_version,
        "Description": row.description or "",
        "RevisionId": row.revision_id,
    }
    weights = json.loads(row.routing) if row.routing else {}
    if weights:
        out["RoutingConfig"] = {"AdditionalVersionWeights": weights}
    return out
