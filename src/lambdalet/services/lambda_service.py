"""LambdaService: the Lambda control plane as one object with a method per operation.

api/ calls `service.<snake_case(Operation)>(ctx, params)` with botocore's input members and
serializes the returned output members. The work lives in one module per resource; this file
only binds them to the platform's components and documents the surface.
"""
from __future__ import annotations

from lambdalet.models.context import RequestContext
from lambdalet.services import account, aliases, concurrency, functions, tags, versions
from lambdalet.services.deps import Deps
from lambdalet.services.resolver import FunctionResolver, FunctionVersion
from lambdalet.services.runtimes import RuntimeCatalogue, default_catalogue


class LambdaService:
    def __init__(self, db, keyring, blobs, settings, *, runtimes: RuntimeCatalogue | None = None, clock=None):
        self.deps = Deps(db=db, keyring=keyring, blobs=blobs, settings=settings,
                         runtimes=runtimes or default_catalogue())
        if clock is not None:
            self.deps.clock = clock
        self.resolver = FunctionResolver(db, keyring, settings)

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
        self.resolver.invalidate()   # the data plane's cached view of this account is stale
        return result

    def list_aliases(self, ctx: RequestContext, params: dict) -> dict:
        return aliases.list_aliases(self.deps, ctx, params)

    # ---- tags ----
    def tag_resource(self, ctx: RequestContext, params: dict) -> dict:
        return tags.tag_resource(self.deps, ctx, params)

    def untag_resource(self, ctx: RequestContext, params: dict) -> dict:
        return tags.untag_resource(self.deps, ctx, params)

    def list_tags(self, ctx: RequestContext, params: dict) -> dict:
        return tags.list_tags(self.deps, ctx, params)

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

    def get_account_settings(self, ctx: RequestContext, params: dict) -> dict:
        return account.get_account_settings(self.deps, ctx, params)

    # ---- data plane (not an API operation: no (ctx, params) signature on purpose) ----
    def resolve_version(self, account_id: str, function_name: str, qualifier: str | None = None,
                        region: str | None = None) -> FunctionVersion:
        return self.resolver.resolve_version(account_id, function_name, qualifier, region)
