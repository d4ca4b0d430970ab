"""Functions: CreateFunction, GetFunction(Configuration), ListFunctions, UpdateFunctionCode,
UpdateFunctionConfiguration, DeleteFunction.

Creation answers State Pending and updates LastUpdateStatus InProgress, as AWS does; the package
was checked before the answer, so the transition to Active / Successful follows within tens of
milliseconds or at the next read (services/states.py), and boto3's function_active_v2 and
function_updated_v2 waiters pass at their first poll. Each operation is one
transaction; the code blob is written after every check has passed and before the rows that
reference it, so a crash leaves at worst an unreferenced blob (for a later GC), never a dangling row.
"""
from __future__ import annotations

import uuid
from typing import NamedTuple

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import InvalidParameterValueException, ResourceConflictException
from lambdalet.services import code, code_kms, code_signing, configuration, paging, records, tags, versions, views
from lambdalet.services import layers, states
from lambdalet.services.arns import Scope, merge_qualifier, parse_function_ref, require_unqualified
from lambdalet.services.deps import Deps
from lambdalet.services.envvars import open_env, seal_env
from lambdalet.services.validation import architectures, boolean, constraint_error
from lambdalet.services.validation import revision_id as check_revision

F, V = records.F, records.V
CODE_URL_TTL_S = 600


class _FunctionKey(NamedTuple):
    """The two function columns a configuration view needs, for joined list rows."""
    id: str
    name: str


def _ref(ctx: RequestContext, params: dict, action: str):
    scope = Scope.of(ctx)
    return scope, parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn,
                                     action=action)


def _flag(params: dict, member: str) -> bool:
    return boolean(params[member], member[0].lower() + member[1:]) if params.get(member) is not None else False


def _check_role(deps: Deps, ctx: RequestContext, scope: Scope, name: str, role: str) -> None:
    """The caller may pass the role (iam:PassRole) and Lambda can assume it (invoke/credentials.py)."""
    if deps.roles is not None:
        deps.roles.check(ctx, scope.function_arn(name), role)


def _check_kms_key(deps: Deps, ctx: RequestContext, cfg: dict) -> None:
    """A KMSKeyArn must name a key of the caller's that is Enabled (Lambda's KMS*Exception otherwise)."""
    if deps.kms is not None and cfg.get("KMSKeyArn"):
        deps.kms.check_configurable(ctx, cfg["KMSKeyArn"])


def _view(deps: Deps, scope: Scope, fn, row, **shape) -> dict:
    return views.configuration(scope, fn, row, open_env(deps.keyring, fn.id, row.version, row.env_sealed), **shape)


def _started(deps: Deps, function_id: str) -> None:
    """A state transition began with the write just committed (services/states.py)."""
    if deps.transitions is not None:
        deps.transitions.started(function_id)


def settle_if_needed(deps: Deps, function_id: str, row) -> bool:
    """Reads see a transition complete: the package was checked before the write answered."""
    if not states.unsettled(row):
        return False
    if deps.transitions is not None:
        return deps.transitions.settle_now(function_id)
    with deps.db.begin() as conn:
        return states.settle(conn, function_id)


