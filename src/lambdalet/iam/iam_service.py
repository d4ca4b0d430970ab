"""The IAM API subset (awsQuery): users, access keys, roles, managed and inline policies.

One method per operation, `snake_case(Op)(ctx, params) -> dict` (output members; timestamps as
epoch seconds, which api/query_protocol.py formats). Every operation is authorized like AWS does
(`iam:<Operation>` on the entity's ARN, through the policy engine), so a user with no policy can
do nothing, and the bootstrap administrator can do everything through AdministratorAccess.
Policy documents are answered URL-encoded, as AWS does (botocore decodes them).

server/platform.py builds it over the platform's Directory, IdentityStore and Authorizer.
"""
from __future__ import annotations

import base64
import json
from typing import Any, Callable
from urllib.parse import quote

from lambdalet.iam.authz import Authorizer
from lambdalet.iam.directory import Directory, policy_arn, role_arn, user_arn
from lambdalet.iam.errors import AccessDenied, LimitExceeded, NoSuchEntity, ValidationError
from lambdalet.models.context import RequestContext

MAX_KEYS_PER_USER = 2


def _meta(ctx: RequestContext, out: dict | None = None) -> dict:
    out = dict(out or {})
    out["ResponseMetadata"] = {"RequestId": ctx.request_id}
    return out


def _page(items: list, params: dict, key: str) -> dict:
    """IAM paging: Marker (opaque) + MaxItems (default 100) -> IsTruncated / Marker."""
    start = 0
    marker = params.get("Marker")
    if marker:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(marker.encode()).decode())["o"])
        except (ValueError, KeyError, TypeError):
            raise ValidationError("Invalid Marker.") from None
    size = params.get("MaxItems") or 100
    chunk = items[start:start + size]
    out: dict[str, Any] = {key: chunk, "IsTruncated": start + size < len(items)}
    if out["IsTruncated"]:
        out["Marker"] = base64.urlsafe_b64encode(json.dumps({"o": start + size}).encode()).decode()
    return out


def _tag_context(params: dict) -> dict:
    tags = params.get("Tags") or []
    keys: dict[str, Any] = {f"aws:RequestTag/{t['Key']}": t.get("Value", "") for t in tags}
    if tags:
        keys["aws:TagKeys"] = [t["Key"] for t in tags]
    return keys


def _boundary_context(params: dict) -> dict:
    """iam:PermissionsBoundary, so a policy can require (or forbid) a given boundary."""
    arn = params.get("PermissionsBoundary")
    return {"iam:PermissionsBoundary": arn} if arn else {}


def _quoted(doc: str) -> str:
    return quote(doc, safe="")


def _role_out(role: dict) -> dict:
    out = dict(role)
    out["AssumeRolePolicyDocument"] = _quoted(role["AssumeRolePolicyDocument"])
    return out


