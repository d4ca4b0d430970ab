"""The STS API subset (awsQuery): GetCallerIdentity and AssumeRole.

AssumeRole is allowed when the policy engine allows `sts:AssumeRole` on the role's ARN with the
role's trust policy as the resource-based policy (and `sts:SetSourceIdentity` with a SourceIdentity,
`sts:TagSession` with Tags, the same way): a trust policy naming the caller (user ARN,
role ARN, session ARN) suffices in the same account; one naming only the account (`root`) needs an
identity-based Allow as well; across accounts both are needed. A missing role is refused exactly
like a refused one (AWS does not reveal which roles exist). Sessions are access keys with an
expiry and a session token (stored hashed) bound to the role's id; role chaining is limited to one
hour and passes on the SourceIdentity and transitive session tags, as in AWS. Session policies
(Policy, PolicyArns) limit the session (identity ∩ session policy, iam/policy.py).
"""
from __future__ import annotations

import re
import time

from lambdalet.iam.authz import Authorizer, request_context
from lambdalet.iam.directory import Directory
from lambdalet.iam.errors import AccessDenied, MalformedPolicyDocument, ValidationError
from lambdalet.iam.policy import MalformedPolicy, parse_policy
from lambdalet.models.context import RequestContext

_ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})$")
CHAINED_MAX_S = 3600


