"""Execution roles: which role a function may name, and the temporary credentials its environments get.

Control plane (`ExecutionRoles.check`, called by CreateFunction and UpdateFunctionConfiguration
through `Deps.roles`): as in AWS, the caller needs `iam:PassRole` on the role (with
`iam:PassedToService = lambda.amazonaws.com`), and the role must exist in the function's account
with a trust policy that lets `lambda.amazonaws.com` (or a configured equivalent principal)
perform `sts:AssumeRole`; otherwise InvalidParameterValueException "The role defined for the
function cannot be assumed by Lambda." (AccessDeniedException for a refused PassRole). The
server flag `--allow-unknown-roles` (development only) accepts roles that do not exist or do not
trust Lambda, with a warning; such functions run without credentials. PassRole is always checked.

Data plane (`ExecutionRoles.for_environment`, called by the invoker when it starts an environment):
an STS-style session for the role (iam/identity.py session keys: the secret sealed at rest, the
token stored only as a SHA-256), named after the function, as Lambda names it:
`arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION`. The plain secret and token exist only in this
process's memory and inside the environment (its process environment: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). Sessions last `ttl_s` (1 h); one session serves every
environment of a function version started while at least half of it remains, so a burst of cold
starts mints one session, not one each; before a cached session is handed to a new environment the
role is checked again (exists with the same unique id, still trusts Lambda). Sessions are bound to
the role's id (iam/principals.py), so a role deleted or recreated under the same name ends them.

Expiry: AWS sets the variables once, at init, and a process cannot change another's environment,
so rotation happens by replacement: the invoker lends an environment only while its credentials
outlive the invocation by `refresh_margin_s` (`fresh`); otherwise it discards it and starts a new
one with fresh credentials. Environments therefore live at most ~1 h minus timeout and margin,
below the pool's `--env-max-lifetime` (2 h). Invocations never see expired credentials.

A function whose role cannot be assumed at start (deleted since, trust changed, or accepted under
`--allow-unknown-roles`) runs without credentials and a warning is logged: it can call nothing.
AWS fails such invocations; lambdalet keeps functions created before roles were checked working.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from lambdalet.iam.authz import Authorizer, request_context
from lambdalet.iam.evaluation import service_may_assume
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import AccessDeniedException, InvalidParameterValueException

log = logging.getLogger("lambdalet.invoke")

LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
CANNOT_ASSUME = "The role defined for the function cannot be assumed by Lambda."
CREDENTIALS_TTL_S = 3600          # AWS STS default session length
REFRESH_MARGIN_S = 300            # an environment is replaced while its credentials still have this left
PURGE_INTERVAL_S = 600            # expired session keys are deleted from the database this often
_ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})$")

# The role every new data dir gets in the bootstrap account, so the README's and the test suite's
# `arn:aws:iam::000000000000:role/lambda-role` names a real role. Secure by default: it can write
# logs and nothing else (AWSLambdaBasicExecutionRole); grant more by attaching policies to it.
DEFAULT_ROLE_NAME = "lambda-role"
DEFAULT_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
LAMBDA_TRUST_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": LAMBDA_PRINCIPAL}, "Action": "sts:AssumeRole"}]})


def ensure_default_role(directory, account_id: str = "000000000000") -> bool:
    """Create `lambda-role` (trusting Lambda, basic execution only) in the bootstrap account if it
    is missing. Never changes an existing role. Returns True when it was created."""
    if directory.find_role(account_id, DEFAULT_ROLE_NAME) is not None:
        return False
    try:
        directory.create_role(account_id, DEFAULT_ROLE_NAME, LAMBDA_TRUST_POLICY,
                              description="lambdalet's default execution role: writes logs, nothing else.")
        directory.attach(account_id, "role", DEFAULT_ROLE_NAME, DEFAULT_ROLE_POLICY)
    except Exception as e:   # a concurrent creator, or the account does not exist yet: not fatal
        log.warning("could not create the default execution role %s: %s", DEFAULT_ROLE_NAME, e)
        return False
    return True


def parse_role_arn(arn: str) -> tuple[str, str] | None:
    """(account, role name) of an IAM role ARN in the aws partition, else None."""
    m = _ROLE_ARN.match(arn or "")
    return (m.group(1), m.group(2)) if m else None


@dataclass(frozen=True)
class IssuedCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float                 # epoch seconds
    role_arn: str
    session_arn: str
    role_id: str = ""                 # the role's unique id the session is bound to

    def env(self) -> dict[str, str]:
        """The variables Lambda sets in every environment."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_SESSION_TOKEN": self.session_token}

    def __repr__(self) -> str:        # never print secrets by accident
        return f"IssuedCredentials({self.access_key_id}, {self.session_arn}, expires_at={self.expires_at})"


