"""The policy language and AWS's evaluation logic. Pure: documents and request in, Decision out.

Evaluation (IAM User Guide, "Policy evaluation logic"; RCPs do not exist on this platform; SCPs are
`evaluate_scps`, applied by iam/authz.py to principals of member accounts):
1. Every applicable statement is evaluated: the caller's identity-based policies (no Principal
   element), its permissions boundary and session policies (when it has them), and the resource's
   resource-based policy (statements whose Principal/NotPrincipal names the caller).
2. An explicit Deny in any of them wins.
3. Same account: an Allow in an identity-based policy OR a resource-based policy statement that
   names the caller allows, subject to the boundary and session policies as that page says:
   - a resource-based policy naming the IAM user's ARN, the role session's ARN (or "*") grants
     directly: an implicit deny in a permissions boundary or session policy does not limit it;
   - one naming the role's ARN grants to its sessions, limited by their boundary/session policy;
   - identity-based Allows count only where the boundary and the session policies also allow
     (effective permissions = identity ∩ boundary ∩ session policy).
   A resource policy that names only the account (`123456789012` / `arn:aws:iam::…:root`)
   delegates to the account: its IAM users and roles still need an (effective) identity-based Allow.
4. Cross account: the caller's effective identity-based permissions AND the resource policy
   (naming the caller, its role or its account) must both allow.
5. Otherwise: implicit deny.
NotPrincipal (IAM User Guide, "AWS JSON policy elements: NotPrincipal"): a caller is exempt only
when every entity of its chain is listed — the account (root ARN or id) and the user, or the
account, the role and the assumed-role session ARN; listing the account exempts only the root user.
Service principals and anonymous callers have no identity policies: only the resource policy can
allow them. The account root user is allowed everything in its own account unless explicitly denied.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from lambdalet.iam.arnmatch import action_match
from lambdalet.iam.conditions import (
    ConditionError,
    ContextValues,
    arn_wildcard_match,
    evaluate_condition_block,
    substitute,
    validate_condition_block,
)

VERSION_2012 = "2012-10-17"
VERSION_2008 = "2008-10-17"
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_ACTION_RE = re.compile(r"^(\*|[A-Za-z0-9*?-]+:[A-Za-z0-9*?]+)$")
MAX_POLICY_BYTES = 131072


class MalformedPolicy(ValueError):
    """A document AWS would refuse with MalformedPolicyDocument; the message is AWS's wording."""


# ---------------------------------------------------------------- documents


@dataclass(frozen=True)
class Statement:
    effect: str                                   # "Allow" | "Deny"
    sid: str = ""
    action: tuple[str, ...] | None = None
    not_action: tuple[str, ...] | None = None
    resource: tuple[str, ...] | None = None
    not_resource: tuple[str, ...] | None = None
    principal: Mapping[str, tuple[str, ...]] | None = None       # {"AWS": (...), "Service": (...)} or {"*": ("*",)}
    not_principal: Mapping[str, tuple[str, ...]] | None = None
    condition: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    version: str = VERSION_2008
    id: str = ""
    label: str = ""        # where it came from (policy ARN or inline name), for Decision.matched

    @property
    def variables(self) -> bool:
        return self.version == VERSION_2012


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or any(not isinstance(x, str) for x in items):
        raise MalformedPolicy("Syntax errors in policy.")
    return tuple(items)


def _principal_spec(value: Any) -> dict[str, tuple[str, ...]]:
    if value == "*":
        return {"*": ("*",)}
    if not isinstance(value, dict) or not value:
        raise MalformedPolicy("Syntax errors in policy.")
    out = {}
    for kind, ids in value.items():
        if kind not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise MalformedPolicy(f"Invalid principal in policy: \"{kind}\"")
        out[kind] = _strings(ids, "Principal")
    return out


_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "NotPrincipal",
                   "Condition"}


