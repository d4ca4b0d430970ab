"""Lambda layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions,
DeleteLayerVersion, Add/RemoveLayerVersionPermission, GetLayerVersionPolicy — and what functions
need from layers (`attach`: a function's `Layers` resolved, checked and recorded in its config).

A layer version's zip goes through the same hostile-zip checks and into the same encrypted,
content-addressed blob store as function code. Versions are numbered per layer name and never
reused (store/layer_tables.py). A function's configuration records, for each layer, the ARN and
size AWS shows plus the blob digest and unzipped size: invocations never read the layer tables,
so a function version keeps working after a layer version it uses is deleted, as in AWS.

Who may use a layer version: its own account (with `lambda:GetLayerVersion` in the caller's
identity policies), or another account whose caller the layer version policy allows
(AddLayerVersionPermission: an account id, `*`, or `*` limited to an organization). API calls are
authorized by iam/request_map.py with that policy as the resource policy (`layer_policies`);
a function's `Layers` are checked here, at deploy time, the same way (`Deps.authorizer`).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from functools import lru_cache
from typing import Callable

import sqlalchemy as sa

from lambdalet.codepkg.archive import declared_size
from lambdalet.codepkg.zipcheck import UNZIPPED_LIMIT, check_zipped_size, inspect_zip
from lambdalet.crypto.tokens import make_token
from lambdalet.iam.authz import request_context
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import (AccessDeniedException, CodeStorageExceededException,
                                     InvalidParameterValueException, PreconditionFailedException,
                                     ResourceConflictException, ResourceNotFoundException)
from lambdalet.services import code, paging, records
from lambdalet.services.arns import PARTITION, Scope
from lambdalet.services.deps import Deps
from lambdalet.services.policies import MAX_POLICY_BYTES, PolicyLengthExceededException
from lambdalet.services.validation import constraint_error, description as check_description
from lambdalet.services.views import aws_timestamp, code_sha256_b64
from lambdalet.store import layer_tables

L, LV, LP = layer_tables.layers, layer_tables.layer_versions, layer_tables.layer_version_policies

CODE_URL_TTL_S = 600                       # as GetFunction's Code.Location (api/code_download.py)
MAX_LIST_ITEMS = 50                        # the model's MaxLayerListItems
MAX_VERSION = 2 ** 53                      # larger numbers exist nowhere (and overflow SQL integers)
GET_ACTION = "lambda:GetLayerVersion"      # the one action a layer version policy can grant
ARCHITECTURES = ("x86_64", "arm64")
NOT_FOUND = "The resource you requested does not exist."
NO_POLICY = "No policy is associated with the given resource."
REVISION_MISMATCH = ("The Revision Id provided does not match the latest Revision Id. "
                     "Call the GetLayerPolicy API to retrieve the latest Revision Id")

_REGION = r"(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d"
_LAYER_ARN = (rf"arn:(?:aws[a-zA-Z-]*)?:lambda:(?P<region>{_REGION}):(?P<account>\d{{12}}):"
              r"layer:(?P<name>[a-zA-Z0-9_-]{1,140})")
_LAYER_ARN_RE = re.compile(_LAYER_ARN)
_VERSION_ARN_RE = re.compile(_LAYER_ARN + r":(?P<version>[0-9]+)")
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,140}")
NAME_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
                r"layer:[a-zA-Z0-9-_]{1,140}|[a-zA-Z0-9-_]{1,140})")
VERSION_ARN_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
                       r"layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)")
_SID_RE = re.compile(r"[a-zA-Z0-9_-]{1,100}")
_PRINCIPAL_RE = re.compile(r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root")
_ORG_RE = re.compile(r"o-[a-z0-9]{10,32}")


# ---------------------------------------------------------------- names, ARNs, rows


def layer_arn(scope: Scope, name: str) -> str:
    return f"arn:{PARTITION}:lambda:{scope.region}:{scope.account_id}:layer:{name}"


def layer_version_arn(scope: Scope, name: str, version: int) -> str:
    return f"{layer_arn(scope, name)}:{version}"


def _denied(ctx: RequestContext, action: str, resource: str) -> AccessDeniedException:
    return AccessDeniedException(f"User: {ctx.caller.principal_arn} is not authorized to perform: {action} on "
                                 f"resource: {resource} because no resource-based policy allows the {action} action")


def _layer_ref(ctx: RequestContext, value, action: str) -> tuple[Scope, str]:
    """LayerName (a name or a layer ARN) -> (the layer's scope, its name). Another account's layer
    arrives here only when authorization allowed it and switched ctx to that account
    (iam/request_map.py); a name still pointing elsewhere was not allowed."""
    scope = Scope.of(ctx)
    if not isinstance(value, str) or not value:
        raise constraint_error(value, "layerName", "Member must have length greater than or equal to 1")
    if _NAME_RE.fullmatch(value):
        return scope, value
    m = _LAYER_ARN_RE.fullmatch(value)
    if m is None:
        raise constraint_error(value, "layerName", f"Member must satisfy regular expression pattern: {NAME_PATTERN}")
    if m["account"] != scope.account_id:
        raise _denied(ctx, action, value)
    if m["region"] != scope.region:
        raise ResourceNotFoundException(f"Layers from '{m['region']}' are not reachable in this region "
                                        f"('{scope.region}')")
    return scope, m["name"]


def _version_number(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint_error(value, "versionNumber", "Member must be a number")
    if value < 1:
        raise InvalidParameterValueException("Layer Version Cannot be less than 1")
    return value


def _find_layer(conn, scope: Scope, name: str):
    return conn.execute(sa.select(L).where(L.c.account_id == scope.account_id, L.c.region == scope.region,
                                           L.c.name == name)).first()


def _find_version(conn, scope: Scope, name: str, version: int):
    if version > MAX_VERSION:
        return None
    return conn.execute(sa.select(LV).select_from(LV.join(L, L.c.id == LV.c.layer_id))
                        .where(L.c.account_id == scope.account_id, L.c.region == scope.region, L.c.name == name,
                               LV.c.version == version)).first()


def _require_version(conn, scope: Scope, name: str, version: int):
    row = _find_version(conn, scope, name, version)
    if row is None:
        raise ResourceNotFoundException(f"Layer version {layer_version_arn(scope, name, version)} does not exist.")
    return row


def _policy_row(conn, layer_version_id: int):
    return conn.execute(sa.select(LP).where(LP.c.layer_version_id == layer_version_id)).first()


def layer_policies(db):
    """For iam/request_map.py: (region, account, layer name, version) -> that layer version's policy
    document, or None (no such version, or no policy)."""
    def policy(region: str, account_id: str, name: str, version: int) -> str | None:
        with db.read() as conn:
            row = _find_version(conn, Scope(account_id, region), name, version)
            found = _policy_row(conn, row.id) if row is not None else None
        return found.document if found is not None else None
    return policy


# ---------------------------------------------------------------- response shapes


def _item(scope: Scope, name: str, row) -> dict:
    """LayerVersionsListItem (and the common part of GetLayerVersion's output)."""
    out = {"LayerVersionArn": layer_version_arn(scope, name, row.version), "Version": row.version,
           "Description": row.description or "", "CreatedDate": aws_timestamp(row.created_at)}
    if row.compatible_runtimes is not None:
        out["CompatibleRuntimes"] = json.loads(row.compatible_runtimes)
    if row.compatible_architectures is not None:
        out["CompatibleArchitectures"] = json.loads(row.compatible_architectures)
    if row.license_info is not None:
        out["LicenseInfo"] = row.license_info
    return out


def _location(deps: Deps, ctx: RequestContext, scope: Scope, row) -> str:
    """A download URL like GetFunction's Code.Location (same key and token, served by api/code_download.py),
    honoured while this layer version exists."""
    token = make_token(deps.keyring.derive_key("code-url"),
                       {"a": scope.account_id, "s": row.code_sha256, "l": row.id}, CODE_URL_TTL_S)
    return f"{ctx.base_url}/_lambdalet/code?token={token}"


def _full(deps: Deps, ctx: RequestContext, scope: Scope, name: str, row) -> dict:
    out = _item(scope, name, row)
    out["LayerArn"] = layer_arn(scope, name)
    out["Content"] = {"Location": _location(deps, ctx, scope, row),
                      "CodeSha256": code_sha256_b64(row.code_sha256), "CodeSize": row.code_size}
    return out


# ---------------------------------------------------------------- validation


@lru_cache(maxsize=1)
def _runtime_enum() -> tuple[str, ...]:
    """The model's Runtime enum: layers may declare any runtime AWS knows, run here or not."""
    import botocore.session
    return tuple(botocore.session.get_session().get_service_model("lambda").shape_for("Runtime").enum)


def _runtime_filter(value) -> str | None:
    if value is not None and value not in _runtime_enum():
        raise constraint_error(value, "compatibleRuntime",
                               f"Member must satisfy enum value set: [{', '.join(_runtime_enum())}]")
    return value


def _architecture_filter(value) -> str | None:
    if value is not None and value not in ARCHITECTURES:
        raise constraint_error(value, "compatibleArchitecture", "Member must satisfy enum value set: [x86_64, arm64]")
    return value


def _enum_list(value, field: str, allowed: tuple[str, ...], max_len: int) -> str | None:
    """-> JSON text of the list, or None when not given."""
    if value is None:
        return None
    shown = "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else value
    if not isinstance(value, list):
        raise constraint_error(value, field, "Member must be a list")
    if len(value) > max_len:
        raise constraint_error(shown, field, f"Member must have length less than or equal to {max_len}")
    if any(v not in allowed for v in value):
        raise constraint_error(shown, field, "Member must satisfy constraint: [Member must satisfy enum value set: "
                                             f"[{', '.join(allowed)}]]")
    return json.dumps(list(value))


def _license(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 512:
        raise constraint_error(value, "licenseInfo", "Member must have length less than or equal to 512")
    return value


def _zip_from(content) -> bytes:
    content = content or {}
    if not isinstance(content, dict):
        raise InvalidParameterValueException("Content must be an object with a ZipFile.")
    if any(content.get(m) for m in ("S3Bucket", "S3Key", "S3ObjectVersion")):
        raise InvalidParameterValueException("lambdalet accepts layer content only as a .zip upload in "
                                             "Content.ZipFile (S3Bucket/S3Key/S3ObjectVersion are not supported).")
    data = content.get("ZipFile")
    if data is None:
        raise InvalidParameterValueException("Please provide a source for the layer content: Content.ZipFile is "
                                             "required (lambdalet accepts zip uploads only).")
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidParameterValueException("Content.ZipFile must be binary data.")
    return bytes(data)


def _layer_usage(conn, scope: Scope) -> int:
    total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(LV.c.code_size), 0))
                         .select_from(LV.join(L, L.c.id == LV.c.layer_id))
                         .where(L.c.account_id == scope.account_id, L.c.region == scope.region)).scalar()
    return int(total or 0)


