"""Tenant isolation mode (TenancyConfig: PER_TENANT), as AWS documents it.

A PER_TENANT function is set so at CreateFunction and never changed (UpdateFunctionConfiguration
has no TenancyConfig member). Every invocation of it names a tenant (`X-Amz-Tenant-Id`, boto3's
TenantId); an invocation of any other function must not. The data plane keys environments by the
tenant too (invoke/pool.py), so an environment that ran one tenant's code never runs another's.

AWS's limits kept here: the features that cannot work per tenant are refused (SnapStart, function
URLs, event source mappings), and live tenant environments of one function are capped at 2,500 per
1,000 of its concurrency (`environment_cap`).
"""
from __future__ import annotations

from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.services import validation as v

PER_TENANT = "PER_TENANT"
# AWS's one message for both mistakes (a tenant id missing, or given to a function without isolation).
TENANT_ID_MISMATCH = "Tenant ID configuration not specified or passed to a function when tenant isolation is not enabled."
ENVIRONMENTS_PER_1000 = 2500


def validate(value) -> dict:
    """CreateFunction's TenancyConfig -> what the version's config stores."""
    if not isinstance(value, dict):
        raise InvalidParameterValueException("TenancyConfig must be an object.")
    mode = value.get("TenantIsolationMode")
    if mode != PER_TENANT:
        raise v.constraint_error(mode, "tenancyConfig.tenantIsolationMode",
                                 "Member must satisfy enum value set: [PER_TENANT]")
    return {"TenantIsolationMode": PER_TENANT}


def is_isolated(cfg: dict) -> bool:
    return (cfg.get("TenancyConfig") or {}).get("TenantIsolationMode") == PER_TENANT


def refuse_with(cfg: dict) -> None:
    """Settings AWS does not combine with tenant isolation (checked at create, the only time it is set)."""
    if is_isolated(cfg) and (cfg.get("SnapStart") or {}).get("ApplyOn", "None") != "None":
        raise InvalidParameterValueException("SnapStart is not supported for functions with tenant isolation mode.")


def refuse_feature(cfg: dict, feature: str) -> None:
    """A function URL or an event source mapping cannot supply a tenant id: AWS refuses them."""
    if is_isolated(cfg):
        raise InvalidParameterValueException(f"{feature} is not supported for functions with tenant isolation mode.")


def check_invoke(isolated: bool, tenant_id: str | None) -> str:
    """The tenant an invocation runs for ("" for a function without isolation), or AWS's error."""
    if bool(isolated) != bool(tenant_id):
        raise InvalidParameterValueException(TENANT_ID_MISMATCH)
    return tenant_id or ""


def environment_cap(concurrency_limit: int) -> int:
    """Live (busy or idle) tenant environments one function may have: 2,500 per 1,000 of its
    concurrency (its reservation, else the account's unreserved concurrency); at least one."""
    return max(1, concurrency_limit * ENVIRONMENTS_PER_1000 // 1000)
