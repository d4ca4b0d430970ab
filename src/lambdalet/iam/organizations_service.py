"""The AWS Organizations API subset (awsJson 1.1, `boto3.client("organizations")`): accounts as tenants.

One method per operation, `snake_case(Op)(ctx, params) -> dict`. Served: CreateOrganization,
DescribeOrganization, DeleteOrganization, CreateAccount, DescribeCreateAccountStatus,
ListCreateAccountStatus, ListAccounts, DescribeAccount, ListRoots, ListAccountsForParent,
ListParents, RemoveAccountFromOrganization, LeaveOrganization, and tags on accounts. Every other
operation of the model answers a modelled error (api/app.py).

Authorization, as AWS does it, in two steps (the service authorizes itself, like IAM: the resource
ARNs carry the organization id): the policy engine must allow `organizations:<Operation>` (on the
account's ARN for operations on one account, else `*`); then only principals of the management
account may manage the organization (AccessDeniedException otherwise); any member may
DescribeOrganization; an account in no organization gets AWSOrganizationsNotInUseException.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any

from lambdalet.api.json_protocol import InvalidParameterValue, JsonProtocol, MissingParameter, SerializationException
from lambdalet.iam.authz import Authorizer
from lambdalet.iam.organizations import (
    ACCOUNT_NOT_FOUND,
    DEFAULT_ACCESS_ROLE,
    MASTER_CANNOT_LEAVE,
    NO_PERMISSION,
    NOT_IN_USE,
    AccessDeniedException,
    AccountNotFoundException,
    AlreadyInOrganizationException,
    AWSOrganizationsNotInUseException,
    ChildNotFoundException,
    CreateAccountStatusNotFoundException,
    InvalidInputException,
    MasterCannotLeaveOrganizationException,
    Organization,
    OrganizationStore,
    ParentNotFoundException,
    ResourcePolicyNotFoundException,
    TargetNotFoundException,
)
from lambdalet.models.context import RequestContext

# Patterns and lengths of botocore's organizations model (the protocol checks types only).
_ACCOUNT_ID = re.compile(r"\d{12}")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_ACCOUNT_NAME = re.compile(r"[\u0020-\u007E]+")
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_REQUEST_ID = re.compile(r"car-[a-z0-9]{8,32}")
_PARENT_ID = re.compile(r"(r-[0-9a-z]{4,32})|(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})")
_TAG_CHARS = re.compile(r"[\w\s.:/=+\-@]*", re.UNICODE)
_STATES = ("IN_PROGRESS", "SUCCEEDED", "FAILED")
MAX_RESULTS = 20
MAX_TAGS = 50


def _invalid(message: str, reason: str) -> InvalidInputException:
    return InvalidInputException(message, reason=reason)


def _check(value: Any, pattern: re.Pattern, lo: int, hi: int) -> str:
    if not isinstance(value, str) or len(value) < lo:
        raise _invalid("You provided a value that is too short.", "MIN_LENGTH_EXCEEDED")
    if len(value) > hi:
        raise _invalid("You provided a value that is too long.", "MAX_LENGTH_EXCEEDED")
    if not pattern.fullmatch(value):
        raise _invalid("You provided a value that does not match the required pattern.", "INVALID_PATTERN")
    return value


def _check_tags(tags: Any) -> list[dict]:
    tags = list(tags or [])
    if len(tags) > MAX_TAGS:
        raise _invalid("You provided too many tags.", "INVALID_LIST_MEMBER")
    keys = [x.get("Key", "") for x in tags]
    if len(set(keys)) != len(keys):
        raise _invalid("You provided a duplicate tag key.", "DUPLICATE_TAG_KEY")
    for tag in tags:
        _check(tag.get("Key"), _TAG_CHARS, 1, 128)
        _check(tag.get("Value", ""), _TAG_CHARS, 0, 256)
        if tag["Key"].lower().startswith("aws:"):
            raise _invalid("You provided a tag key with the reserved prefix aws:.", "INVALID_SYSTEM_TAGS_PARAMETER")
    return [{"Key": x["Key"], "Value": x.get("Value", "")} for x in tags]


def _tag_keys(tags: list[dict]) -> dict[str, Any]:
    keys: dict[str, Any] = {f"aws:RequestTag/{x['Key']}": x["Value"] for x in tags}
    if tags:
        keys["aws:TagKeys"] = [x["Key"] for x in tags]
    return keys


def _page(items: list, params: dict, key: str) -> dict:
    """NextToken (opaque) + MaxResults (1-20) -> one page."""
    size = params.get("MaxResults")
    if size is None:
        size = MAX_RESULTS
    if size < 1:
        raise _invalid("You provided a value that is too small.", "MIN_VALUE_EXCEEDED")
    if size > MAX_RESULTS:
        raise _invalid("You provided a value that is too large.", "MAX_VALUE_EXCEEDED")
    start = 0
    token = params.get("NextToken")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()).decode())["o"])
        except (ValueError, KeyError, TypeError):
            raise _invalid("The specified token is invalid.", "INVALID_NEXT_TOKEN") from None
        if start < 0:
            raise _invalid("The specified token is invalid.", "INVALID_NEXT_TOKEN")
    out: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        out["NextToken"] = base64.urlsafe_b64encode(json.dumps({"o": start + size}).encode()).decode()
    return out


class OrganizationsService:
    def __init__(self, store: OrganizationStore, authorizer: Authorizer):
        self.store = store
        self.authorizer = authorizer

    # ---------------------------------------------------------------- authorization
    def _caller_org(self, ctx: RequestContext, operation: str, resource=None) -> Organization:
        """IAM first (`resource(org)` names the ARN once the organization is known), then membership."""
        org = self.store.organization_of(ctx.account_id)
        arn = resource(org) if (resource is not None and org is not None) else "*"
        self.authorizer.check(ctx, f"organizations:{operation}", arn, None, error=AccessDeniedException)
        if org is None:
            raise AWSOrganizationsNotInUseException(NOT_IN_USE)
        return org

    def _managed(self, ctx: RequestContext, operation: str, resource=None, keys: dict | None = None) -> Organization:
        """Operations only the management account's principals may call."""
        org = self.store.organization_of(ctx.account_id)
        arn = resource(org) if (resource is not None and org is not None) else "*"
        self.authorizer.check(ctx, f"organizations:{operation}", arn, keys, error=AccessDeniedException)
        if org is None:
            raise AWSOrganizationsNotInUseException(NOT_IN_USE)
        if ctx.account_id != org.management_account_id:
            raise AccessDeniedException(NO_PERMISSION)
        return org

    @staticmethod
    def _account_id(params: dict, member: str = "AccountId") -> str:
        return _check(params.get(member), _ACCOUNT_ID, 12, 12)

    # ---------------------------------------------------------------- the organization
    def _describe(self, org: Organization) -> dict:
        mgmt = self.store.account(org, org.management_account_id) or {}
        return {"Id": org.id, "Arn": org.arn, "FeatureSet": org.feature_set,
                "MasterAccountArn": org.account_arn(org.management_account_id),
                "MasterAccountId": org.management_account_id, "MasterAccountEmail": mgmt.get("Email", ""),
                # No policy type is enforced here (no SCPs), so none is reported as available.
                "AvailablePolicyTypes": []}

    def create_organization(self, ctx: RequestContext, params: dict) -> dict:
        self.authorizer.check(ctx, "organizations:CreateOrganization", "*", None, error=AccessDeniedException)
        feature_set = params.get("FeatureSet") or "ALL"
        if feature_set not in ("ALL", "CONSOLIDATED_BILLING"):
            raise _invalid("You provided a value that is not valid for the enumeration.", "INVALID_ENUM")
        if self.store.organization_of(ctx.account_id) is not None:
            raise AlreadyInOrganizationException("The AWS account is already a member of an organization.")
        if ctx.account_id != self.store.management_account:
            # One organization per platform: tenants must not mint tenants of their own.
            raise AccessDeniedException(f"Only the platform's management account ({self.store.management_account}) "
                                        "can create an organization on lambdalet.")
        return {"Organization": self._describe(self.store.create_organization(feature_set))}

    def describe_organization(self, ctx: RequestContext, params: dict) -> dict:
        return {"Organization": self._describe(self._caller_org(ctx, "DescribeOrganization"))}

    def delete_organization(self, ctx: RequestContext, params: dict) -> dict:
        self.store.delete_organization(self._managed(ctx, "DeleteOrganization"))
        return {}

    def list_roots(self, ctx: RequestContext, params: dict) -> dict:
        org = self._managed(ctx, "ListRoots")
        roots = [{"Id": org.root_id, "Arn": org.root_arn, "Name": "Root", "PolicyTypes": []}]
        return _page(roots, params, "Roots")

    # ---------------------------------------------------------------- accounts
    def create_account(self, ctx: RequestContext, params: dict) -> dict:
        tags = _check_tags(params.get("Tags"))
        org = self._managed(ctx, "CreateAccount", keys=_tag_keys(tags))
        email = _check(params.get("Email"), _EMAIL, 6, 64)
        name = _check(params.get("AccountName"), _ACCOUNT_NAME, 1, 50)
        role = params.get("RoleName") or DEFAULT_ACCESS_ROLE
        _check(role, _ROLE_NAME, 1, 64)
        if role.startswith("AWSServiceRoleFor"):
            raise _invalid("You provided a role name that isn't valid.", "INVALID_ROLE_NAME")
        if params.get("IamUserAccessToBilling") not in (None, "ALLOW", "DENY"):
            raise _invalid("You provided a value that is not valid for the enumeration.", "INVALID_ENUM")
        return {"CreateAccountStatus": self.store.create_account(org, name, email, role, tags)}

    def describe_create_account_status(self, ctx: RequestContext, params: dict) -> dict:
        org = self._managed(ctx, "DescribeCreateAccountStatus")
        request_id = _check(params.get("CreateAccountRequestId"), _REQUEST_ID, 12, 36)
        status = self.store.create_status(org, request_id)
        if status is None:
            raise CreateAccountStatusNotFoundException("We can't find an create account request with the "
                                                       "CreateAccountRequestId that you specified.")
        return {"CreateAccountStatus": status}

    def list_create_account_status(self, ctx: RequestContext, params: dict) -> dict:
        org = self._managed(ctx, "ListCreateAccountStatus")
        states = params.get("States") or []
        if any(s not in _STATES for s in states):
            raise _invalid("You provided a value that is not valid for the enumeration.", "INVALID_ENUM")
        return _page(self.store.create_statuses(org, states), params, "CreateAccountStatuses")

    def list_accounts(self, ctx: RequestContext, params: dict) -> dict:
        org = self._managed(ctx, "ListAccounts")
        return _page(self.store.accounts(org), params, "Accounts")

    def describe_account(self, ctx: RequestContext, params: dict) -> dict:
        account_id = self._account_id(params)
        org = self._managed(ctx, "DescribeAccount", lambda o: o.account_arn(account_id))
        account = self.store.account(org, account_id)
        if account is None:
            raise AccountNotFoundException(ACCOUNT_NOT_FOUND)
        return {"Account": account}

    def list_accounts_for_parent(self, ctx: RequestContext, params: dict) -> dict:
        org = self._managed(ctx, "ListAccountsForParent")
        if _check(params.get("ParentId"), _PARENT_ID, 1, 100) != org.root_id:
            raise ParentNotFoundException("We can't find a root or OU with the ParentId that you specified.")
        return _page(self.store.accounts(org), params, "Accounts")

    def list_parents(self, ctx: RequestContext, params: dict) -> dict:
        org = self._managed(ctx, "ListParents")
        child = params.get("ChildId")
        if not isinstance(child, str) or not _ACCOUNT_ID.fullmatch(child) or self.store.account(org, child) is None:
            raise ChildNotFoundException("We can't find an organizational unit (OU) or AWS account with the "
                                         "ChildId that you specified.")
        return _page([{"Id": org.root_id, "Type": "ROOT"}], params, "Parents")

    def remove_account_from_organization(self, ctx: RequestContext, params: dict) -> dict:
        account_id = self._account_id(params)
        org = self._managed(ctx, "RemoveAccountFromOrganization", lambda o: o.account_arn(account_id))
        self.store.remove_account(org, account_id)
        return {}

    def leave_organization(self, ctx: RequestContext, params: dict) -> dict:
        org = self._caller_org(ctx, "LeaveOrganization")
        if ctx.account_id == org.management_account_id:
            raise MasterCannotLeaveOrganizationException(MASTER_CANNOT_LEAVE)
        try:
            self.store.remove_account(org, ctx.account_id)
        except AccountNotFoundException:    # removed concurrently
            raise AWSOrganizationsNotInUseException(NOT_IN_USE) from None
        return {}

    # ---------------------------------------------------------------- tags (accounts only)
    def _tagged_account(self, ctx: RequestContext, params: dict, operation: str, keys: dict | None = None
                        ) -> tuple[Organization, str]:
        target = params.get("ResourceId")
        account_id = target if isinstance(target, str) and _ACCOUNT_ID.fullmatch(target) else None
        org = self._managed(ctx, operation, (lambda o: o.account_arn(account_id)) if account_id else None, keys)
        if account_id is None or self.store.account(org, account_id) is None:
            raise TargetNotFoundException("We can't find a root, OU, account, or policy with the TargetId that you "
                                          "specified.")
        return org, account_id

    def list_tags_for_resource(self, ctx: RequestContext, params: dict) -> dict:
        org, account_id = self._tagged_account(ctx, params, "ListTagsForResource")
        return _page(self.store.account_tags(org, account_id) or [], {"NextToken": params.get("NextToken")}, "Tags")

    def tag_resource(self, ctx: RequestContext, params: dict) -> dict:
        tags = _check_tags(params.get("Tags"))
        org, account_id = self._tagged_account(ctx, params, "TagResource", _tag_keys(tags))
        self.store.update_account_tags(org, account_id, add=tags, limit=MAX_TAGS)
        return {}

    def untag_resource(self, ctx: RequestContext, params: dict) -> dict:
        keys = list(params.get("TagKeys") or [])
        org, account_id = self._tagged_account(ctx, params, "UntagResource", {"aws:TagKeys": keys})
        self.store.update_account_tags(org, account_id, remove=keys)
        return {}

    # ---------------------------------------------------------------- resource policy: there is none
    def describe_resource_policy(self, ctx: RequestContext, params: dict) -> dict:
        self._managed(ctx, "DescribeResourcePolicy")
        raise ResourcePolicyNotFoundException("We can't find a resource policy request with the parameter that you "
                                              "specified.")

    def delete_resource_policy(self, ctx: RequestContext, params: dict) -> dict:
        self._managed(ctx, "DeleteResourcePolicy")
        raise ResourcePolicyNotFoundException("We can't find a resource policy request with the parameter that you "
                                              "specified.")


class OrganizationsProtocol(JsonProtocol):
    """awsJson 1.1 as AWS Organizations answers it: input the protocol refuses (bad JSON, wrong
    types, unknown or missing members) is InvalidInputException, the code its clients expect."""

    def parse(self, op, req, labels):
        try:
            return super().parse(op, req, labels)
        except MissingParameter as e:
            raise InvalidInputException(e.message, reason="INPUT_REQUIRED") from None
        except (SerializationException, InvalidParameterValue) as e:
            raise InvalidInputException(e.message) from None


def build_organizations(platform, directory, authorizer: Authorizer) -> OrganizationsService:
    """The Organizations API over the platform's database; makes every authorization see the
    caller's organization (`aws:PrincipalOrgID`)."""
    store = OrganizationStore(platform.db, directory)
    authorizer.principal_org = store.principal_org
    return OrganizationsService(store, authorizer)