# ---------------------------------------------------------------- layer versions


def publish_layer_version(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, name = _layer_ref(ctx, params.get("LayerName"), "lambda:PublishLayerVersion")
    desc = check_description(params.get("Description", ""))
    license_info = _license(params.get("LicenseInfo"))
    runtimes = _enum_list(params.get("CompatibleRuntimes"), "compatibleRuntimes", _runtime_enum(), 15)
    archs = _enum_list(params.get("CompatibleArchitectures"), "compatibleArchitectures", ARCHITECTURES, 2)
    data = _zip_from(params.get("Content"))
    check_zipped_size(len(data), "PublishLayerVersion")
    unzipped = inspect_zip(data, operation="PublishLayerVersion").unzipped_size   # refuses hostile zips
    sha = hashlib.sha256(data).hexdigest()
    with deps.db.read() as conn:      # layers count toward the account's code storage, as in AWS
        if code.code_usage(conn, scope) + _layer_usage(conn, scope) + len(data) > code.TOTAL_CODE_SIZE_LIMIT:
            raise CodeStorageExceededException("Code storage limit exceeded.")
    deps.blobs.put(data)              # before the row that references it (see services/functions.py)
    now = deps.clock()
    with deps.db.begin() as conn:
        if _find_layer(conn, scope, name) is None:
            try:
                with conn.begin_nested():
                    conn.execute(L.insert().values(account_id=scope.account_id, region=scope.region, name=name,
                                                   next_version=1, created_at=now))
            except sa.exc.IntegrityError:
                pass        # a concurrent first publish made it (PostgreSQL; SQLite serializes writers)
        layer = conn.execute(sa.select(L.c.id, L.c.next_version).where(
            L.c.account_id == scope.account_id, L.c.region == scope.region, L.c.name == name).with_for_update()).one()
        conn.execute(L.update().where(L.c.id == layer.id).values(next_version=layer.next_version + 1))
        conn.execute(LV.insert().values(
            layer_id=layer.id, version=layer.next_version, description=desc, license_info=license_info,
            compatible_runtimes=runtimes, compatible_architectures=archs, code_sha256=sha, code_size=len(data),
            unzipped_size=unzipped, created_at=now))
        row = _find_version(conn, scope, name, layer.next_version)
    return _full(deps, ctx, scope, name, row)


def get_layer_version(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, name = _layer_ref(ctx, params.get("LayerName"), GET_ACTION)
    number = _version_number(params.get("VersionNumber"))
    with deps.db.read() as conn:
        row = _find_version(conn, scope, name, number)
    if row is None:
        raise ResourceNotFoundException(NOT_FOUND)
    return _full(deps, ctx, scope, name, row)


def get_layer_version_by_arn(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    arn = params.get("Arn")
    m = _VERSION_ARN_RE.fullmatch(arn) if isinstance(arn, str) else None
    if m is None:
        if isinstance(arn, str) and re.fullmatch(VERSION_ARN_PATTERN, arn):
            raise ResourceNotFoundException(NOT_FOUND)        # an AWS-managed layer: none exist here
        raise constraint_error(arn, "arn", f"Member must satisfy regular expression pattern: {VERSION_ARN_PATTERN}")
    version = int(m["version"])
    return get_layer_version(deps, ctx, {"LayerName": arn[:-len(m["version"]) - 1], "VersionNumber": version})


def _matches(row, runtime: str | None, architecture: str | None) -> bool:
    if runtime is not None and runtime not in json.loads(row.compatible_runtimes or "[]"):
        return False
    return architecture is None or architecture in json.loads(row.compatible_architectures or "[]")


def list_layers(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    """Each layer with its newest version matching the filters (layers with none are left out)."""
    scope = Scope.of(ctx)
    runtime = _runtime_filter(params.get("CompatibleRuntime"))
    arch = _architecture_filter(params.get("CompatibleArchitecture"))
    limit = paging.max_items(params, MAX_LIST_ITEMS, MAX_LIST_ITEMS)
    after = paging.decode_marker(params.get("Marker"), "layers")
    q = (sa.select(LV, L.c.name.label("layer_name")).select_from(LV.join(L, L.c.id == LV.c.layer_id))
         .where(L.c.account_id == scope.account_id, L.c.region == scope.region))
    if after is not None:
        if len(after) != 1 or not isinstance(after[0], str):
            raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")
        q = q.where(L.c.name > after[0])
    with deps.db.read() as conn:
        rows = conn.execute(q.order_by(L.c.name, LV.c.version.desc())).all()
    latest: dict[str, object] = {}
    for r in rows:                     # newest first within each layer: the first match is the latest
        if r.layer_name not in latest and _matches(r, runtime, arch):
            latest[r.layer_name] = r
    page, marker = paging.page(list(latest.items())[:limit + 1], limit, "layers", lambda item: [item[0]])
    out = {"Layers": [{"LayerName": n, "LayerArn": layer_arn(scope, n), "LatestMatchingVersion": _item(scope, n, r)}
                      for n, r in page]}
    if marker:
        out["NextMarker"] = marker
    return out


def list_layer_versions(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    """A layer's versions, newest first; an unknown layer has none (not an error, as in AWS)."""
    scope, name = _layer_ref(ctx, params.get("LayerName"), "lambda:ListLayerVersions")
    runtime = _runtime_filter(params.get("CompatibleRuntime"))
    arch = _architecture_filter(params.get("CompatibleArchitecture"))
    limit = paging.max_items(params, MAX_LIST_ITEMS, MAX_LIST_ITEMS)
    after = paging.decode_marker(params.get("Marker"), "layer-versions")
    q = (sa.select(LV).select_from(LV.join(L, L.c.id == LV.c.layer_id))
         .where(L.c.account_id == scope.account_id, L.c.region == scope.region, L.c.name == name))
    if after is not None:
        if len(after) != 1 or isinstance(after[0], bool) or not isinstance(after[0], int):
            raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")
        q = q.where(LV.c.version < after[0])
    with deps.db.read() as conn:
        rows = [r for r in conn.execute(q.order_by(LV.c.version.desc())).all() if _matches(r, runtime, arch)]
    page, marker = paging.page(rows[:limit + 1], limit, "layer-versions", lambda r: [r.version])
    out = {"LayerVersions": [_item(scope, name, r) for r in page]}
    if marker:
        out["NextMarker"] = marker
    return out


def delete_layer_version(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    """Idempotent, as in AWS. The blob stays: function versions that use the layer keep running."""
    scope, name = _layer_ref(ctx, params.get("LayerName"), "lambda:DeleteLayerVersion")
    number = _version_number(params.get("VersionNumber"))
    with deps.db.begin() as conn:
        row = _find_version(conn, scope, name, number)
        if row is not None:
            conn.execute(LP.delete().where(LP.c.layer_version_id == row.id))
            conn.execute(LV.delete().where(LV.c.id == row.id))
    return {}


# ---------------------------------------------------------------- layer version policies


def _statement(params: dict, resource_arn: str) -> dict:
    sid = params.get("StatementId")
    if not isinstance(sid, str) or not _SID_RE.fullmatch(sid):
        raise constraint_error(sid, "statementId", "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
    action = params.get("Action")
    if action != GET_ACTION:
        raise constraint_error(action, "action", f"Member must satisfy regular expression pattern: {GET_ACTION}")
    principal = params.get("Principal")
    if not isinstance(principal, str) or not _PRINCIPAL_RE.fullmatch(principal):
        raise constraint_error(principal, "principal", "Member must satisfy regular expression pattern: "
                                                       r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root")
    org = params.get("OrganizationId")
    if org is not None and (not isinstance(org, str) or not _ORG_RE.fullmatch(org)):
        raise constraint_error(org, "organizationId", "Member must satisfy regular expression pattern: "
                                                      "o-[a-z0-9]{10,32}")
    if principal != "*":
        principal = {"AWS": principal if principal.startswith("arn:") else f"arn:aws:iam::{principal}:root"}
    st = {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": GET_ACTION, "Resource": resource_arn}
    if org:
        st["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": org}}
    return st


def _check_revision(row, params: dict) -> None:
    wanted = params.get("RevisionId")
    if wanted and (row is None or row.revision_id != wanted):
        raise PreconditionFailedException(REVISION_MISMATCH)


def add_layer_version_permission(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, name = _layer_ref(ctx, params.get("LayerName"), "lambda:AddLayerVersionPermission")
    number = _version_number(params.get("VersionNumber"))
    statement = _statement(params, layer_version_arn(scope, name, number))
    with deps.db.begin() as conn:
        version = _require_version(conn, scope, name, number)
        row = _policy_row(conn, version.id)
        _check_revision(row, params)
        doc = json.loads(row.document) if row else {"Version": "2012-10-17", "Id": "default", "Statement": []}
        if any(s.get("Sid") == statement["Sid"] for s in doc["Statement"]):
            raise ResourceConflictException(f"The statement id ({statement['Sid']}) provided already exists. Please "
                                            "provide a new statement id, or remove the existing statement.")
        doc["Statement"].append(statement)
        text = json.dumps(doc, separators=(",", ":"))
        if len(text.encode()) > MAX_POLICY_BYTES:
            raise PolicyLengthExceededException(f"The final policy size ({len(text.encode())}) is bigger than the "
                                                f"limit ({MAX_POLICY_BYTES}).")
        revision = records.new_revision()
        values = {"document": text, "revision_id": revision, "updated_at": time.time()}
        if row is None:
            conn.execute(LP.insert().values(layer_version_id=version.id, **values))
        else:
            conn.execute(LP.update().where(LP.c.layer_version_id == version.id).values(**values))
    return {"Statement": json.dumps(statement, separators=(",", ":")), "RevisionId": revision}


def remove_layer_version_permission(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, name = _layer_ref(ctx, params.get("LayerName"), "lambda:RemoveLayerVersionPermission")
    number = _version_number(params.get("VersionNumber"))
    sid = params.get("StatementId")
    with deps.db.begin() as conn:
        version = _require_version(conn, scope, name, number)
        row = _policy_row(conn, version.id)
        _check_revision(row, params)
        doc = json.loads(row.document) if row else {"Statement": []}
        kept = [s for s in doc["Statement"] if s.get("Sid") != sid]
        if row is None or len(kept) == len(doc["Statement"]):
            raise ResourceNotFoundException(f"Statement {sid} is not found in resource policy.")
        if kept:
            doc["Statement"] = kept
            conn.execute(LP.update().where(LP.c.layer_version_id == version.id).values(
                document=json.dumps(doc, separators=(",", ":")), revision_id=records.new_revision(),
                updated_at=time.time()))
        else:
            conn.execute(LP.delete().where(LP.c.layer_version_id == version.id))
    return {}


def get_layer_version_policy(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, name = _layer_ref(ctx, params.get("LayerName"), "lambda:GetLayerVersionPolicy")
    number = _version_number(params.get("VersionNumber"))
    with deps.db.read() as conn:
        version = _require_version(conn, scope, name, number)
        row = _policy_row(conn, version.id)
    if row is None:
        raise ResourceNotFoundException(NO_POLICY)
    return {"Policy": row.document, "RevisionId": row.revision_id}


# ---------------------------------------------------------------- functions' Layers


def check_total_size(function_unzipped: int, layers: list[dict]) -> None:
    """AWS's limit: a function's code and all its layers, unzipped, within 250 MB."""
    in_layers = sum(int(layer["UnzippedSize"]) for layer in layers)
    if in_layers > UNZIPPED_LIMIT:
        raise InvalidParameterValueException(f"Layers consume more than the available size of {UNZIPPED_LIMIT} bytes")
    total = function_unzipped + in_layers
    if total > UNZIPPED_LIMIT:
        raise InvalidParameterValueException(f"Function code combined with layers exceeds the maximum allowed size "
                                             f"of {UNZIPPED_LIMIT} bytes. The actual size is {total} bytes.")


def check_code_fits(cfg: dict, data: bytes) -> None:
    """UpdateFunctionCode: the new package and the function's current layers stay within the limit."""
    if cfg.get("Layers"):
        check_total_size(declared_size(data), cfg["Layers"])


def digests(cfg: dict) -> tuple[str, ...]:
    """The blob digests of a function configuration's layers, in order (for the data plane)."""
    return tuple(layer["Sha256"] for layer in cfg.get("Layers") or ())


def _check_readable(deps: Deps, ctx: RequestContext, arn: str, owner: str, policy: str | None) -> None:
    """The caller may use the layer version: `lambda:GetLayerVersion` on it, decided like an API call
    (its identity policies, and for another account's layer, that layer version's policy too)."""
    if deps.authorizer is None:            # unit harnesses without IAM: only the caller's own layers
        if owner != ctx.caller.account_id:
            raise _denied(ctx, GET_ACTION, arn)
        return
    decision = deps.authorizer.authorize(ctx.caller, GET_ACTION, arn, request_context(ctx), resource_policy=policy,
                                         resource_account=owner)
    if not decision.allowed:
        raise AccessDeniedException(decision.message(ctx.caller.principal_arn, GET_ACTION, arn))


def _resolve(deps: Deps, ctx: RequestContext, conn, scope: Scope, given: str) -> dict:
    m = _VERSION_ARN_RE.fullmatch(given)
    if m is None:                          # an AWS-managed (awslayer) ARN: none exist here
        raise InvalidParameterValueException(f"Layer version {given} does not exist.")
    owner = Scope(m["account"], m["region"])
    if owner.region != scope.region:
        raise InvalidParameterValueException("Layers are not in the same region as the function. Layers are "
                                             f"expected to be in region {scope.region}.")
    arn = layer_version_arn(owner, m["name"], int(m["version"]))
    row = _find_version(conn, owner, m["name"], int(m["version"]))
    own = owner.account_id == ctx.caller.account_id
    if row is None and own:                # another account's missing layer is only ever "denied"
        raise InvalidParameterValueException(f"Layer version {arn} does not exist.")
    policy = _policy_row(conn, row.id) if row is not None else None
    _check_readable(deps, ctx, arn, owner.account_id, policy.document if policy else None)
    if row is None:
        raise InvalidParameterValueException(f"Layer version {arn} does not exist.")
    return {"Arn": arn, "CodeSize": row.code_size, "Sha256": row.code_sha256, "UnzippedSize": row.unzipped_size}


def attach(deps: Deps, ctx: RequestContext, conn, scope: Scope, cfg: dict, params: dict,
           function_code: Callable[[], bytes]) -> None:
    """Create/UpdateFunctionConfiguration with `Layers` (syntax already checked by validation.py):
    each must exist and be usable by the caller, no two versions of one layer, and function plus
    layers within 250 MB unzipped; then cfg["Layers"] holds them in order (an empty list removes
    them). `function_code` gives the function's package, read only when there are layers to weigh."""
    if "Layers" not in params:
        return
    resolved, seen = [], {}
    for given in params["Layers"] or []:
        entry = _resolve(deps, ctx, conn, scope, given)
        base = entry["Arn"].rsplit(":", 1)[0]
        if base in seen:
            raise InvalidParameterValueException(
                "Two different versions of the same layer are not allowed to be referenced in the same function. "
                f"{seen[base]} and {given} are versions of the same layer.")
        seen[base] = given
        resolved.append(entry)
    if not resolved:
        cfg.pop("Layers", None)
        return
    check_total_size(declared_size(function_code()), resolved)
    cfg["Layers"] = resolved