def parse_policy(doc: str | Mapping[str, Any], kind: str = "identity", label: str = "") -> Policy:
    """Parse and validate. kind: "identity" (no Principal, Resource required), "resource"
    (Principal required) or "trust" (a role's trust policy: Principal required, no Resource)."""
    if isinstance(doc, (str, bytes)):
        if len(doc) > MAX_POLICY_BYTES:
            raise MalformedPolicy("Policy document is too large.")
        try:
            doc = json.loads(doc)
        except (ValueError, UnicodeDecodeError):
            raise MalformedPolicy("Syntax errors in policy.") from None
    if not isinstance(doc, dict):
        raise MalformedPolicy("Syntax errors in policy.")
    unknown = set(doc) - {"Version", "Id", "Statement"}
    if unknown:
        raise MalformedPolicy("Syntax errors in policy.")
    version = doc.get("Version", VERSION_2008)
    if version not in (VERSION_2012, VERSION_2008):
        raise MalformedPolicy("The policy failed legacy parsing")
    raw = doc.get("Statement")
    if raw is None:
        raise MalformedPolicy("Syntax errors in policy.")
    raw_list = raw if isinstance(raw, list) else [raw]
    if not raw_list:
        raise MalformedPolicy("Syntax errors in policy.")
    statements = []
    sids = set()
    for st in raw_list:
        if not isinstance(st, dict) or set(st) - _STATEMENT_KEYS:
            raise MalformedPolicy("Syntax errors in policy.")
        effect = st.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise MalformedPolicy("Syntax errors in policy.")
        sid = st.get("Sid", "")
        if not isinstance(sid, str):
            raise MalformedPolicy("Syntax errors in policy.")
        if sid:
            if sid in sids:
                raise MalformedPolicy("Statement IDs (SID) in a single policy must be unique.")
            sids.add(sid)
        if ("Action" in st) == ("NotAction" in st):
            raise MalformedPolicy("Policy statement must contain actions." if "Action" not in st
                                  else "Syntax errors in policy.")
        action = _strings(st["Action"], "Action") if "Action" in st else None
        not_action = _strings(st["NotAction"], "NotAction") if "NotAction" in st else None
        for a in action or not_action:
            if not _ACTION_RE.match(a):
                raise MalformedPolicy("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")
        if "Resource" in st and "NotResource" in st:
            raise MalformedPolicy("Syntax errors in policy.")
        resource = _strings(st["Resource"], "Resource") if "Resource" in st else None
        not_resource = _strings(st["NotResource"], "NotResource") if "NotResource" in st else None
        if "Principal" in st and "NotPrincipal" in st:
            raise MalformedPolicy("Syntax errors in policy.")
        principal = _principal_spec(st["Principal"]) if "Principal" in st else None
        not_principal = _principal_spec(st["NotPrincipal"]) if "NotPrincipal" in st else None
        if kind == "identity":
            if principal is not None or not_principal is not None:
                raise MalformedPolicy("Policy document should not specify a principal.")
            if resource is None and not_resource is None:
                raise MalformedPolicy("Policy statement must contain resources.")
        else:
            if principal is None and not_principal is None:
                raise MalformedPolicy("Missing required field Principal")
            if kind == "trust" and (resource is not None or not_resource is not None):
                raise MalformedPolicy("Has prohibited field Resource")
            if kind == "resource" and resource is None and not_resource is None:
                raise MalformedPolicy("Policy statement must contain resources.")
        if kind == "trust" and not_principal is not None:
            raise MalformedPolicy("AssumeRole policy may not contain NotPrincipal")
        condition = st.get("Condition")
        if condition is not None:
            try:
                validate_condition_block(condition)
            except ConditionError as e:
                raise MalformedPolicy(str(e)) from None
        statements.append(Statement(effect, sid, action, not_action, resource, not_resource, principal,
                                    not_principal, condition))
    return Policy(tuple(statements), version, doc.get("Id", "") if isinstance(doc.get("Id", ""), str) else "", label)


# ---------------------------------------------------------------- who is asking


