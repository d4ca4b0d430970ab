"""LambdaService: the Lambda control plane as one object with a method per operation.

api/ calls `service.<snake_case(Operation)>(ctx, params)` with botocore's input members and
serializes the returned output members. The work lives in one module per resource; this file
only binds them to the platform's components and documents the surface.
"""
from __future__ import annotations

from lambdalet.models.context import RequestContext
from lambdalet.services import account, aliases, concurrency, functions, policies, tags, versions
from lambdalet.services import code_signing, layers, recursion, runtime_management, states
from lambdalet.services.deps import Deps
from lambdalet.services.resolver import FunctionResolver, FunctionVersion
from lambdalet.services.runtimes import RuntimeCatalogue, default_catalogue


class LambdaService:
    def __init__(self, db, keyring, blobs, settings, *, runtimes: RuntimeCatalogue | None = None, clock=None,
                 resolver: FunctionResolver | None = None, kms=None, roles=None, authorizer=None):
        """kms, roles, authorizer: see Deps (None in unit harnesses); resolver: the data plane's view,
        made here unless the platform made it first (KMS key changes invalidate it)."""
        self.deps = Deps(db=db, keyring=keyring, blobs=blobs, settings=settings,
                         runtimes=runtimes or default_catalogue(), roles=roles, kms=kms, authorizer=authorizer)
        if clock is not None:
            self.deps.clock = clock
        self.resolver = resolver or FunctionResolver(db, keyring, settings, kms=kms)
        # A transition gives the version a new RevisionId: the data plane's cached view is stale then.
        self.deps.transitions = states.Transitions(db, on_change=self.resolver.invalidate)
        self.deps.transitions.settle_all()

    # ---- functions ----
    def create_function(self, ctx: RequestContext, params: dict) -> dict:
        result = functions.create_function(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def get_function(self, ctx: RequestContext, params: dict) -> dict:
        return functions.get_function(self.deps, ctx, params)

    def get_function_configuration(self, ctx: RequestContext, params: dict) -> dict:
        return functions.get_function_configuration(self.deps, ctx, params)

    def list_functions(self, ctx: RequestContext, params: dict) -> dict:
        return functions.list_functions(self.deps, ctx, params)

    def update_function_code(self, ctx: RequestContext, params: dict) -> dict:
        result = functions.update_function_code(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def update_function_configuration(self, ctx: RequestContext, params: dict) -> dict:
        result = functions.update_function_configuration(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def delete_function(self, ctx: RequestContext, params: dict) -> dict:
        result = functions.delete_function(self.deps, ctx, params)
        self._prune_policies()       # a deleted version's policy goes with it (the function's cascades)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    # ---- versions ----
    def publish_version(self, ctx: RequestContext, params: dict) -> dict:
        result = versions.publish_version(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def list_versions_by_function(self, ctx: RequestContext, params: dict) -> dict:
        return versions.list_versions_by_function(self.deps, ctx, params)

    # ---- aliases ----
    def create_alias(self, ctx: RequestContext, params: dict) -> dict:
        result = aliases.create_alias(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def get_alias(self, ctx: RequestContext, params: dict) -> dict:
        return aliases.get_alias(self.deps, ctx, params)

    def update_alias(self, ctx: RequestContext, params: dict) -> dict:
        result = aliases.update_alias(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def delete_alias(self, ctx: RequestContext, params: dict) -> dict:
        result = aliases.delete_alias(self.deps, ctx, params)
        self._prune_policies()
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def list_aliases(self, ctx: RequestContext, params: dict) -> dict:
        return aliases.list_aliases(self.deps, ctx, params)

    # ---- tags ----
    def tag_resource(self, ctx: RequestContext, params: dict) -> dict:
        result = tags.tag_resource(self.deps, ctx, params)
        self.resolver.invalidate()   # authorization caches aws:ResourceTag per generation
        return result

    def untag_resource(self, ctx: RequestContext, params: dict) -> dict:
        result = tags.untag_resource(self.deps, ctx, params)
        self.resolver.invalidate()   # authorization caches aws:ResourceTag per generation
        return result

    def list_tags(self, ctx: RequestContext, params: dict) -> dict:
        return tags.list_tags(self.deps, ctx, params)

    # ---- resource-based policies ----
    def add_permission(self, ctx: RequestContext, params: dict) -> dict:
        result = policies.add_permission(self.deps, ctx, params)
        self.resolver.invalidate()   # authorization caches function policies per generation
        return result

    def remove_permission(self, ctx: RequestContext, params: dict) -> dict:
        result = policies.remove_permission(self.deps, ctx, params)
        self.resolver.invalidate()   # authorization caches function policies per generation
        return result

    def get_policy(self, ctx: RequestContext, params: dict) -> dict:
        return policies.get_policy(self.deps, ctx, params)

    def _prune_policies(self) -> None:
        with self.deps.db.begin() as conn:
            policies.prune(conn)

    # ---- concurrency and account ----
    def put_function_concurrency(self, ctx: RequestContext, params: dict) -> dict:
        result = concurrency.put_function_concurrency(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def get_function_concurrency(self, ctx: RequestContext, params: dict) -> dict:
        return concurrency.get_function_concurrency(self.deps, ctx, params)

    def delete_function_concurrency(self, ctx: RequestContext, params: dict) -> dict:
        result = concurrency.delete_function_concurrency(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    # ---- runtime management controls (services/runtime_management.py) ----
    def get_runtime_management_config(self, ctx: RequestContext, params: dict) -> dict:
        return runtime_management.get_runtime_management_config(self.deps, ctx, params)

    def put_runtime_management_config(self, ctx: RequestContext, params: dict) -> dict:
        result = runtime_management.put_runtime_management_config(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    # ---- recursive loop detection (services/recursion.py) ----
    def get_function_recursion_config(self, ctx: RequestContext, params: dict) -> dict:
        return recursion.get_function_recursion_config(self.deps, ctx, params)

    def put_function_recursion_config(self, ctx: RequestContext, params: dict) -> dict:
        result = recursion.put_function_recursion_config(self.deps, ctx, params)
        self.resolver.invalidate()   # the data plane reads the setting with the version
        return result

    def get_account_settings(self, ctx: RequestContext, params: dict) -> dict:
        return account.get_account_settings(self.deps, ctx, params)

    # ---- code signing configs (services/code_signing.py) ----
    def create_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        result = code_signing.create_code_signing_config(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    def get_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        return code_signing.get_code_signing_config(self.deps, ctx, params)

    def update_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        result = code_signing.update_code_signing_config(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    def delete_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        result = code_signing.delete_code_signing_config(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    def list_code_signing_configs(self, ctx: RequestContext, params: dict) -> dict:
        return code_signing.list_code_signing_configs(self.deps, ctx, params)

    def put_function_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        result = code_signing.put_function_code_signing_config(self.deps, ctx, params)
        self.resolver.invalidate()   # $LATEST has a new RevisionId
        return result

    def get_function_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        return code_signing.get_function_code_signing_config(self.deps, ctx, params)

    def delete_function_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        result = code_signing.delete_function_code_signing_config(self.deps, ctx, params)
        self.resolver.invalidate()   # $LATEST has a new RevisionId
        return result

    def list_functions_by_code_signing_config(self, ctx: RequestContext, params: dict) -> dict:
        return code_signing.list_functions_by_code_signing_config(self.deps, ctx, params)

    # ---- layers (services/layers.py); writes bump the generation: authorization caches layer policies ----
    def publish_layer_version(self, ctx: RequestContext, params: dict) -> dict:
        result = layers.publish_layer_version(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    def get_layer_version(self, ctx: RequestContext, params: dict) -> dict:
        return layers.get_layer_version(self.deps, ctx, params)

    def get_layer_version_by_arn(self, ctx: RequestContext, params: dict) -> dict:
        return layers.get_layer_version_by_arn(self.deps, ctx, params)

    def list_layers(self, ctx: RequestContext, params: dict) -> dict:
        return layers.list_layers(self.deps, ctx, params)

    def list_layer_versions(self, ctx: RequestContext, params: dict) -> dict:
        return layers.list_layer_versions(self.deps, ctx, params)

    def delete_layer_version(self, ctx: RequestContext, params: dict) -> dict:
        result = layers.delete_layer_version(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    def add_layer_version_permission(self, ctx: RequestContext, params: dict) -> dict:
        result = layers.add_layer_version_permission(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    def remove_layer_version_permission(self, ctx: RequestContext, params: dict) -> dict:
        result = layers.remove_layer_version_permission(self.deps, ctx, params)
        self.resolver.invalidate()
        return result

    def get_layer_version_policy(self, ctx: RequestContext, params: dict) -> dict:
        return layers.get_layer_version_policy(self.deps, ctx, params)

    # ---- data plane (not an API operation: no (ctx, params) signature on purpose) ----
    def resolve_version(self, account_id: str, function_name: str, qualifier: str | None = None,
                        region: str | None = None) -> FunctionVersion:
        return self.resolver.resolve_version(account_id, function_name, qualifier, region)
