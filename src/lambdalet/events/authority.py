"""Whose authority the platform acts with when it works for a tenant in the background: the tenant's
role, never the platform's. Lambda polls a mapping's queue and sends destination records and
dead-letter messages as the function's execution role; EventBridge Scheduler invokes a target and
writes its dead-letter queue as the schedule's RoleArn. Each such action is decided by the policy
engine with the role's identity policies (and boundary), as the role itself: no credentials are minted
for it. This happens at configuration time where AWS checks then, and again at delivery time.

    authority = RoleAuthority(directory, authorizer)
    decision = authority.role_may(role_arn, "sqs:SendMessage", queue_arn)
    if not decision: ...drop / report, never fall back to the platform's own authority

A role that does not exist (deleted since, or never), or whose ARN names another account than the
resource's owner expects, is refused like a missing permission. Resources of lambdalet (queues,
functions) have no resource policies the role could rely on, so a same-account identity Allow is what
grants; for a queue on an external SQS endpoint the role's identity policy is still required (the
endpoint's own credentials are the operator's; this keeps a tenant from borrowing them for a queue its
role was never allowed to read).

Decisions read no rows on a warm path: roles are cached until the directory's generation moves, and
the Authorizer caches the role's parsed policies the same way.

`wire(platform, directory, authorizer)` hands one instance to every component that acts for tenants
(server/run.py calls it next to the execution roles). Without it (unit tests building the parts by
hand) the components check nothing.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from lambdalet.iam.evaluation import EXPLICIT_DENY, IMPLICIT_DENY, Decision, service_may_assume
from lambdalet.models.context import Caller

_ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})$")
SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"


def parse_role_arn(arn: Any) -> tuple[str, str] | None:
    m = _ROLE_ARN.match(arn) if isinstance(arn, str) else None
    return (m.group(1), m.group(2)) if m else None


@dataclass(frozen=True)
class Refusal:
    """A refusal for a role that cannot act at all (missing, malformed ARN): falsy like a Decision."""
    reason: str
    effect: str = IMPLICIT_DENY

    @property
    def allowed(self) -> bool:
        return False

    def __bool__(self) -> bool:
        return False

    def message(self, principal_arn: str, action: str, resource: str, **_) -> str:
        return f"{principal_arn} is not authorized to perform: {action} on resource: {resource} ({self.reason})"


class RoleAuthority:
    def __init__(self, directory, authorizer, *, clock=time.time):
        self.directory = directory
        self.authorizer = authorizer
        self._clock = clock
        self._lock = threading.Lock()
        self._roles: dict[tuple[str, str], tuple[int, dict | None]] = {}

    # ---------------------------------------------------------------- roles
    def role(self, role_arn: str) -> dict | None:
        """The role record `role_arn` names (its path must match), else None. Cached per generation."""
        parsed = parse_role_arn(role_arn)
        if parsed is None:
            return None
        generation = getattr(self.directory, "generation", None)
        key = parsed
        with self._lock:
            hit = self._roles.get(key)
        if hit is not None and isinstance(generation, int) and hit[0] == generation:
            role = hit[1]
        else:
            role = self.directory.find_role(*parsed)
            if isinstance(generation, int):
                with self._lock:
                    if len(self._roles) > 4096:
                        self._roles.clear()
                    self._roles[key] = (generation, role)
        if role is None:
            return None
        if role_arn != role["Arn"] and role_arn != f"arn:aws:iam::{parsed[0]}:role/{parsed[1]}":
            return None          # a path that is not the role's
        return role

    @staticmethod
    def as_role(role: dict) -> Caller:
        """The role itself as the caller: its identity policies, boundary and tags decide (there is no
        session key to look up: the platform never mints credentials for these decisions)."""
        return Caller(account_id=role["Arn"].split(":")[4], principal_arn=role["Arn"], access_key_id="",
                      user_id=role["RoleId"])

    @staticmethod
    def session_arn(role: dict, session_name: str) -> str:
        """The session ARN refusals name, as AWS names the service's session of the role."""
        return f"arn:aws:sts::{role['Arn'].split(':')[4]}:assumed-role/{role['RoleName']}/{session_name}"

    def _global_keys(self, region: str | None) -> dict[str, Any]:
        now = self._clock()
        keys: dict[str, Any] = {
            "aws:CurrentTime": dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:EpochTime": int(now), "aws:SecureTransport": True}
        if region:
            keys["aws:RequestedRegion"] = region
        return keys

    # ---------------------------------------------------------------- decisions
    def role_may(self, role_arn: str, action: str, resource_arn: str, *, session_name: str = "lambdalet",
                 region: str | None = None, context: dict | None = None, same_account: bool = False
                 ) -> Decision | Refusal:
        """May a session of `role_arn` perform `action` on `resource_arn`? `same_account` evaluates a
        resource outside lambdalet's accounts (an external queue) by the role's identity policy alone."""
        role = self.role(role_arn)
        if role is None:
            return Refusal("the role does not exist")
        caller = self.as_role(role)
        keys = self._global_keys(region)
        keys.update(context or {})
        return self.authorizer.authorize(caller, action, resource_arn, keys,
                                         resource_account=caller.account_id if same_account else None)

    def principal_of(self, role_arn: str, session_name: str = "lambdalet") -> str:
        """The session ARN refusals name (the role ARN itself when the role is gone)."""
        role = self.role(role_arn)
        return self.session_arn(role, session_name) if role else role_arn

    def trusts(self, role_arn: str, service: str, *, source_account: str, source_arn: str | None = None) -> bool:
        """Does the role's trust policy let `service` assume it for `source_account` (and `source_arn`)?"""
        parsed = parse_role_arn(role_arn)
        if parsed is None or parsed[0] != source_account:
            return False
        found = self.directory.trust_policy(*parsed)
        if found is None:
            return False
        role, trust = found
        if role_arn != role["Arn"] and role_arn != f"arn:aws:iam::{parsed[0]}:role/{parsed[1]}":
            return False
        keys = self._global_keys(None)
        keys["aws:SourceAccount"] = source_account
        if source_arn:
            keys["aws:SourceArn"] = source_arn
        return bool(service_may_assume(service, role["Arn"], trust, source_account, keys).allowed)

    def pass_role(self, caller: Caller, role_arn: str, service: str, *, associated_arn: str | None = None,
                  context: dict | None = None) -> Decision:
        """iam:PassRole for handing `role_arn` to `service` (the caller's identity policies decide)."""
        keys = dict(context or {})
        keys["iam:PassedToService"] = service
        if associated_arn:
            keys["iam:AssociatedResourceArn"] = associated_arn
        parsed = parse_role_arn(role_arn)
        return self.authorizer.authorize(caller, "iam:PassRole", role_arn, keys,
                                         resource_account=parsed[0] if parsed else None)


def denied_explicitly(decision) -> bool:
    return getattr(decision, "effect", None) == EXPLICIT_DENY