@dataclass(frozen=True)
class Principal:
    """The authenticated caller as the policy engine sees it."""
    arn: str                     # user / assumed-role session / root ARN, or a service name
    account_id: str              # "" for services and anonymous callers
    kind: str                    # "user" | "assumed-role" | "root" | "service" | "anonymous"
    user_id: str = ""
    role_arn: str | None = None  # for role sessions: the role's ARN (with path)

    @property
    def name(self) -> str:
        if self.kind == "user":
            return self.arn.rsplit("/", 1)[-1]
        if self.kind == "assumed-role":
            return self.arn.rsplit("/", 1)[-1]
        return ""

    @classmethod
    def from_arn(cls, arn: str, user_id: str = "", role_arn: str | None = None) -> "Principal":
        if arn == "*" or arn == "anonymous":
            return cls("anonymous", "", "anonymous", user_id)
        if not arn.startswith("arn:"):
            return cls(arn, "", "service", user_id)
        parts = arn.split(":", 5)
        account, resource = parts[4], parts[5]
        if resource == "root":
            return cls(arn, account, "root", user_id or account)
        if parts[2] == "sts" and resource.startswith("assumed-role/"):
            role_name = resource.split("/")[1]
            return cls(arn, account, "assumed-role", user_id,
                       role_arn or f"arn:{parts[1]}:iam::{account}:role/{role_name}")
        if resource.startswith("user/"):
            return cls(arn, account, "user", user_id)
        if resource.startswith("role/"):   # a role itself (only used for matching tests)
            return cls(arn, account, "role", user_id, arn)
        return cls(arn, account, "user", user_id)

    def identifiers(self) -> list[tuple[str, str]]:
        """(Principal type, value) pairs naming this caller directly."""
        if self.kind == "service":
            return [("Service", self.arn)]
        if self.kind == "anonymous":
            return []
        out = [("AWS", self.arn)]
        if self.role_arn and self.role_arn != self.arn:
            out.append(("AWS", self.role_arn))
        return out

    def context_keys(self) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        if self.kind in ("service", "anonymous"):
            if self.kind == "service":
                keys["aws:PrincipalServiceName"] = self.arn
                keys["aws:PrincipalIsAWSService"] = True
            else:
                keys["aws:PrincipalType"] = "Anonymous"
            return keys
        keys["aws:PrincipalArn"] = self.role_arn if self.kind == "assumed-role" else self.arn
        keys["aws:PrincipalAccount"] = self.account_id
        keys["aws:PrincipalIsAWSService"] = False
        keys["aws:PrincipalType"] = {"user": "User", "assumed-role": "AssumedRole", "root": "Account",
                                     "role": "AssumedRole"}[self.kind]
        if self.user_id:
            keys["aws:userid"] = self.user_id
        if self.kind == "user":
            keys["aws:username"] = self.name
        return keys


# ---------------------------------------------------------------- matching


def _match_actions(st: Statement, action: str) -> bool:
    if st.action is not None:
        return any(action_match(p, action) for p in st.action)
    return not any(action_match(p, action) for p in st.not_action or ())


def _resource_hit(patterns: Iterable[str], resource: str, ctx: ContextValues, variables: bool) -> bool:
    for p in patterns:
        if variables:
            p = substitute(p, ctx, wildcard=True)
            if p is None:
                continue
        if p == "*" or arn_wildcard_match(p, resource):
            return True
    return False


def _match_resources(st: Statement, resource: str, ctx: ContextValues, variables: bool) -> bool:
    if st.resource is not None:
        return _resource_hit(st.resource, resource, ctx, variables)
    if st.not_resource is not None:
        return not _resource_hit(st.not_resource, resource, ctx, variables)
    return True   # trust policies have no Resource element


def _account_of(value: str) -> str | None:
    if _ACCOUNT_RE.match(value):
        return value
    m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):root", value)
    return m.group(1) if m else None


DIRECT, ROLE, ACCOUNT = "direct", "role", "account"


def principal_match(spec: Mapping[str, tuple[str, ...]] | None, who: Principal) -> str | None:
    """'direct' when the spec names the caller itself (its user / session / root ARN, or everyone),
    'role' when it names the role of a role session (not the session), 'account' when it names only
    the caller's account, None otherwise. Wildcards other than a lone "*" are not supported by AWS."""
    if not spec:
        return None
    if "*" in spec:
        return DIRECT
    found = None
    for kind, values in spec.items():
        for v in values:
            if kind == "AWS" and v == "*":
                if who.kind != "service":
                    return DIRECT
                continue
            if (kind, v) == ("Service", who.arn) and who.kind == "service":
                return DIRECT
            if kind == "AWS" and v == who.arn and who.kind not in ("service", "anonymous"):
                return DIRECT
            if kind == "AWS" and who.role_arn and who.kind == "assumed-role" and v == who.role_arn:
                found = ROLE
            elif kind == "AWS" and who.account_id and _account_of(v) == who.account_id:
                if who.kind == "root":
                    return DIRECT
                found = found or ACCOUNT
    return found


