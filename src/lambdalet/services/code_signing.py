"""Code signing configs: the nine Lambda operations, and the check every code deployment of a
function with a config goes through (CreateFunction, UpdateFunctionCode).

    Create/Get/Update/Delete/ListCodeSigningConfigs
    Put/Get/DeleteFunctionCodeSigningConfig, ListFunctionsByCodeSigningConfig

On deployment (signing/verify.py): an integrity failure (bad or unknown signature, code altered)
is refused with InvalidCodeSignatureException whatever the policy; a failed untrusted-artifact
check (unsigned, publisher not allowed, expired, revoked) is refused with
CodeVerificationFailedException under Enforce, and under Warn (the default) the deployment goes
ahead and a warning is logged (logger `lambdalet.codesigning`; AWS publishes a
SignatureValidationErrors metric and a CloudTrail warning instead). The signer of verified code
is kept in the version's configuration and shown as SigningProfileVersionArn / SigningJobArn.
A config only governs new deployments: attaching one does not re-check the deployed code.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import string
from dataclasses import dataclass

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import AwsError, InvalidParameterValueException, ResourceConflictException, \
    ResourceNotFoundException
from lambdalet.services import paging, records, tags, views
from lambdalet.services.arns import Scope, parse_function_ref, require_unqualified
from lambdalet.services.deps import Deps
from lambdalet.services.validation import constraint_error
from lambdalet.signing.tables import code_signing_configs as C
from lambdalet.signing.tables import function_code_signing_configs as FC
from lambdalet.signing.verify import IntegrityFailure, verify_package

log = logging.getLogger("lambdalet.codesigning")

F = records.F
POLICIES = ("Warn", "Enforce")
MAX_PUBLISHERS = 20
CONFIG_ARN_PATTERN = (r"arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
                      r"code-signing-config:csc-[a-z0-9]{17}")
_CONFIG_ARN_RE = re.compile(r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                            r"code-signing-config:(?P<id>csc-[a-z0-9]{17})")
# AWS accepts a profile ARN with or without its version; the publisher check compares the signer's
# version ARN exactly (signing/verify.py), so a version-less entry admits no signer here.
_PROFILE_ARN_RE = re.compile(r"arn:aws[a-zA-Z-]*:signer:[a-z0-9-]+:\d{12}:/signing-profiles/[a-zA-Z0-9_]{1,64}"
                             r"(/[a-zA-Z0-9]{1,64})?")
_ID_CHARS = string.ascii_lowercase + string.digits
SIGNING_MEMBERS = ("SigningProfileVersionArn", "SigningJobArn")


class CodeSigningConfigNotFoundException(AwsError):
    code, status, sender_fault = "CodeSigningConfigNotFoundException", 404, True


class CodeVerificationFailedException(AwsError):
    code, status, sender_fault = "CodeVerificationFailedException", 400, True


class InvalidCodeSignatureException(AwsError):
    code, status, sender_fault = "InvalidCodeSignatureException", 400, True


# ---- validation and views ----
def _publishers(value) -> list[str]:
    arns = (value or {}).get("SigningProfileVersionArns") if isinstance(value, dict) else None
    if not isinstance(arns, list) or not 1 <= len(arns) <= MAX_PUBLISHERS:
        raise constraint_error(arns, "allowedPublishers.signingProfileVersionArns",
                               f"Member must have length between 1 and {MAX_PUBLISHERS}")
    for arn in arns:
        if not isinstance(arn, str) or not _PROFILE_ARN_RE.fullmatch(arn):
            raise InvalidParameterValueException(
                f"Invalid signing profile version ARN: {str(arn)[:256]}. Expected "
                "arn:aws:signer:<region>:<account>:/signing-profiles/<name>/<version>.")
    return list(dict.fromkeys(arns))


def _policy(value) -> str:
    if value is None:
        return "Warn"
    chosen = value.get("UntrustedArtifactOnDeployment", "Warn") if isinstance(value, dict) else value
    if chosen not in POLICIES:
        raise constraint_error(chosen, "codeSigningPolicies.untrustedArtifactOnDeployment",
                               "Member must satisfy enum value set: [Warn, Enforce]")
    return chosen


def _description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 256:
        raise constraint_error(value, "description", "Member must have length less than or equal to 256")
    return value


def _view(row) -> dict:
    return {"CodeSigningConfigId": row.id, "CodeSigningConfigArn": row.arn, "Description": row.description,
            "AllowedPublishers": {"SigningProfileVersionArns": json.loads(row.allowed_publishers)},
            "CodeSigningPolicies": {"UntrustedArtifactOnDeployment": row.untrusted_artifact_on_deployment},
            "LastModified": views.aws_timestamp(row.last_modified)}


def config_arn(scope: Scope, config_id: str) -> str:
    return f"arn:aws:lambda:{scope.region}:{scope.account_id}:code-signing-config:{config_id}"


def _find(conn, scope: Scope, arn) -> object | None:
    """The config row for an ARN in the caller's scope (None if absent or another scope's)."""
    if not isinstance(arn, str):
        raise constraint_error(arn, "codeSigningConfigArn", f"Member must satisfy regular expression pattern: "
                               f"{CONFIG_ARN_PATTERN}")
    m = _CONFIG_ARN_RE.fullmatch(arn)
    if not m:
        raise constraint_error(arn, "codeSigningConfigArn", f"Member must satisfy regular expression pattern: "
                               f"{CONFIG_ARN_PATTERN}")
    if m["account"] != scope.account_id or m["region"] != scope.region:
        return None
    return conn.execute(sa.select(C).where(C.c.id == m["id"], C.c.account_id == scope.account_id,
                                           C.c.region == scope.region)).first()


def _require(conn, scope: Scope, arn):
    row = _find(conn, scope, arn)
    if row is None:
        raise ResourceNotFoundException(f"The Lambda code signing configuration {arn} can not be found.")
    return row


def _require_for_function(conn, scope: Scope, arn):
    row = _find(conn, scope, arn)
    if row is None:
        raise CodeSigningConfigNotFoundException(
            f"The code signing configuration cannot be found. Check that the provided configuration is not "
            f"deleted: {arn}.")
    return row


def _function(ctx: RequestContext, conn, params: dict, action: str):
    scope = Scope.of(ctx)
    ref = parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn, action=action)
    return scope, records.require_function(conn, scope, require_unqualified(ref, allow_latest=True))


def _attached(conn, function_id: str):
    return conn.execute(sa.select(C).select_from(FC.join(C, FC.c.config_id == C.c.id))
                        .where(FC.c.function_id == function_id)).first()


# ---- the nine operations ----
def create_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope = Scope.of(ctx)
    publishers = _publishers(params.get("AllowedPublishers"))
    policy = _policy(params.get("CodeSigningPolicies"))
    description = _description(params.get("Description"))
    new_tags = tags.validate_tags(params.get("Tags"))
    config_id = "csc-" + "".join(secrets.choice(_ID_CHARS) for _ in range(17))
    arn = config_arn(scope, config_id)
    now = deps.clock()
    with deps.db.begin() as conn:
        conn.execute(C.insert().values(id=config_id, account_id=scope.account_id, region=scope.region, arn=arn,
                                       description=description, allowed_publishers=json.dumps(publishers),
                                       untrusted_artifact_on_deployment=policy, created_at=now, last_modified=now))
        tags.write_tags(conn, arn, new_tags)
        return {"CodeSigningConfig": _view(conn.execute(sa.select(C).where(C.c.id == config_id)).one())}


def get_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.read() as conn:
        return {"CodeSigningConfig": _view(_require(conn, Scope.of(ctx), params.get("CodeSigningConfigArn")))}


def update_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    values = {}
    if params.get("AllowedPublishers") is not None:
        values["allowed_publishers"] = json.dumps(_publishers(params["AllowedPublishers"]))
    if params.get("CodeSigningPolicies") is not None:
        values["untrusted_artifact_on_deployment"] = _policy(params["CodeSigningPolicies"])
    if params.get("Description") is not None:
        values["description"] = _description(params["Description"])
    with deps.db.begin() as conn:
        row = _require(conn, Scope.of(ctx), params.get("CodeSigningConfigArn"))
        if values:
            conn.execute(C.update().where(C.c.id == row.id).values(last_modified=deps.clock(), **values))
        return {"CodeSigningConfig": _view(conn.execute(sa.select(C).where(C.c.id == row.id)).one())}


def delete_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.begin() as conn:
        row = _require(conn, Scope.of(ctx), params.get("CodeSigningConfigArn"))
        users = conn.execute(sa.select(F.c.name).select_from(FC.join(F, FC.c.function_id == F.c.id))
                             .where(FC.c.config_id == row.id).order_by(F.c.name).limit(11)).scalars().all()
        if users:
            shown = ", ".join(users[:10]) + (", ..." if len(users) > 10 else "")
            raise ResourceConflictException(
                f"The code signing configuration {row.arn} cannot be deleted because it is used by "
                f"functions: [{shown}]. Remove it from them first (DeleteFunctionCodeSigningConfig).")
        tags.delete_all(conn, row.arn)
        conn.execute(C.delete().where(C.c.id == row.id))
    return {}


def list_code_signing_configs(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope = Scope.of(ctx)
    limit = paging.max_items(params)
    after = paging.decode_marker(params.get("Marker"), "code-signing-configs")
    q = sa.select(C).where(C.c.account_id == scope.account_id, C.c.region == scope.region)
    if after is not None:
        if len(after) != 1 or not isinstance(after[0], str):
            raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")
        q = q.where(C.c.id > after[0])
    with deps.db.read() as conn:
        rows = conn.execute(q.order_by(C.c.id).limit(limit + 1)).all()
    rows, marker = paging.page(rows, limit, "code-signing-configs", lambda r: [r.id])
    out = {"CodeSigningConfigs": [_view(r) for r in rows]}
    if marker:
        out["NextMarker"] = marker
    return out


def list_functions_by_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope = Scope.of(ctx)
    limit = paging.max_items(params)
    after = paging.decode_marker(params.get("Marker"), "csc-functions")
    with deps.db.read() as conn:
        row = _require(conn, scope, params.get("CodeSigningConfigArn"))
        q = sa.select(F.c.name).select_from(FC.join(F, FC.c.function_id == F.c.id)).where(FC.c.config_id == row.id)
        if after is not None:
            if len(after) != 1 or not isinstance(after[0], str):
                raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")
            q = q.where(F.c.name > after[0])
        names = conn.execute(q.order_by(F.c.name).limit(limit + 1)).scalars().all()
    names, marker = paging.page(names, limit, "csc-functions", lambda n: [n])
    out = {"FunctionArns": [scope.function_arn(n) for n in names]}
    if marker:
        out["NextMarker"] = marker
    return out


def put_function_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.begin() as conn:
        scope, fn = _function(ctx, conn, params, "PutFunctionCodeSigningConfig")
        row = _require_for_function(conn, scope, params.get("CodeSigningConfigArn"))
        conn.execute(FC.delete().where(FC.c.function_id == fn.id))
        conn.execute(FC.insert().values(function_id=fn.id, config_id=row.id, attached_at=deps.clock()))
        latest = records.find_version(conn, fn.id, records.LATEST)
        records.touch_latest(conn, latest.id)
    return {"CodeSigningConfigArn": row.arn, "FunctionName": fn.name}


def get_function_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.read() as conn:
        _, fn = _function(ctx, conn, params, "GetFunctionCodeSigningConfig")
        row = _attached(conn, fn.id)
    return {"CodeSigningConfigArn": row.arn if row is not None else "", "FunctionName": fn.name}


def delete_function_code_signing_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.begin() as conn:
        _, fn = _function(ctx, conn, params, "DeleteFunctionCodeSigningConfig")
        if conn.execute(FC.delete().where(FC.c.function_id == fn.id)).rowcount:
            latest = records.find_version(conn, fn.id, records.LATEST)
            records.touch_latest(conn, latest.id)
    return {}


# ---- the deployment check (called from services/functions.py) ----
@dataclass(frozen=True)
class Deployment:
    """What the check decided for one code deployment: the config in force (None: the function
    has none) and the signer of the code when it was signed and verified."""
    config_id: str | None = None
    profile_version_arn: str | None = None
    job_arn: str | None = None


NOT_GOVERNED = Deployment()


def _check(deps: Deps, conn, row, data: bytes, function_arn: str, operation: str) -> Deployment:
    allowed = json.loads(row.allowed_publishers)
    try:
        verdict = verify_package(conn, data, allowed, deps.clock())
    except IntegrityFailure as e:
        log.warning("code signing: %s of %s refused (integrity, config %s): %s", operation, function_arn, row.arn, e)
        raise InvalidCodeSignatureException(
            f"Lambda cannot deploy the function. The code signature failed the integrity check for "
            f"{function_arn}: {e}.") from None
    if verdict.failures:
        detail = "; ".join(verdict.failures)
        if row.untrusted_artifact_on_deployment == "Enforce":
            log.warning("code signing: %s of %s refused (Enforce, config %s): %s", operation, function_arn,
                        row.arn, detail)
            raise CodeVerificationFailedException(
                "Lambda cannot deploy the function. The function or layer might be signed using a signature "
                f"that the client is not configured to accept. Check the provided signature for {function_arn}. "
                f"({detail})")
        log.warning("code signing: SignatureValidationErrors: %s of %s deployed under Warn (config %s): %s",
                    operation, function_arn, row.arn, detail)
    if not verdict.signed:
        return Deployment(row.id)
    return Deployment(row.id, verdict.claims.profile_version_arn, verdict.claims.job_arn)


def annotate(cfg: dict, dep: Deployment) -> None:
    """Record (or clear) the verified signer in a version's stored configuration."""
    for member in SIGNING_MEMBERS:
        cfg.pop(member, None)
    if dep.profile_version_arn:
        cfg["SigningProfileVersionArn"] = dep.profile_version_arn
        cfg["SigningJobArn"] = dep.job_arn


