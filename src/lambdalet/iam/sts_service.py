"""The STS API subset (awsQuery): GetCallerIdentity and AssumeRole.

AssumeRole is allowed when the policy engine allows `sts:AssumeRole` on the role's ARN with the
role's trust policy as the resource-based policy: a trust policy naming the caller (user ARN,
role ARN, session ARN) suffices in the same account; one naming only the account (`root`) needs an
identity-based Allow as well; across accounts both are needed. A missing role is refused exactly
like a refused one (AWS does not reveal which roles exist). Sessions are access keys with an
expiry and a session token (stored hashed); role chaining is limited to one hour, as in AWS.
"""
from __future__ import annotations

import re
import time

from lambdalet.iam.authz import Authorizer, request_context
from lambdalet.iam.directory import Directory
from lambdalet.iam.errors import AccessDenied, ValidationError
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
        if params.get("Policy") or params.get("PolicyArns"):
            raise ValidationError("lambdalet does not support session policies (Policy, PolicyArns) yet.")
        if params.get("Tags") or params.get("TransitiveTagKeys"):
            raise ValidationError("lambdalet does not support session tags yet.")
        if params.get("SerialNumber") or params.get("TokenCode"):
            raise ValidationError("lambdalet does not support MFA.")
        account, role_name = m.group(1), m.group(2)
        found = self.directory.trust_policy(account, role_name)
        refusal = AccessDenied(f"User: {caller.principal_arn} is not authorized to perform: sts:AssumeRole on "
                               f"resource: {arn}")
        if found is None:
            raise refusal
        role, trust = found
        if role["Arn"] != arn and arn != f"arn:aws:iam::{account}:role/{role_name}":
            raise refusal   # a path that is not the role's
        context = request_context(ctx)
        context["sts:RoleSessionName"] = session_name
        if params.get("ExternalId") is not None:
            context["sts:ExternalId"] = params["ExternalId"]
        if params.get("SourceIdentity") is not None:
            context["sts:SourceIdentity"] = params["SourceIdentity"]
        decision = self.authorizer.authorize(caller, "sts:AssumeRole", role["Arn"], context, trust,
                                             resource_account=account, resource_policy_required=True)
        if not decision.allowed:
            raise refusal

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
                                             int(expires))
        out = {"Credentials": {"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key,
                               "SessionToken": creds.session_token, "Expiration": float(int(expires))},
               "AssumedRoleUser": {"AssumedRoleId": user_id, "Arn": session_arn},
               "ResponseMetadata": {"RequestId": ctx.request_id}}
        if params.get("SourceIdentity"):
            out["SourceIdentity"] = params["SourceIdentity"]
        return out