def not_principal_exempts(spec: Mapping[str, tuple[str, ...]], who: Principal) -> bool:
    """Whether a NotPrincipal element leaves the caller out: every entity of its chain must be
    listed (AWS's documented examples list the account ARN with the user, and the account, role
    and session ARNs for a role session). The account alone exempts only the root user."""
    if "*" in spec:
        return True
    if who.kind == "service":
        return who.arn in spec.get("Service", ())
    if who.kind == "anonymous":
        return False
    listed = spec.get("AWS", ())
    if not any(_account_of(v) == who.account_id for v in listed):
        return False
    if who.kind == "root":
        return True
    if who.arn not in listed:
        return False
    return who.kind != "assumed-role" or (who.role_arn or "") in listed


def _statement_principal(st: Statement, who: Principal) -> str | None:
    if st.principal is not None:
        return principal_match(st.principal, who)
    if st.not_principal is not None:
        return None if not_principal_exempts(st.not_principal, who) else DIRECT
    return DIRECT   # identity statements apply to their holder


def statement_applies(st: Statement, action: str, resource: str, ctx: ContextValues, variables: bool) -> bool:
    return (_match_actions(st, action) and _match_resources(st, resource, ctx, variables)
            and evaluate_condition_block(st.condition, ctx, variables=variables))


# ---------------------------------------------------------------- decisions


ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"
IDENTITY, RESOURCE = "identity-based policy", "resource-based policy"
BOUNDARY, SESSION = "permissions boundary", "session policy"
SCP = "service control policy"


@dataclass(frozen=True)
class Decision:
    effect: str                                  # Allow | ExplicitDeny | ImplicitDeny
    missing: str | None = None                   # implicit deny: which side did not allow
    denied_by: str | None = None                 # explicit deny: which kind of policy
    matched: tuple[str, ...] = field(default=())  # labels of the policies that decided

    @property
    def allowed(self) -> bool:
        return self.effect == ALLOW

    def __bool__(self) -> bool:
        return self.allowed

    def message(self, principal_arn: str, action: str, resource: str, *, reason: bool = True) -> str:
        """AWS's AccessDenied wording."""
        who = "User" if not principal_arn.endswith(".amazonaws.com") else "Service"
        base = f"{who}: {principal_arn} is not authorized to perform: {action} on resource: {resource}"
        if not reason:
            return base
        if self.effect == EXPLICIT_DENY:
            return f"{base} with an explicit deny in {'an' if self.denied_by == IDENTITY else 'a'} {self.denied_by}"
        if self.effect == IMPLICIT_DENY:
            return f"{base} because no {self.missing or IDENTITY} allows the {action} action"
        return base


@dataclass(frozen=True)
class Request:
    principal: Principal
    action: str
    resource: str
    context: ContextValues


def build_context(principal: Principal, extra: Mapping[str, Any] | None = None) -> ContextValues:
    ctx = ContextValues(principal.context_keys())
    for k, v in (extra or {}).items():
        ctx.set(k, v)
    return ctx


def _statements_allow(policies: Sequence[Policy], request: Request, kind: str) -> tuple[list[str], Decision | None]:
    """(labels of the Allows that apply, an explicit-deny Decision or None) for principal-less policies."""
    allows: list[str] = []
    for pol in policies:
        for st in pol.statements:
            if statement_applies(st, request.action, request.resource, request.context, pol.variables):
                if st.effect == "Deny":
                    return allows, Decision(EXPLICIT_DENY, denied_by=kind, matched=(pol.label or st.sid,))
                allows.append(pol.label or st.sid)
    return allows, None


