"""Data-plane read API: (account, function name or ARN, qualifier) -> one immutable version record.

The invoke path needs everything that defines an execution environment in one frozen value:
configuration, decrypted environment, and the code digest to fetch from the blob store. When the
qualifier is an alias, the alias's primary version is returned with `routing` filled in; the
caller picks the version per invocation (`AliasRouting.pick`) and resolves it if it differs.
"""
from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from lambdalet.services import layers, records, states, tenancy
from lambdalet.services.arns import Scope, function_arn, merge_qualifier, parse_function_ref
from lambdalet.services.envvars import open_env
from lambdalet.services.views import code_sha256_b64


@dataclass(frozen=True)
class AliasRouting:
    alias: str
    function_version: str                       # primary
    additional_version: str | None = None
    additional_weight: float = 0.0
    revision_id: str = ""

    def pick(self, rand: float | None = None) -> str:
        """The version one invocation runs: the additional one with probability additional_weight."""
        if self.additional_version is None:
            return self.function_version
        r = random.random() if rand is None else rand
        return self.additional_version if r < self.additional_weight else self.function_version


@dataclass(frozen=True)
class FunctionVersion:
    account_id: str
    region: str
    function_id: str                            # internal id (a recreated function gets a new one)
    function_name: str
    function_arn: str                           # unqualified
    version: str                                # "$LATEST" or "1", "2", ...
    version_arn: str                            # qualified by the version
    revision_id: str
    runtime: str | None
    handler: str | None
    role: str
    description: str
    memory_size: int
    timeout: int
    ephemeral_storage_mb: int
    architectures: tuple[str, ...]
    tracing_mode: str
    log_format: str
    log_group: str
    kms_key_arn: str | None
    dead_letter_target_arn: str | None
    code_sha256_hex: str
    code_size: int
    last_modified: float
    state: str
    reserved_concurrency: int | None
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    routing: AliasRouting | None = None         # set when resolved through an alias
    layers: tuple[str, ...] = ()                # blob digests of its layers, in order (services/layers.py)
    code_kms_key_arn: str | None = None         # SourceKMSKeyArn the code is sealed under (services/code_kms.py)
    app_log_level: str = ""                     # LoggingConfig levels (JSON format only)
    system_log_level: str = ""
    tenant_isolated: bool = False               # TenancyConfig PER_TENANT (services/tenancy.py)
    recursive_loop: str | None = None           # PutFunctionRecursionConfig; None: Terminate (services/recursion.py)

    @property
    def code_sha256(self) -> str:
        """AWS's CodeSha256 (base64 of the digest)."""
        return code_sha256_b64(self.code_sha256_hex)


class FunctionResolver:
    def __init__(self, db, keyring, settings, *, kms=None):
        self._db, self._keyring, self._settings = db, keyring, settings
        self._generation = itertools.count(1)
        self.generation = 0
        self.kms = kms       # kms.FunctionKeys: refuses disabled/deleted KMS keys (None: unit harnesses)

    def invalidate(self) -> None:
        """Called after every control-plane write: readers that cache resolutions compare
        `generation` and drop what they hold. (One process owns writes in the embedded mode;
        a multi-node deployment needs a shared change feed instead.)"""
        self.generation = next(self._generation)

    def resolve_version(self, account_id: str, function_name: str, qualifier: str | None = None,
                        region: str | None = None) -> FunctionVersion:
        """ResourceNotFoundException (AWS wording) if the function, version or alias does not exist."""
        scope = Scope(account_id, region or self._settings.region)
        ref = merge_qualifier(parse_function_ref(scope, function_name, action="InvokeFunction"), qualifier)
        with self._db.read() as conn:
            fn, row, alias = records.resolve(conn, scope, ref.name, ref.qualifier)
        states.require_invocable(row.state)      # Pending: ResourceConflictException, as on AWS
        cfg = records.config_of(row)
        routing = None
        if alias is not None:
            weights = json.loads(alias.routing or "{}")
            extra, weight = next(iter(weights.items()), (None, 0.0))
            routing = AliasRouting(alias.name, alias.function_version, extra, float(weight), alias.revision_id)
        logging = cfg.get("LoggingConfig", {})
        return FunctionVersion(
            account_id=account_id, region=scope.region, function_id=fn.id, function_name=fn.name,
            function_arn=function_arn(scope.region, account_id, fn.name),
            version=row.version, version_arn=function_arn(scope.region, account_id, fn.name, row.version),
            revision_id=row.revision_id, runtime=cfg.get("Runtime"), handler=cfg.get("Handler"),
            role=cfg.get("Role", ""), description=cfg.get("Description", ""),
            memory_size=cfg.get("MemorySize", 128), timeout=cfg.get("Timeout", 3),
            ephemeral_storage_mb=cfg.get("EphemeralStorage", {}).get("Size", 512),
            architectures=tuple(cfg.get("Architectures", ["x86_64"])),
            tracing_mode=cfg.get("TracingConfig", {}).get("Mode", "PassThrough"),
            log_format=logging.get("LogFormat", "Text"), log_group=logging.get("LogGroup", f"/aws/lambda/{fn.name}"),
            kms_key_arn=cfg.get("KMSKeyArn"), dead_letter_target_arn=cfg.get("DeadLetterConfig", {}).get("TargetArn"),
            code_sha256_hex=row.code_sha256, code_size=row.code_size, last_modified=row.last_modified,
            state=row.state, reserved_concurrency=fn.reserved_concurrency,
            environment=MappingProxyType(open_env(self._keyring, fn.id, row.version, row.env_sealed, kms=self.kms)),
            routing=routing, code_kms_key_arn=cfg.get("SourceKMSKeyArn"), layers=layers.digests(cfg),
            app_log_level=logging.get("ApplicationLogLevel", ""), system_log_level=logging.get("SystemLogLevel", ""),
            tenant_isolated=tenancy.is_isolated(cfg), recursive_loop=fn.recursive_loop)