def verify_create(deps: Deps, scope: Scope, name: str, params: dict, data: bytes, cfg: dict) -> Deployment:
    """CreateFunction: check the package against the CodeSigningConfigArn member (if any) before
    anything is written; record the signer in `cfg`."""
    arn = params.get("CodeSigningConfigArn")
    dep = NOT_GOVERNED
    if arn not in (None, ""):
        with deps.db.read() as conn:
            row = _require_for_function(conn, scope, arn)
            dep = _check(deps, conn, row, data, scope.function_arn(name), "CreateFunction")
    annotate(cfg, dep)
    return dep


def attach(deps: Deps, conn, function_id: str, dep: Deployment) -> None:
    """CreateFunction, inside its write transaction, after the function row: associate the config."""
    if dep.config_id is None:
        return
    if conn.execute(sa.select(C.c.id).where(C.c.id == dep.config_id)).first() is None:
        raise CodeSigningConfigNotFoundException("The code signing configuration was deleted while the function "
                                                 "was being created.")
    conn.execute(FC.insert().values(function_id=function_id, config_id=dep.config_id, attached_at=deps.clock()))


def verify_update(deps: Deps, conn, scope: Scope, fn, data: bytes) -> Deployment:
    """UpdateFunctionCode (inside its read snapshot): check the package against the function's config."""
    row = _attached(conn, fn.id)
    if row is None:
        return NOT_GOVERNED
    return _check(deps, conn, row, data, scope.function_arn(fn.name), "UpdateFunctionCode")


def stamp(conn, function_id: str, cfg: dict, dep: Deployment) -> None:
    """UpdateFunctionCode, inside its write transaction: the config in force must still be the one
    the package was checked against (else a concurrent PutFunctionCodeSigningConfig could let
    unchecked code in); then record the signer in `cfg`."""
    current = conn.execute(sa.select(FC.c.config_id).where(FC.c.function_id == function_id)).scalar()
    if current != dep.config_id:
        raise ResourceConflictException("The function's code signing configuration changed while its code was "
                                        "being updated. Retry the update.")
    annotate(cfg, dep)