def evaluate(request: Request, identity_policies: Sequence[Policy] = (), resource_policy: Policy | None = None,
             resource_account: str | None = None, *, resource_policy_required: bool = False,
             boundary: Policy | None = None, session_policies: Sequence[Policy] | None = None) -> Decision:
    """`resource_policy_required`: the resource policy must grant even in the same account — a
    role's trust policy (AssumeRole) works that way: an identity-based Allow alone never suffices.
    `boundary`: the principal's permissions boundary (None: it has none). `session_policies`: the
    session policies a role session was created with (None: none were passed; an empty list is not
    the same: AWS treats passed-but-empty as allowing nothing)."""
    who, ctx = request.principal, request.context
    id_allow: list[str] = []
    limits_ok = True          # boundary and session policies allow (or do not exist)
    limited_by = IDENTITY
    res_direct: list[str] = []
    res_role: list[str] = []
    res_account: list[str] = []
    if who.kind not in ("service", "anonymous"):
        id_allow, denied = _statements_allow(identity_policies, request, IDENTITY)
        if denied is not None:
            return denied
        if who.kind != "root":       # boundaries and session policies never bind the root user
            if boundary is not None:
                allows, denied = _statements_allow((boundary,), request, BOUNDARY)
                if denied is not None:
                    return denied
                if not allows:
                    limits_ok, limited_by = False, BOUNDARY
            if session_policies is not None:
                allows, denied = _statements_allow(session_policies, request, SESSION)
                if denied is not None:
                    return denied
                if not allows and limits_ok:
                    limits_ok, limited_by = False, SESSION
    if resource_policy is not None:
        for st in resource_policy.statements:
            how = _statement_principal(st, who)
            if how is None:
                continue
            if not statement_applies(st, request.action, request.resource, ctx, resource_policy.variables):
                continue
            if st.effect == "Deny":
                return Decision(EXPLICIT_DENY, denied_by=RESOURCE, matched=(resource_policy.label or st.sid,))
            {DIRECT: res_direct, ROLE: res_role, ACCOUNT: res_account}[how].append(resource_policy.label or st.sid)

    same_account = resource_account is None or resource_account == who.account_id
    if who.kind in ("service", "anonymous"):
        if res_direct:
            return Decision(ALLOW, matched=tuple(res_direct))
        return Decision(IMPLICIT_DENY, missing=RESOURCE)
    # identity side: identity-based Allows within the boundary and session policies
    identity_ok = who.kind == "root" or (bool(id_allow) and limits_ok)
    role_grant = bool(res_role) and limits_ok       # a grant to the role ARN is limited like identity
    matched = tuple(id_allow + res_direct + res_role + res_account)
    if same_account and resource_policy_required:
        if res_direct or role_grant or (res_account and identity_ok):
            return Decision(ALLOW, matched=matched)
        if (res_role or (res_account and id_allow)) and not limits_ok:
            return Decision(IMPLICIT_DENY, missing=limited_by)
        return Decision(IMPLICIT_DENY, missing=RESOURCE if not res_account else IDENTITY)
    if same_account:
        if who.kind == "root":
            return Decision(ALLOW, matched=("root",))
        if res_direct or role_grant or identity_ok:
            return Decision(ALLOW, matched=matched)
        if (id_allow or res_role) and not limits_ok:
            return Decision(IMPLICIT_DENY, missing=limited_by)
        return Decision(IMPLICIT_DENY, missing=IDENTITY)
    # cross-account: both sides
    if not identity_ok:
        return Decision(IMPLICIT_DENY, missing=limited_by if id_allow else IDENTITY)
    if not (res_direct or res_role or res_account):
        return Decision(IMPLICIT_DENY, missing=RESOURCE)
    return Decision(ALLOW, matched=matched)


def evaluate_scps(request: Request, levels: Sequence[Sequence[Policy]]) -> Decision | None:
    """Organizations User Guide, "SCP evaluation": an explicit Deny in the SCPs of any level (root,
    OUs, account) denies; otherwise every level must have an Allow that applies. None: allowed (the
    caller is then decided by its own policies); a Decision: refused by the SCPs."""
    missing = False
    for level in levels:
        allows, denied = _statements_allow(level, request, SCP)
        if denied is not None:
            return denied
        missing = missing or not allows
    return Decision(IMPLICIT_DENY, missing=SCP) if missing else None


def is_allowed(principal: Principal, action: str, resource: str, identity_policies: Sequence[Policy] = (),
               resource_policy: Policy | None = None, resource_account: str | None = None,
               context: Mapping[str, Any] | None = None, *, resource_policy_required: bool = False,
               boundary: Policy | None = None, session_policies: Sequence[Policy] | None = None) -> Decision:
    """Convenience: build the context from the principal plus `context`, then evaluate."""
    return evaluate(Request(principal, action, resource, build_context(principal, context)), identity_policies,
                    resource_policy, resource_account, resource_policy_required=resource_policy_required,
                    boundary=boundary, session_policies=session_policies)


ADMINISTRATOR_ACCESS = {"Version": VERSION_2012, "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