class IamService:
    def __init__(self, directory: Directory, identity, authorizer: Authorizer, *, enforce: bool = True):
        self.directory = directory
        self.identity = identity
        self.authorizer = authorizer
        self.enforce = enforce

    # ---------------------------------------------------------------- authorization
    def _authorize(self, ctx: RequestContext, operation: str, resource: str, context: dict | None = None) -> None:
        if self.enforce:
            self.authorizer.check(ctx, f"iam:{operation}", resource, context, error=AccessDenied)

    def _user_arn(self, ctx: RequestContext, name: str) -> str:
        try:
            return self.directory.get_user(ctx.account_id, name)["Arn"]
        except NoSuchEntity:
            return user_arn(ctx.account_id, name)

    def _role_arn(self, ctx: RequestContext, name: str) -> str:
        role = self.directory.find_role(ctx.account_id, name)
        return role["Arn"] if role else role_arn(ctx.account_id, name)

    def _self_user(self, ctx: RequestContext, params: dict) -> str:
        """UserName, or the calling user's own name when omitted (as AWS does for user credentials)."""
        name = params.get("UserName")
        if name:
            return name
        arn = ctx.caller.principal_arn
        if ":user/" not in arn:
            raise ValidationError("Must specify userName when calling with non-User credentials")
        return arn.rsplit("/", 1)[-1]

    # ---------------------------------------------------------------- users
    def create_user(self, ctx: RequestContext, params: dict) -> dict:
        name, path = params["UserName"], params.get("Path", "/")
        self._authorize(ctx, "CreateUser", user_arn(ctx.account_id, name, path),
                        {**_tag_context(params), **_boundary_context(params)})
        return _meta(ctx, {"User": self.directory.create_user(ctx.account_id, name, path, params.get("Tags"),
                                                              params.get("PermissionsBoundary"))})

    def get_user(self, ctx: RequestContext, params: dict) -> dict:
        name = self._self_user(ctx, params)
        self._authorize(ctx, "GetUser", self._user_arn(ctx, name))
        return _meta(ctx, {"User": self.directory.get_user(ctx.account_id, name)})

    def list_users(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "ListUsers", f"arn:aws:iam::{ctx.account_id}:user/")
        users = self.directory.list_users(ctx.account_id, params.get("PathPrefix", "/"))
        return _meta(ctx, _page(users, params, "Users"))

    def delete_user(self, ctx: RequestContext, params: dict) -> dict:
        name = params["UserName"]
        self._authorize(ctx, "DeleteUser", self._user_arn(ctx, name))
        self.directory.delete_user(ctx.account_id, name)
        return _meta(ctx)

    # ---------------------------------------------------------------- access keys
    def create_access_key(self, ctx: RequestContext, params: dict) -> dict:
        name = self._self_user(ctx, params)
        self._authorize(ctx, "CreateAccessKey", self._user_arn(ctx, name))
        user = self.directory.get_user(ctx.account_id, name)
        with self.directory.transaction() as conn:   # count and insert atomically
            if self.directory.count_user_keys(conn, user["UserId"]) >= MAX_KEYS_PER_USER:
                raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")
            key_id, secret, created = self.identity.create_user_key(conn, ctx.account_id, user["Arn"], user["UserId"])
        return _meta(ctx, {"AccessKey": {"UserName": user["UserName"], "AccessKeyId": key_id, "Status": "Active",
                                         "SecretAccessKey": secret, "CreateDate": created}})

    def _owned_key(self, ctx: RequestContext, params: dict, operation: str) -> tuple[dict, str]:
        key_id = params["AccessKeyId"]
        name = params.get("UserName") or self.directory.access_key_owner(ctx.account_id, key_id)
        if not name:
            name = self._self_user(ctx, params)
        self._authorize(ctx, operation, self._user_arn(ctx, name))
        user = self.directory.get_user(ctx.account_id, name)
        return user, key_id

    def delete_access_key(self, ctx: RequestContext, params: dict) -> dict:
        user, key_id = self._owned_key(ctx, params, "DeleteAccessKey")
        if not self.identity.delete_user_key(ctx.account_id, user["UserId"], key_id):
            raise NoSuchEntity(f"The Access Key with id {key_id} cannot be found.")
        return _meta(ctx)

    def update_access_key(self, ctx: RequestContext, params: dict) -> dict:
        user, key_id = self._owned_key(ctx, params, "UpdateAccessKey")
        if not self.identity.set_user_key_status(ctx.account_id, user["UserId"], key_id, params["Status"]):
            raise NoSuchEntity(f"The Access Key with id {key_id} cannot be found.")
        return _meta(ctx)

    def list_access_keys(self, ctx: RequestContext, params: dict) -> dict:
        name = self._self_user(ctx, params)
        self._authorize(ctx, "ListAccessKeys", self._user_arn(ctx, name))
        return _meta(ctx, _page(self.directory.list_access_keys(ctx.account_id, name), params, "AccessKeyMetadata"))

    # ---------------------------------------------------------------- roles
    def create_role(self, ctx: RequestContext, params: dict) -> dict:
        name, path = params["RoleName"], params.get("Path", "/")
        self._authorize(ctx, "CreateRole", role_arn(ctx.account_id, name, path),
                        {**_tag_context(params), **_boundary_context(params)})
        role = self.directory.create_role(ctx.account_id, name, params["AssumeRolePolicyDocument"], path,
                                          params.get("Description", ""), params.get("MaxSessionDuration") or 3600,
                                          params.get("Tags"), params.get("PermissionsBoundary"))
        return _meta(ctx, {"Role": _role_out(role)})

    def get_role(self, ctx: RequestContext, params: dict) -> dict:
        name = params["RoleName"]
        self._authorize(ctx, "GetRole", self._role_arn(ctx, name))
        return _meta(ctx, {"Role": _role_out(self.directory.get_role(ctx.account_id, name))})

    def list_roles(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "ListRoles", f"arn:aws:iam::{ctx.account_id}:role/")
        roles = [_role_out(r) for r in self.directory.list_roles(ctx.account_id, params.get("PathPrefix", "/"))]
        return _meta(ctx, _page(roles, params, "Roles"))

    def delete_role(self, ctx: RequestContext, params: dict) -> dict:
        name = params["RoleName"]
        self._authorize(ctx, "DeleteRole", self._role_arn(ctx, name))
        self.directory.delete_role(ctx.account_id, name)
        return _meta(ctx)

    def update_assume_role_policy(self, ctx: RequestContext, params: dict) -> dict:
        name = params["RoleName"]
        self._authorize(ctx, "UpdateAssumeRolePolicy", self._role_arn(ctx, name))
        self.directory.update_trust_policy(ctx.account_id, name, params["PolicyDocument"])
        return _meta(ctx)

    # ---------------------------------------------------------------- permissions boundaries
    def _boundary(self, ctx, params, ptype: str, op: str, arn: str | None) -> dict:
        name = params["UserName" if ptype == "user" else "RoleName"]
        target = self._user_arn(ctx, name) if ptype == "user" else self._role_arn(ctx, name)
        self._authorize(ctx, op, target, {"iam:PermissionsBoundary": arn} if arn else None)
        self.directory.set_boundary(ctx.account_id, ptype, name, arn)
        return _meta(ctx)

    def put_user_permissions_boundary(self, ctx, params):
        return self._boundary(ctx, params, "user", "PutUserPermissionsBoundary", params["PermissionsBoundary"])

    def put_role_permissions_boundary(self, ctx, params):
        return self._boundary(ctx, params, "role", "PutRolePermissionsBoundary", params["PermissionsBoundary"])

    def delete_user_permissions_boundary(self, ctx, params):
        return self._boundary(ctx, params, "user", "DeleteUserPermissionsBoundary", None)

    def delete_role_permissions_boundary(self, ctx, params):
        return self._boundary(ctx, params, "role", "DeleteRolePermissionsBoundary", None)

    # ---------------------------------------------------------------- managed policies
    def create_policy(self, ctx: RequestContext, params: dict) -> dict:
        name, path = params["PolicyName"], params.get("Path", "/")
        self._authorize(ctx, "CreatePolicy", policy_arn(ctx.account_id, name, path), _tag_context(params))
        pol = self.directory.create_policy(ctx.account_id, name, params["PolicyDocument"], path,
                                           params.get("Description", ""), params.get("Tags"))
        return _meta(ctx, {"Policy": pol})

    def get_policy(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "GetPolicy", params["PolicyArn"])
        return _meta(ctx, {"Policy": self.directory.get_policy(ctx.account_id, params["PolicyArn"])})

    def list_policies(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "ListPolicies", f"arn:aws:iam::{ctx.account_id}:policy/")
        pols = self.directory.list_policies(ctx.account_id, params.get("Scope", "All"),
                                            bool(params.get("OnlyAttached")), params.get("PathPrefix", "/"))
        for p in pols:
            p.pop("Description", None)   # ListPolicies does not return descriptions
        return _meta(ctx, _page(pols, params, "Policies"))

    def delete_policy(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "DeletePolicy", params["PolicyArn"])
        self.directory.delete_policy(ctx.account_id, params["PolicyArn"])
        return _meta(ctx)

    def get_policy_version(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "GetPolicyVersion", params["PolicyArn"])
        ver = self.directory.get_policy_version(ctx.account_id, params["PolicyArn"], params["VersionId"])
        ver["Document"] = _quoted(ver["Document"])
        return _meta(ctx, {"PolicyVersion": ver})

    def list_policy_versions(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "ListPolicyVersions", params["PolicyArn"])
        return _meta(ctx, _page(self.directory.list_policy_versions(ctx.account_id, params["PolicyArn"]), params,
                                "Versions"))

    def create_policy_version(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "CreatePolicyVersion", params["PolicyArn"])
        ver = self.directory.create_policy_version(ctx.account_id, params["PolicyArn"], params["PolicyDocument"],
                                                   bool(params.get("SetAsDefault")))
        return _meta(ctx, {"PolicyVersion": ver})

    def set_default_policy_version(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "SetDefaultPolicyVersion", params["PolicyArn"])
        self.directory.set_default_policy_version(ctx.account_id, params["PolicyArn"], params["VersionId"])
        return _meta(ctx)

    def delete_policy_version(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize(ctx, "DeletePolicyVersion", params["PolicyArn"])
        self.directory.delete_policy_version(ctx.account_id, params["PolicyArn"], params["VersionId"])
        return _meta(ctx)

    # ---------------------------------------------------------------- attachments
    def _attach(self, ctx, params, ptype: str, op: str, fn: Callable) -> dict:
        key = "UserName" if ptype == "user" else "RoleName"
        name = params[key]
        arn = self._user_arn(ctx, name) if ptype == "user" else self._role_arn(ctx, name)
        self._authorize(ctx, op, arn, {"iam:PolicyARN": params["PolicyArn"]})
        fn(ctx.account_id, ptype, name, params["PolicyArn"])
        return _meta(ctx)

    def attach_role_policy(self, ctx, params):
        return self._attach(ctx, params, "role", "AttachRolePolicy", self.directory.attach)

    def detach_role_policy(self, ctx, params):
        return self._attach(ctx, params, "role", "DetachRolePolicy", self.directory.detach)

    def attach_user_policy(self, ctx, params):
        return self._attach(ctx, params, "user", "AttachUserPolicy", self.directory.attach)

    def detach_user_policy(self, ctx, params):
        return self._attach(ctx, params, "user", "DetachUserPolicy", self.directory.detach)

    def _list_attached(self, ctx, params, ptype: str, op: str) -> dict:
        name = params["UserName" if ptype == "user" else "RoleName"]
        self._authorize(ctx, op, self._user_arn(ctx, name) if ptype == "user" else self._role_arn(ctx, name))
        items = self.directory.list_attached(ctx.account_id, ptype, name, params.get("PathPrefix", "/"))
        return _meta(ctx, _page(items, params, "AttachedPolicies"))

    def list_attached_role_policies(self, ctx, params):
        return self._list_attached(ctx, params, "role", "ListAttachedRolePolicies")

    def list_attached_user_policies(self, ctx, params):
        return self._list_attached(ctx, params, "user", "ListAttachedUserPolicies")

    # ---------------------------------------------------------------- inline policies
    def _inline(self, ctx, params, ptype: str, op: str) -> tuple[str, str]:
        name = params["UserName" if ptype == "user" else "RoleName"]
        self._authorize(ctx, op, self._user_arn(ctx, name) if ptype == "user" else self._role_arn(ctx, name))
        return name, params.get("PolicyName", "")

    def put_role_policy(self, ctx, params):
        name, pname = self._inline(ctx, params, "role", "PutRolePolicy")
        self.directory.put_inline(ctx.account_id, "role", name, pname, params["PolicyDocument"])
        return _meta(ctx)

    def put_user_policy(self, ctx, params):
        name, pname = self._inline(ctx, params, "user", "PutUserPolicy")
        self.directory.put_inline(ctx.account_id, "user", name, pname, params["PolicyDocument"])
        return _meta(ctx)

    def get_role_policy(self, ctx, params):
        name, pname = self._inline(ctx, params, "role", "GetRolePolicy")
        out = self.directory.get_inline(ctx.account_id, "role", name, pname)
        out["PolicyDocument"] = _quoted(out["PolicyDocument"])
        return _meta(ctx, out)

    def get_user_policy(self, ctx, params):
        name, pname = self._inline(ctx, params, "user", "GetUserPolicy")
        out = self.directory.get_inline(ctx.account_id, "user", name, pname)
        out["PolicyDocument"] = _quoted(out["PolicyDocument"])
        return _meta(ctx, out)

    def delete_role_policy(self, ctx, params):
        name, pname = self._inline(ctx, params, "role", "DeleteRolePolicy")
        self.directory.delete_inline(ctx.account_id, "role", name, pname)
        return _meta(ctx)

    def delete_user_policy(self, ctx, params):
        name, pname = self._inline(ctx, params, "user", "DeleteUserPolicy")
        self.directory.delete_inline(ctx.account_id, "user", name, pname)
        return _meta(ctx)

    def list_role_policies(self, ctx, params):
        name, _ = self._inline(ctx, params, "role", "ListRolePolicies")
        return _meta(ctx, _page(self.directory.list_inline(ctx.account_id, "role", name), params, "PolicyNames"))

    def list_user_policies(self, ctx, params):
        name, _ = self._inline(ctx, params, "user", "ListUserPolicies")
        return _meta(ctx, _page(self.directory.list_inline(ctx.account_id, "user", name), params, "PolicyNames"))