class StsService:
    def __init__(self, directory: Directory, identity, authorizer: Authorizer, *, clock=time.time):
        self.directory = directory
        self.identity = identity
        self.authorizer = authorizer
        self._clock = clock

    def get_caller_identity(self, ctx: RequestContext, params: dict) -> dict:
        """Never needs permission (AWS: even an explicit Deny cannot stop it)."""
        c = ctx.caller
        return {"UserId": c.user_id or c.account_id, "Account": c.account_id, "Arn": c.principal_arn,
                "ResponseMetadata": {"RequestId": ctx.request_id}}

    def assume_role(self, ctx: RequestContext, params: dict) -> dict:
        arn, session_name = params["RoleArn"], params["RoleSessionName"]
        caller = ctx.caller
        m = _ROLE_ARN.match(arn)
        if not m:
            raise ValidationError(f"{arn} is invalid")
        if params.get("SerialNumber") or params.get("TokenCode"):
            raise ValidationError("lambdalet does not support MFA.")
        session_policies = _session_policies(params)
        account, role_name = m.group(1), m.group(2)
        found = self.directory.trust_policy(account, role_name)
        refusal = AccessDenied(f"User: {caller.principal_arn} is not authorized to perform: sts:AssumeRole on "
                               f"resource: {arn}")
        if found is None:
            raise refusal
        role, trust = found
        if role["Arn"] != arn and arn != f"arn:aws:iam::{account}:role/{role_name}":
            raise refusal   # a path that is not the role's
        # What a chained session passes on (AWS: SourceIdentity cannot change; transitive tags persist).
        mine = self.authorizer.principal_policies(caller) if ":assumed-role/" in caller.principal_arn else None
        inherited_source = (mine.context.get("aws:SourceIdentity") if mine else None)
        source_identity = params.get("SourceIdentity")
        if source_identity is not None:
            _check_source_identity(source_identity)
            if inherited_source is not None and source_identity != inherited_source:
                raise AccessDenied("The source identity of a role session cannot be changed by role chaining.")
        tags, transitive = _session_tags(params, dict(mine.transitive_tags) if mine else {})
        context = request_context(ctx)
        context["sts:RoleSessionName"] = session_name
        if params.get("ExternalId") is not None:
            context["sts:ExternalId"] = params["ExternalId"]
        if source_identity is not None:
            context["sts:SourceIdentity"] = source_identity
        if params.get("Tags"):
            context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
            context["aws:TagKeys"] = [t["Key"] for t in params["Tags"]]
            context["sts:TransitiveTagKeys"] = list(params.get("TransitiveTagKeys") or [])
        # AWS: the trust policy must allow each of these too (IAM User Guide: "Monitor and control
        # actions taken with assumed roles" for SetSourceIdentity, "Passing session tags in AWS STS").
        actions = ["sts:AssumeRole"]
        if source_identity is not None or inherited_source is not None:
            actions.append("sts:SetSourceIdentity")     # every role of a chain that carries one
            context["sts:SourceIdentity"] = source_identity or inherited_source
        if params.get("Tags"):
            actions.append("sts:TagSession")
        for action in actions:
            decision = self.authorizer.authorize(caller, action, role["Arn"], context, trust,
                                                 resource_account=account, resource_policy_required=True)
            if not decision.allowed:
                raise AccessDenied(f"User: {caller.principal_arn} is not authorized to perform: {action} on "
                                   f"resource: {arn}")
        source_identity = source_identity or inherited_source

        chained = ":assumed-role/" in caller.principal_arn
        duration = params.get("DurationSeconds")
        if duration is None:
            duration = 3600
        if chained and duration > CHAINED_MAX_S:
            raise ValidationError("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed "
                                  "by role chaining.")
        if duration > role["MaxSessionDuration"]:
            raise ValidationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
        if duration < 900:
            raise ValidationError(f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to "
                                  "satisfy constraint: Member must have value greater than or equal to 900")
        expires = self._clock() + duration
        session_arn = f"arn:aws:sts::{account}:assumed-role/{role['RoleName']}/{session_name}"
        user_id = f"{role['RoleId']}:{session_name}"
        creds = self.identity.create_session(account, session_arn, user_id, role["RoleId"], role["Arn"], session_name,
                                             int(expires), source_identity=source_identity,
                                             session_policies=session_policies,
                                             tags={"Tags": tags, "Transitive": transitive} if tags else None)
        out = {"Credentials": {"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key,
                               "SessionToken": creds.session_token, "Expiration": float(int(expires))},
               "AssumedRoleUser": {"AssumedRoleId": user_id, "Arn": session_arn},
               "ResponseMetadata": {"RequestId": ctx.request_id}}
        if source_identity:
            out["SourceIdentity"] = source_identity
        if session_policies is not None:
            out["PackedPolicySize"] = min(100, (len(params.get("Policy") or "") + 200 * len(
                session_policies["PolicyArns"])) * 100 // 2048)
        return out


_SOURCE_IDENTITY = re.compile(r"^[\w+=,.@-]{2,256}$")      # botocore: min 2, max 256
_TAG_KEY = re.compile(r"^[\w\s_.:/=+\-@]{1,128}$")
MAX_SESSION_TAGS = 50
MAX_POLICY_ARNS = 10


def _check_source_identity(value: str) -> None:
    if not _SOURCE_IDENTITY.match(value) or value.lower().startswith("aws:"):
        raise ValidationError(f"1 validation error detected: Value '{value}' at 'sourceIdentity' failed to satisfy "
                              "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*")


def _session_policies(params: dict) -> dict | None:
    """AssumeRole's Policy / PolicyArns, validated; None when neither was passed."""
    inline, arns = params.get("Policy"), [p.get("arn") for p in params.get("PolicyArns") or []]
    if inline is None and not arns:
        return None
    if len(arns) > MAX_POLICY_ARNS or any(not isinstance(a, str) or not a.startswith("arn:") for a in arns):
        raise ValidationError("The PolicyArns list must contain at most 10 valid managed policy ARNs.")
    if inline is not None:
        try:
            parse_policy(inline, "identity")
        except MalformedPolicy as e:
            raise MalformedPolicyDocument(str(e)) from None
    return {"Policy": inline, "PolicyArns": arns}


def _session_tags(params: dict, inherited: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(session tags, transitive keys): the caller's transitive tags carried over, then the new ones
    (AWS refuses a new tag that would override an inherited transitive one)."""
    new = params.get("Tags") or []
    if len(new) > MAX_SESSION_TAGS:
        raise ValidationError(f"1 validation error detected: Value at 'tags' failed to satisfy constraint: Member "
                              f"must have length less than or equal to {MAX_SESSION_TAGS}")
    tags = dict(inherited)
    seen = set()
    for t in new:
        key, value = t["Key"], t.get("Value", "")
        if not _TAG_KEY.match(key) or len(value) > 256 or key.lower().startswith("aws:"):
            raise ValidationError(f"The tag {key} is invalid.")
        if key.lower() in seen:
            raise ValidationError("Duplicate tag keys found. Please note that Tag keys are case insensitive.")
        seen.add(key.lower())
        if any(k.lower() == key.lower() for k in inherited):
            raise ValidationError(f"One or more of the specified transitive tag keys ({key}) can't be set "
                                        "because they conflict with values specified in a session tag.")
        tags[key] = value
    transitive = list(inherited) + [k for k in params.get("TransitiveTagKeys") or [] if k not in inherited]
    if any(k not in tags for k in transitive):
        raise ValidationError("The specified transitive tag key must be included in the requested tags.")
    return tags, transitive
