"""The Organizations API's policy operations (SERVICE_CONTROL_POLICY), a part of OrganizationsService:
CreatePolicy, UpdatePolicy, DeletePolicy, DescribePolicy, ListPolicies, AttachPolicy, DetachPolicy,
ListPoliciesForTarget, ListTargetsForPolicy, EnablePolicyType, DisablePolicyType.

Authorized as AWS's service authorization reference lists them: `organizations:<Op>` on the policy's
ARN (and, for Attach/Detach, the target's ARN too), on the root's ARN for Enable/DisablePolicyType,
else on `*`, with `organizations:PolicyType`; then only the management account may manage them.
The state and what decisions read are iam/scp.py.
"""
from __future__ import annotations

import re

from lambdalet.iam.organizations import SCP_TYPE, Organization
from lambdalet.iam.organizations_input import _check, _check_tags, _invalid, _page, _tag_keys
from lambdalet.iam.scp import ServiceControlPolicies, policy_arn
from lambdalet.models.context import RequestContext

_POLICY_ID = re.compile(r"p-[0-9a-zA-Z_]{8,128}")
_TARGET_ID = re.compile(r"(r-[0-9a-z]{4,32})|(\d{12})|(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})")
_ROOT_ID = re.compile(r"r-[0-9a-z]{4,32}")
_ANY = re.compile(r"[\s\S]*")
_TYPES = ("SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY", "TAG_POLICY", "BACKUP_POLICY",
          "AISERVICES_OPT_OUT_POLICY", "CHATBOT_POLICY", "DECLARATIVE_POLICY_EC2", "SECURITYHUB_POLICY",
          "SECURITYHUB_CSPM_POLICY", "INSPECTOR_POLICY", "UPGRADE_ROLLOUT_POLICY", "BEDROCK_POLICY", "S3_POLICY",
          "NETWORK_SECURITY_DIRECTOR_POLICY", "GUARDDUTY_POLICY")


def _policy_type(value) -> str:
    if value not in _TYPES:
        raise _invalid("You provided a value that is not valid for the enumeration.", "INVALID_ENUM")
    return value


class PolicyOperations:
    """Mixed into OrganizationsService (which provides `_managed` and `scps`)."""
    scps: ServiceControlPolicies

    def _policy(self, ctx: RequestContext, operation: str, policy_id, policy_type: str = SCP_TYPE
                ) -> tuple[Organization, str]:
        policy_id = _check(policy_id, _POLICY_ID, 1, 130)
        org = self._managed(ctx, operation, lambda o: policy_arn(o, policy_id),
                            {"organizations:PolicyType": policy_type})
        return org, policy_id

    def create_policy(self, ctx: RequestContext, params: dict) -> dict:
        tags = _check_tags(params.get("Tags"))
        policy_type = _policy_type(params.get("Type"))
        org = self._managed(ctx, "CreatePolicy", None, {"organizations:PolicyType": policy_type, **_tag_keys(tags)})
        name = _check(params.get("Name"), _ANY, 1, 128)
        description = _check(params.get("Description"), _ANY, 0, 512)
        content = _check(params.get("Content"), _ANY, 1, 1_000_000)
        return {"Policy": self.scps.create(org, name, description, content, policy_type, tags)}

    def update_policy(self, ctx: RequestContext, params: dict) -> dict:
        org, policy_id = self._policy(ctx, "UpdatePolicy", params.get("PolicyId"))
        name, description, content = params.get("Name"), params.get("Description"), params.get("Content")
        if name is not None:
            _check(name, _ANY, 1, 128)
        if description is not None:
            _check(description, _ANY, 0, 512)
        if content is not None:
            _check(content, _ANY, 1, 1_000_000)
        return {"Policy": self.scps.update(org, policy_id, name, description, content)}

    def delete_policy(self, ctx: RequestContext, params: dict) -> dict:
        org, policy_id = self._policy(ctx, "DeletePolicy", params.get("PolicyId"))
        self.scps.delete(org, policy_id)
        return {}

    def describe_policy(self, ctx: RequestContext, params: dict) -> dict:
        org, policy_id = self._policy(ctx, "DescribePolicy", params.get("PolicyId"))
        return {"Policy": self.scps.describe(org, policy_id)}

    def list_policies(self, ctx: RequestContext, params: dict) -> dict:
        policy_type = _policy_type(params.get("Filter"))
        org = self._managed(ctx, "ListPolicies", None, {"organizations:PolicyType": policy_type})
        return _page(self.scps.list(org, policy_type), params, "Policies")

    def list_targets_for_policy(self, ctx: RequestContext, params: dict) -> dict:
        org, policy_id = self._policy(ctx, "ListTargetsForPolicy", params.get("PolicyId"))
        return _page(self.scps.targets(org, policy_id), params, "Targets")

    # ---------------------------------------------------------------- attachments
    def _attachment(self, ctx: RequestContext, params: dict, operation: str) -> tuple[Organization, str, str]:
        target = _check(params.get("TargetId"), _TARGET_ID, 1, 100)
        org, policy_id = self._policy(ctx, operation, params.get("PolicyId"))
        # AWS authorizes the target too (the service authorization reference lists both resources)
        self._managed(ctx, operation, lambda o: self.scps.target_arn(o, target),
                      {"organizations:PolicyType": SCP_TYPE})
        return org, policy_id, target

    def attach_policy(self, ctx: RequestContext, params: dict) -> dict:
        self.scps.attach(*self._attachment(ctx, params, "AttachPolicy"))
        return {}

    def detach_policy(self, ctx: RequestContext, params: dict) -> dict:
        self.scps.detach(*self._attachment(ctx, params, "DetachPolicy"))
        return {}

    def list_policies_for_target(self, ctx: RequestContext, params: dict) -> dict:
        target = _check(params.get("TargetId"), _TARGET_ID, 1, 100)
        policy_type = _policy_type(params.get("Filter"))
        org = self._managed(ctx, "ListPoliciesForTarget", lambda o: self.scps.target_arn(o, target),
                            {"organizations:PolicyType": policy_type})
        return _page(self.scps.for_target(org, target, policy_type), params, "Policies")

    # ---------------------------------------------------------------- policy types on the root
    def _root_operation(self, ctx: RequestContext, params: dict, operation: str) -> tuple[Organization, str, str]:
        root = _check(params.get("RootId"), _ROOT_ID, 1, 34)
        policy_type = _policy_type(params.get("PolicyType"))
        org = self._managed(ctx, operation, lambda o: o.root_arn, {"organizations:PolicyType": policy_type})
        return org, root, policy_type

    def _root_out(self, org: Organization) -> dict:
        return {"Root": {"Id": org.root_id, "Arn": org.root_arn, "Name": "Root",
                         "PolicyTypes": self.scps.root_policy_types(org)}}

    def enable_policy_type(self, ctx: RequestContext, params: dict) -> dict:
        org, root, policy_type = self._root_operation(ctx, params, "EnablePolicyType")
        self.scps.enable(org, root, policy_type)
        return self._root_out(org)

    def disable_policy_type(self, ctx: RequestContext, params: dict) -> dict:
        org, root, policy_type = self._root_operation(ctx, params, "DisablePolicyType")
        self.scps.disable(org, root, policy_type)
        return self._root_out(org)
