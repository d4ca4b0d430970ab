"""Users, roles and policies: persistence (iam/tables.py) and the lookups authorization needs.

Returned records are dicts keyed by AWS's member names (`UserName`, `RoleId`, `CreateDate` as
epoch seconds, ...), so iam_service.py stays thin. Names are unique per account regardless of
case. Access keys live in `access_keys` and are created by `IdentityStore` (it alone seals and
unseals secrets); this module only counts and lists them.

Directory is the facade; the work lives in one module per resource (their methods are its):
directory_users.py, directory_roles.py, directory_policies.py (managed policies and versions),
directory_attachments.py (attached, inline, boundaries), directory_core.py (accounts, the generation,
what authorization reads), directory_rows.py (ids, ARNs, records, connection helpers).
"""
from __future__ import annotations

from lambdalet.iam.directory_attachments import Attachments
from lambdalet.iam.directory_policies import ManagedPolicies
from lambdalet.iam.directory_roles import Roles
from lambdalet.iam.directory_rows import (
    AWS_ACCOUNT,
    MAX_MANAGED_POLICIES_PER_ENTITY,
    MAX_POLICY_VERSIONS,
    attach_by_arn,
    ensure_managed_policies,
    ensure_user,
    new_id,
    policy_arn,
    role_arn,
    user_arn,
)
from lambdalet.iam.directory_users import Users
from lambdalet.iam.managed_policies import ADMIN_POLICY_ARN, AWS_MANAGED

__all__ = ["ADMIN_POLICY_ARN", "AWS_ACCOUNT", "AWS_MANAGED", "MAX_MANAGED_POLICIES_PER_ENTITY", "MAX_POLICY_VERSIONS",
           "Directory", "attach_by_arn", "ensure_managed_policies", "ensure_user", "new_id", "policy_arn", "role_arn",
           "user_arn"]


class Directory(Attachments, Users, Roles, ManagedPolicies):
    """Users, roles, managed and inline policies of every account, and the lookups authorization needs."""