class ExecutionRoles:
    def __init__(self, directory, identity, authorizer: Authorizer | None, *,
                 principals: Iterable[str] = (LAMBDA_PRINCIPAL,), allow_unknown: bool = False,
                 ttl_s: float = CREDENTIALS_TTL_S, refresh_margin_s: float = REFRESH_MARGIN_S,
                 clock: Callable[[], float] = time.time):
        self.directory = directory
        self.identity = identity
        self.authorizer = authorizer
        self.principals = tuple(principals) or (LAMBDA_PRINCIPAL,)
        self.allow_unknown = allow_unknown
        self.ttl_s = float(ttl_s)
        self.refresh_margin_s = float(refresh_margin_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str], IssuedCredentials] = {}
        self._warned: dict[tuple[str, str], float] = {}
        self._last_purge = 0.0

    # ---------------------------------------------------------------- control plane
    def check(self, ctx: RequestContext, function_arn: str, role_arn: str) -> None:
        """CreateFunction / UpdateFunctionConfiguration(Role): PassRole, then assumable by Lambda."""
        if self.authorizer is not None:
            keys = request_context(ctx)
            keys.update({"iam:PassedToService": LAMBDA_PRINCIPAL, "iam:AssociatedResourceArn": function_arn})
            parsed = parse_role_arn(role_arn)
            decision = self.authorizer.authorize(ctx.caller, "iam:PassRole", role_arn, keys,
                                                 resource_account=parsed[0] if parsed else None)
            if not decision.allowed:
                raise AccessDeniedException(decision.message(ctx.caller.principal_arn, "iam:PassRole", role_arn))
        account = _account_of_function(function_arn) or ctx.account_id
        if self.assumable(account, function_arn, role_arn) is not None:
            return
        if self.allow_unknown:
            log.warning("--allow-unknown-roles: %s accepted for %s although Lambda cannot assume it; the function "
                        "will run without credentials", role_arn, function_arn)
            return
        raise InvalidParameterValueException(CANNOT_ASSUME)

    def assumable(self, account_id: str, function_arn: str, role_arn: str) -> dict | None:
        """The role record when `role_arn` names a role of `account_id` whose trust policy lets one of
        the Lambda principals assume it (AWS passes a role only within its own account), else None."""
        parsed = parse_role_arn(role_arn)
        if parsed is None or parsed[0] != account_id:
            return None
        found = self.directory.trust_policy(account_id, parsed[1])
        if found is None:
            return None
        role, trust = found
        if role_arn != role["Arn"] and role_arn != f"arn:aws:iam::{account_id}:role/{parsed[1]}":
            return None       # a path that is not the role's
        now = self._clock()
        context: dict[str, Any] = {
            "aws:SourceAccount": account_id, "aws:SourceArn": function_arn,
            "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "aws:EpochTime": int(now)}
        for service in self.principals:
            if service_may_assume(service, role["Arn"], trust, account_id, context).allowed:
                return role
        return None

    # ---------------------------------------------------------------- data plane
    def for_environment(self, account_id: str, function_name: str, function_arn: str,
                        role_arn: str) -> IssuedCredentials | None:
        """Credentials for a new environment of this function, or None when the role cannot be
        assumed (logged). Sessions are shared by environments started while at least half remains."""
        if not role_arn:
            return None
        key = (account_id, function_arn, role_arn)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            # Checked even for a cached session (issue 21): the role must still exist with the id the
            # session was issued for and still trust Lambda, else nothing cached is handed out.
            role = self.assumable(account_id, function_arn, role_arn)
            if (hit is not None and role is not None and role["RoleId"] == hit.role_id
                    and hit.expires_at - now >= self.ttl_s / 2):
                return hit
            if role is None:
                self._cache.pop(key, None)
                self._warn(key, f"the role {role_arn} of {function_arn} cannot be assumed by Lambda: its environments "
                                "run without credentials")
                return None
            expires = now + self.ttl_s
            session_arn = f"arn:aws:sts::{account_id}:assumed-role/{role['RoleName']}/{function_name}"
            creds = self.identity.create_session(account_id, session_arn, f"{role['RoleId']}:{function_name}",
                                                 role["RoleId"], role["Arn"], function_name, expires,
                                                 source_function_arn=function_arn)   # lambda:SourceFunctionArn
            issued = IssuedCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token,
                                       expires, role["Arn"], session_arn, role["RoleId"])
            self._cache[key] = issued
            if len(self._cache) > 4096:      # drop the expired ones
                for k in [k for k, v in self._cache.items() if v.expires_at <= now]:
                    del self._cache[k]
            purge = now - self._last_purge >= PURGE_INTERVAL_S
            if purge:
                self._last_purge = now
        if purge:
            try:
                self.identity.purge_expired_sessions(now)
            except Exception:
                log.exception("purging expired session keys failed")
        return issued

    def fresh(self, expires_at: float, timeout_s: float) -> bool:
        """May an environment whose credentials expire at `expires_at` run one more invocation?"""
        return expires_at - self._clock() > float(timeout_s) + self.refresh_margin_s

    def _warn(self, key, message: str) -> None:
        now = self._clock()
        if now - self._warned.get(key[1:], 0.0) >= 300:
            self._warned[key[1:]] = now
            log.warning("%s", message)


def _account_of_function(function_arn: str) -> str | None:
    parts = (function_arn or "").split(":")
    return parts[4] if len(parts) > 5 and re.fullmatch(r"\d{12}", parts[4]) else None
