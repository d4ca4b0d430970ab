"""The authorization hook: who may do what, decided by the policy engine over the directory.

    authorizer = Authorizer(directory)
    decision = authorizer.authorize(ctx.caller, "lambda:GetFunction", function_arn,
                                    request_context(ctx), resource_policy=function_policy_or_None)
    if not decision: raise AccessDeniedException(decision.message(...))

or, in one call, `authorizer.check(ctx, action, resource_arn, ...)` which raises the refusal with
AWS's wording. For Lambda, `lambda_request(operation, params, ctx)` turns an operation and its
input into (action, resource ARN, request condition keys) from data/lambda_actions.json.

The bootstrap administrator is not special-cased: it holds AdministratorAccess (attached by
IdentityStore/Directory at bootstrap), so its rights come from a policy like anyone else's.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lambdalet.iam.policy import EXPLICIT_DENY, IDENTITY, IMPLICIT_DENY, Decision, MalformedPolicy, Policy, \
    Principal, Request, build_context, evaluate, evaluate_scps, parse_policy
from lambdalet.iam.principals import PrincipalPolicies
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.function_ref import split_function_ref
from lambdalet.models.errors import AccessDeniedException, AwsError

_ACCOUNT_RE = re.compile(r"^\d{12}$")
# Condition keys about the caller that only the platform's records may set (lower case prefixes).
_PLATFORM_KEYS = ("aws:principaltag/", "aws:principalorgid", "aws:principalorgpaths", "aws:sourceidentity",
                  "aws:tokenissuetime", "lambda:sourcefunctionarn")
_SERVICE_LINKED = ":role/aws-service-role/"     # SCPs never restrict service-linked roles
LAMBDA_ACTIONS_PATH = Path(__file__).resolve().parent.parent / "data" / "lambda_actions.json"


def principal_of(caller: Caller, role_arn: str | None = None) -> Principal:
    return Principal.from_arn(caller.principal_arn, caller.user_id, role_arn)


def request_context(ctx: RequestContext, *, now: float | None = None) -> dict[str, Any]:
    """Global condition keys every request carries."""
    now = time.time() if now is None else now
    keys: dict[str, Any] = {
        "aws:CurrentTime": dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": int(now),
        "aws:RequestedRegion": ctx.region,
        "aws:SecureTransport": ctx.base_url.startswith("https:"),
    }
    if ctx.source_ip:
        keys["aws:SourceIp"] = ctx.source_ip
    if ctx.user_agent:
        keys["aws:UserAgent"] = ctx.user_agent
    return keys


def _resource_account(resource_arn: str) -> str | None:
    parts = resource_arn.split(":", 5)
    if len(parts) == 6 and _ACCOUNT_RE.match(parts[4]):
        return parts[4]
    return None


class Authorizer:
    CACHE_ENTRIES = 4096

    def __init__(self, directory, *, resource_tags: Callable[[str], Mapping[str, str]] | None = None,
                 principal_org: Callable[[str], tuple[str, str] | None] | None = None,
                 service_control: Callable[[str], Sequence[Sequence[Policy]] | None] | None = None):
        self.directory = directory
        self.resource_tags = resource_tags     # ARN -> tags, for aws:ResourceTag/<key> (IAM users and roles:
        # iam/resource_tags.py)
        # account -> (organization id, root id) or None (iam/organizations.OrganizationStore.principal_org),
        # so every decision sees aws:PrincipalOrgID / aws:PrincipalOrgPaths (None: no organizations served).
        self.principal_org = principal_org
        # account -> the SCPs of each level above its principals (root, account), None when none apply
        # (the management account, no organization, SCPs disabled): iam/scp.ServiceControlPolicies.levels.
        self.service_control = service_control
        self._policies: dict[tuple[str, str], tuple[int, list[Policy]]] = {}

    def principal_policies(self, caller: Caller) -> PrincipalPolicies:
        """Identity policies, boundary, session policies and tags of the caller, read once per
        principal (per session key for role sessions) and kept until the directory writes anything
        (its generation moves), so a warm request reads no rows and parses no JSON."""
        session_key = caller.access_key_id if ":assumed-role/" in caller.principal_arn else ""
        key = (caller.account_id, caller.principal_arn, session_key)
        generation = getattr(self.directory, "generation", None)
        if not isinstance(generation, int):      # a directory without one is never cached
            generation = None
        hit = self._policies.get(key)
        if hit is not None and generation is not None and hit[0] == generation:
            return hit[1]
        if hasattr(self.directory, "principal_policies"):
            found = self.directory.principal_policies(caller.account_id, caller.principal_arn, session_key)
        else:    # a directory offering only identity policies (tests' fakes)
            found = PrincipalPolicies(True, tuple(self.directory.identity_policies(caller.account_id,
                                                                                   caller.principal_arn)))
        if generation is not None:
            if len(self._policies) >= self.CACHE_ENTRIES:
                self._policies.clear()
            self._policies[key] = (generation, found)
        return found

    def identity_policies(self, caller: Caller) -> list[Policy]:
        return list(self.principal_policies(caller).identity)

    def authorize(self, caller: Caller, action: str, resource_arn: str, context: Mapping[str, Any] | None = None,
                  resource_policy: Mapping | str | Policy | None = None, *, resource_account: str | None = None,
                  resource_policy_required: bool = False) -> Decision:
        who = principal_of(caller)
        # What only the platform knows about the caller is never taken from the request.
        extra = {k: v for k, v in (context or {}).items() if not k.lower().startswith(_PLATFORM_KEYS)}
        facts = PrincipalPolicies(True)
        if who.kind not in ("service", "anonymous"):
            facts = self.principal_policies(caller)
            if not facts.exists and who.kind in ("user", "assumed-role"):
                # the user, or the role the session was issued for (by id), no longer exists
                return Decision(IMPLICIT_DENY, missing=IDENTITY)
            for k, v in facts.tags.items():
                extra[f"aws:PrincipalTag/{k}"] = v
            extra.update(facts.context)
        if self.principal_org is not None and who.kind not in ("service", "anonymous") and who.account_id:
            org = self.principal_org(who.account_id)     # the platform's record, never the request's
            if org is not None:
                extra["aws:PrincipalOrgID"] = org[0]
                extra["aws:PrincipalOrgPaths"] = [f"{org[0]}/{org[1]}/"]
        if self.resource_tags is not None and resource_arn != "*":
            iam_resource = resource_arn.split(":", 3)[2:3] == ["iam"]
            for k, v in (self.resource_tags(resource_arn) or {}).items():
                extra.setdefault(f"aws:ResourceTag/{k}", v)
                if iam_resource:         # IAM users and roles also answer to iam:ResourceTag/<key>
                    extra.setdefault(f"iam:ResourceTag/{k}", v)
        if resource_policy is not None and not isinstance(resource_policy, Policy):
            try:
                resource_policy = parse_policy(resource_policy, "resource", label="resource-policy")
            except MalformedPolicy:
                resource_policy = None
        account = resource_account or _resource_account(resource_arn) or caller.account_id
        request = Request(who, action, resource_arn, build_context(who, extra))
        scp = self._scp_refusal(request)
        if scp is not None and scp.effect == EXPLICIT_DENY:
            return scp
        decision = evaluate(request, facts.identity, resource_policy, account,
                            resource_policy_required=resource_policy_required, boundary=facts.boundary,
                            session_policies=facts.session_policies)
        # SCPs limit whatever granted it, a resource-based policy included ("SCP evaluation")
        return scp if (scp is not None and decision.allowed) else decision

    def _scp_refusal(self, request: Request) -> Decision | None:
        who = request.principal
        if self.service_control is None or who.kind in ("service", "anonymous") or not who.account_id:
            return None
        if _SERVICE_LINKED in (who.role_arn or who.arn):
            return None
        levels = self.service_control(who.account_id)
        return evaluate_scps(request, levels) if levels is not None else None

    def check(self, ctx: RequestContext, action: str, resource_arn: str, context: Mapping[str, Any] | None = None,
              resource_policy: Mapping | str | Policy | None = None, *,
              error: type[AwsError] = AccessDeniedException, resource_account: str | None = None) -> Decision:
        keys = request_context(ctx)
        keys.update(context or {})
        decision = self.authorize(ctx.caller, action, resource_arn, keys, resource_policy,
                                  resource_account=resource_account)
        if not decision.allowed:
            raise error(decision.message(ctx.caller.principal_arn, action, resource_arn))
        return decision


# ---------------------------------------------------------------- Lambda's table


@lru_cache(maxsize=1)
def lambda_actions() -> dict:
    return json.loads(LAMBDA_ACTIONS_PATH.read_text())


_LAYER_ARN = re.compile(r"^arn:[a-z-]+:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:(?P<name>[A-Za-z0-9_-]+)$")


def _function_parts(value: str) -> tuple[str | None, str | None, str, str | None]:
    """FunctionName as the service reads it (models/function_ref.py): region, account, name, qualifier."""
    m = split_function_ref(value or "")
    if m is None:
        return None, None, value, None
    return m.region, m.account, m.name, m.qualifier


def _dig(params: Mapping[str, Any], path: str) -> Any:
    cur: Any = params
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def lambda_request(operation: str, params: Mapping[str, Any], ctx: RequestContext) -> tuple[str, str, dict]:
    """(IAM action, resource ARN, request condition keys) for one Lambda API call."""
    table = lambda_actions()
    entry = table["operations"].get(operation)
    if entry is None:
        return f"lambda:{operation}", "*", {}
    rtype = entry["resource_type"]
    template = table["resource_types"].get(rtype, "*")
    region, account = ctx.region, ctx.account_id
    values: dict[str, str] = {k: str(v) for k, v in params.items() if isinstance(v, (str, int))}
    keys: dict[str, Any] = {}
    if rtype == "function":
        r, a, name, qualifier = _function_parts(str(params.get("FunctionName", "")))
        region, account = r or region, a or account
        values["FunctionName"] = name
        qualifier = params.get("Qualifier") or qualifier
        if operation == "CreateAlias" or operation in ("GetAlias", "UpdateAlias", "DeleteAlias"):
            qualifier = None   # alias operations act on the function ARN
        if entry.get("qualified") and qualifier:
            template += ":{Qualifier}"
            values["Qualifier"] = str(qualifier)
    elif "resource_param" in entry:
        template = "{" + entry["resource_param"] + "}"
    elif rtype in ("layer", "layerVersion"):
        m = _LAYER_ARN.match(str(params.get("LayerName", "")))    # LayerName may be a layer ARN
        if m:
            region, account, values["LayerName"] = m["region"], m["account"], m["name"]
    values.update(Region=region, Account=account)
    try:
        arn = template.format(**values)
    except (KeyError, IndexError):
        arn = "*"
    for key, member in (entry.get("condition_keys") or {}).items():
        if member.startswith("@"):
            continue
        value = _dig(params, member)
        if value is None:
            continue
        if key == "aws:TagKeys":
            keys[key] = list(value) if isinstance(value, (list, tuple)) else list(value.keys())
        elif key.startswith("aws:RequestTag/") and isinstance(value, Mapping):
            for k, v in value.items():
                keys[f"aws:RequestTag/{k}"] = v
        elif key == "lambda:FunctionArn":
            r, a, name, q = _function_parts(str(value))
            keys[key] = f"arn:aws:lambda:{r or ctx.region}:{a or ctx.account_id}:function:{name}" + (f":{q}" if q else "")
        else:
            keys[key] = value
    return entry["action"], arn, keys
