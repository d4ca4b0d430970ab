"""The AWS Organizations API subset (awsJson 1.1, `boto3.client("organizations")`): accounts as tenants.

One method per operation, `snake_case(Op)(ctx, params) -> dict`. Served: CreateOrganization,
DescribeOrganization, DeleteOrganization, CreateAccount, DescribeCreateAccountStatus,
ListCreateAccountStatus, ListAccounts, DescribeAccount, ListRoots, ListAccountsForParent,
ListParents, RemoveAccountFromOrganization, LeaveOrganization, tags on accounts, and service control
policies (scp_service.py). Every other operation of the model answers a modelled error (api/app.py).
The wire protocol is api/organizations_protocol.py.

Authorization, as AWS does it, in two steps (the service authorizes itself, like IAM: the resource
ARNs carry the organization id): the policy engine must allow `organizations:<Operation>` (on the
account's ARN for operations on one account, else `*`); then only principals of the management
account may manage the organization (AccessDeniedException otherwise); any member may
DescribeOrganization; an account in no organization gets AWSOrganizationsNotInUseException.
"""
from __future__ import annotations

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
    MasterCannotLeaveOrganizationException,
    Organization,
    OrganizationStore,
    ParentNotFoundException,
    ResourcePolicyNotFoundException,
    TargetNotFoundException,
)
from lambdalet.iam.organizations_input import (
    _ACCOUNT_ID, _ACCOUNT_NAME, _EMAIL, _PARENT_ID, _REQUEST_ID, _ROLE_NAME, _STATES, MAX_TAGS, _check, _check_tags,
    _invalid, _page, _tag_keys)
from lambdalet.iam.scp import ServiceControlPolicies
from lambdalet.iam.scp_service import PolicyOperations
from lambdalet.models.context import RequestContext


class OrganizationsService(PolicyOperations):
    def __init__(self, store: OrganizationStore, authorizer: Authorizer, scps: ServiceControlPolicies | None = None):
        self.store = store
        self.authorizer = authorizer
        self.scps = scps or ServiceControlPolicies(store)

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
                # Deprecated by AWS (ListRoots reports the root's policy types); kept empty.
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
        roots = [{"Id": org.root_id, "Arn": org.root_arn, "Name": "Root",
                  "PolicyTypes": self.scps.root_policy_types(org)}]
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