def create_function(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, ref = _ref(ctx, params, "CreateFunction")
    name = require_unqualified(ref)
    if params.get("Role") is None:
        raise constraint_error(None, "role", "Member must not be null")
    cfg, env = configuration.apply(params, configuration.defaults(name), deps.runtimes, creating=True,
                                   today=deps.today())
    _check_role(deps, ctx, scope, name, cfg["Role"])
    _check_kms_key(deps, ctx, cfg)
    source_key = code_kms.source_key_arn((params.get("Code") or {}).get("SourceKMSKeyArn"), "code.sourceKMSKeyArn")
    code_kms.check(deps, ctx, source_key)
    code_kms.record(cfg, source_key)
    new_tags = tags.validate_tags(params.get("Tags"))
    publish = _flag(params, "Publish")
    data = code.zip_from(params.get("Code"), where="Code.ZipFile")
    sha = code.check_package(data, "CreateFunction")
    signed = code_signing.verify_create(deps, scope, name, params, data, cfg)   # refuses before any write
    with deps.db.read() as conn:           # refuse duplicates before writing any blob
        if records.find_function(conn, scope, name):
            raise ResourceConflictException(f"Function already exist: {name}")
        code.check_storage(conn, scope, len(data))
        layers.attach(deps, ctx, conn, scope, cfg, params, lambda: data)   # Layers: exist, usable, <= 250 MB
    deps.blobs.put(data, code_kms.sealer(deps, source_key, scope.function_arn(name)))
    now = deps.clock()
    with deps.db.begin() as conn:
        if records.find_function(conn, scope, name):       # lost a race with a concurrent create
            raise ResourceConflictException(f"Function already exist: {name}")
        records.ensure_account(conn, scope.account_id)
        fid = str(uuid.uuid4())
        conn.execute(F.insert().values(id=fid, account_id=scope.account_id, region=scope.region, name=name,
                                       created_at=now, next_version=1, reserved_concurrency=None))
        code_signing.attach(deps, conn, fid, signed)
        conn.execute(V.insert().values(
            function_id=fid, version=records.LATEST, version_num=0, config=records.dump_config(cfg),
            env_sealed=seal_env(deps.keyring, fid, records.LATEST, env, cfg.get("KMSKeyArn")),
            code_sha256=sha, code_size=len(data),
            revision_id=records.new_revision(), last_modified=now, state=states.PENDING,
            last_update_status=states.SUCCESSFUL))
        tags.write_tags(conn, scope.function_arn(name), new_tags)
        fn = records.find_function(conn, scope, name)
        row = records.find_version(conn, fid, records.LATEST)
        if publish:       # AWS answers the new version (Version "1", Pending) under the function's ARN
            row = versions.publish(deps, conn, fn, row, state=states.PENDING)
        out = _view(deps, scope, fn, row)
        out["FunctionArn"] = scope.function_arn(name)
    _started(deps, fid)
    return out


def _qualified(ctx: RequestContext, params: dict, action: str):
    scope, ref = _ref(ctx, params, action)
    return scope, merge_qualifier(ref, params.get("Qualifier"))


def _read(deps: Deps, scope: Scope, ref):
    """(function, version row, alias) for a read; a transition in flight completes first."""
    with deps.db.read() as conn:
        fn, row, alias = records.resolve(conn, scope, ref.name, ref.qualifier)
    if states.unsettled(row):
        settle_if_needed(deps, fn.id, row)   # (or the background thread just did: read again either way)
        with deps.db.read() as conn:
            fn, row, alias = records.resolve(conn, scope, ref.name, ref.qualifier)
    return fn, row, alias


def _configuration_for(deps: Deps, scope: Scope, fn, row, alias, qualifier: str | None = None) -> dict:
    out = _view(deps, scope, fn, row, qualified_latest=qualifier == records.LATEST)
    if alias is not None:      # AWS answers an alias with its ARN and the version it points to
        out["FunctionArn"] = scope.function_arn(fn.name, alias.name)
    return out


def get_function(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, ref = _qualified(ctx, params, "GetFunction")
    fn, row, alias = _read(deps, scope, ref)
    out = {"Configuration": _configuration_for(deps, scope, fn, row, alias, ref.qualifier)}
    with deps.db.read() as conn:
        fn_tags = tags.read_tags(conn, scope.function_arn(fn.name))
    # After the read: with a SourceKMSKeyArn this asks KMS (its own read) whether the caller may decrypt.
    out["Code"] = code_kms.code_section(deps, ctx, scope.function_arn(fn.name), row.code_sha256,
                                        records.config_of(row), CODE_URL_TTL_S, function_id=fn.id,
                                        version=row.version)
    if fn_tags:
        out["Tags"] = fn_tags
    if fn.reserved_concurrency is not None:
        out["Concurrency"] = {"ReservedConcurrentExecutions": fn.reserved_concurrency}
    return out


def get_function_configuration(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, ref = _qualified(ctx, params, "GetFunctionConfiguration")
    fn, row, alias = _read(deps, scope, ref)
    return _configuration_for(deps, scope, fn, row, alias, ref.qualifier)


def list_functions(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope = Scope.of(ctx)
    every = params.get("FunctionVersion")
    if every not in (None, "ALL"):
        raise constraint_error(every, "functionVersion", "Member must satisfy enum value set: [ALL]")
    limit = paging.max_items(params)
    after = paging.decode_marker(params.get("Marker"), "functions")
    if params.get("MasterRegion") is not None:
        if every != "ALL":
            raise InvalidParameterValueException("FunctionVersion must be ALL when MasterRegion is specified.")
        return {"Functions": []}           # no Lambda@Edge replicas exist here
    q = (sa.select(V, F.c.name.label("function_name")).select_from(V.join(F, V.c.function_id == F.c.id))
         .where(F.c.account_id == scope.account_id, F.c.region == scope.region))
    if every is None:
        q = q.where(V.c.version == records.LATEST)
    if after is not None:
        if len(after) != 2 or not isinstance(after[0], str) or not isinstance(after[1], int):
            raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")
        q = q.where(sa.or_(F.c.name > after[0], sa.and_(F.c.name == after[0], V.c.version_num > after[1])))
    with deps.db.read() as conn:
        rows = conn.execute(q.order_by(F.c.name, V.c.version_num).limit(limit + 1)).all()
    rows, marker = paging.page(rows, limit, "functions", lambda r: [r.function_name, r.version_num])
    out = {"Functions": [_view(deps, scope, _FunctionKey(r.function_id, r.function_name), r, listed=True,
                               qualified_latest=every == "ALL")
                         for r in rows]}
    if marker:
        out["NextMarker"] = marker
    return out


def _latest_for_update(deps: Deps, ctx: RequestContext, params: dict, action: str):
    scope, ref = _ref(ctx, params, action)
    return scope, require_unqualified(ref, allow_latest=True)


def update_function_code(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, name = _latest_for_update(deps, ctx, params, "UpdateFunctionCode")
    if params.get("PublishTo") or params.get("S3ObjectStorageMode"):
        raise InvalidParameterValueException("lambdalet does not support PublishTo or S3ObjectStorageMode.")
    source_key = code_kms.source_key_arn(params.get("SourceKMSKeyArn"), "sourceKMSKeyArn")
    publish, dry_run = _flag(params, "Publish"), _flag(params, "DryRun")
    expected_rev = check_revision(params.get("RevisionId"))
    arch = None
    if params.get("Architectures") is not None:
        arch = architectures(params["Architectures"])
    data = code.zip_from(params, where="ZipFile")
    sha = code.check_package(data, "UpdateFunctionCode")
    code_kms.check(deps, ctx, source_key)
    with deps.db.read() as conn:           # not found / stale revision: refuse before writing a blob
        fn = records.require_function(conn, scope, name)
        latest = records.find_version(conn, fn.id, records.LATEST)
        versions.check_revision_id(expected_rev, latest)
        if arch:                           # the host's own (or emulated) architecture only
            deps.runtimes.check_architecture(arch, records.config_of(latest).get("Runtime"))
        code.check_storage(conn, scope, len(data))
        layers.check_code_fits(records.config_of(latest), data)     # with the function's layers, <= 250 MB
        signed = code_signing.verify_update(deps, conn, scope, fn, data)
    if dry_run:
        out = _view(deps, scope, fn, latest)
        out.update(CodeSha256=views.code_sha256_b64(sha), CodeSize=len(data))
        if arch:
            out["Architectures"] = arch
        return out
    deps.blobs.put(data, code_kms.sealer(deps, source_key, scope.function_arn(name)))
    with deps.db.begin() as conn:
        fn = records.require_function(conn, scope, name)
        latest = records.find_version(conn, fn.id, records.LATEST)
        versions.check_revision_id(expected_rev, latest)
        values = dict(code_sha256=sha, code_size=len(data), revision_id=records.new_revision(),
                      last_modified=deps.clock(), last_update_status=states.IN_PROGRESS)
        cfg = records.config_of(latest)
        if cfg.get("Runtime"):            # AWS blocks code updates on a blocked runtime; so does a host lacking it
            deps.runtimes.check(cfg["Runtime"], creating=False, today=deps.today())
        if arch:
            cfg["Architectures"] = arch
        code_signing.stamp(conn, fn.id, cfg, signed)    # the signer of this code (or none)
        code_kms.record(cfg, source_key)                 # the key this code is sealed under (or none)
        values["config"] = records.dump_config(cfg)
        conn.execute(V.update().where(V.c.id == latest.id).values(**values))
        row = records.find_version(conn, fn.id, records.LATEST)
        if publish:
            row = versions.publish(deps, conn, fn, row, state=states.PENDING)
        out = _view(deps, scope, fn, row)
    _started(deps, fn.id)
    return out


def update_function_configuration(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope, name = _latest_for_update(deps, ctx, params, "UpdateFunctionConfiguration")
    expected_rev = check_revision(params.get("RevisionId"))
    settable = {k: v for k, v in params.items() if k not in ("FunctionName", "RevisionId")}
    with deps.db.begin() as conn:
        fn = records.require_function(conn, scope, name)
        latest = records.find_version(conn, fn.id, records.LATEST)
        versions.check_revision_id(expected_rev, latest)
        cfg, env = configuration.apply(settable, records.config_of(latest), deps.runtimes, creating=False,
                                       today=deps.today())
        layers.attach(deps, ctx, conn, scope, cfg, settable, lambda: deps.blobs.get(   # read only to weigh layers
            latest.code_sha256, code_kms.sealer(deps, cfg.get(code_kms.CONFIG_MEMBER), scope.function_arn(name))))
        if "Role" in settable:
            _check_role(deps, ctx, scope, name, cfg["Role"])
        values = dict(config=records.dump_config(cfg), revision_id=records.new_revision(),
                      last_modified=deps.clock(), last_update_status=states.IN_PROGRESS)
        key_changed = cfg.get("KMSKeyArn") != records.config_of(latest).get("KMSKeyArn")
        if key_changed or env is not None:
            _check_kms_key(deps, ctx, cfg)
        if key_changed and env is None:   # re-seal the current variables under the new key (or the platform key)
            env = open_env(deps.keyring, fn.id, records.LATEST, latest.env_sealed)
        if env is not None:
            values["env_sealed"] = seal_env(deps.keyring, fn.id, records.LATEST, env, cfg.get("KMSKeyArn"))
        conn.execute(V.update().where(V.c.id == latest.id).values(**values))
        out = _view(deps, scope, fn, records.find_version(conn, fn.id, records.LATEST))
    _started(deps, fn.id)
    return out


def delete_function(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    """Without a qualifier: the function, its versions, aliases and tags (code blobs are left for a
    GC, since another version or function may share the same content-addressed blob)."""
    scope, ref = _qualified(ctx, params, "DeleteFunction")
    with deps.db.begin() as conn:
        fn = records.require_function(conn, scope, ref.name, ref.qualifier)
        if ref.qualifier is not None:
            versions.delete_version(deps, conn, scope, fn, ref.qualifier)
        else:
            conn.execute(records.A.delete().where(records.A.c.function_id == fn.id))
            conn.execute(V.delete().where(V.c.function_id == fn.id))
            tags.delete_all(conn, scope.function_arn(fn.name))
            conn.execute(F.delete().where(F.c.id == fn.id))
    return {"StatusCode": 204}
