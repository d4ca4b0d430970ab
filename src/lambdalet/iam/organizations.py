"""AWS Organizations' state: the platform's organization, its member accounts (the tenants) and
CreateAccount requests. The API is organizations_service.py; this module owns the tables.

- One organization per platform, managed by the bootstrap account (000000000000): accounts are
  tenants of one operator, so only that operator's principals may create them.
- CreateAccount provisions the tenant in ONE transaction, as AWS leaves it: an `accounts` row, the
  access role (default `OrganizationAccountAccessRole`) trusting `arn:aws:iam::<management>:root`
  with AdministratorAccess attached, the membership row and the request's SUCCEEDED status. AWS
  answers IN_PROGRESS and finishes asynchronously; here the work is already done when the first
  DescribeCreateAccountStatus asks.
- `principal_org(account)` -> (organization id, root id) feeds `aws:PrincipalOrgID` /
  `aws:PrincipalOrgPaths` to every authorization (iam/authz.py). It is on the request path, so it
  answers from an in-memory snapshot of the memberships, dropped after every write here (one
  process owns writes, as for Directory.generation).
"""
from __future__ import annotations

import contextlib
import json
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from lambdalet.iam import directory as _directory
from lambdalet.iam import tables as t
from lambdalet.iam.identity import BOOTSTRAP_ACCOUNT
from lambdalet.models.errors import AwsError
from lambdalet.store import schema

DEFAULT_ACCESS_ROLE = "OrganizationAccountAccessRole"
SCP_TYPE = "SERVICE_CONTROL_POLICY"
FULL_ACCESS_ID = "p-FullAWSAccess"     # AWS-managed; attached to the root and every account when SCPs are enabled
_ID_CHARS = string.ascii_lowercase + string.digits


# ---------------------------------------------------------------- errors (botocore's organizations model)


class OrganizationsError(AwsError):
    """AWS Organizations answers every client error with HTTP 400."""
    status, sender_fault = 400, True

    def __init__(self, message: str = "", *, reason: str | None = None):
        super().__init__(message, extra={"Reason": reason} if reason else None)


def _error(code: str) -> type[OrganizationsError]:
    return type(code, (OrganizationsError,), {"code": code})


AccessDeniedException = _error("AccessDeniedException")
AWSOrganizationsNotInUseException = _error("AWSOrganizationsNotInUseException")
AlreadyInOrganizationException = _error("AlreadyInOrganizationException")
AccountNotFoundException = _error("AccountNotFoundException")
CreateAccountStatusNotFoundException = _error("CreateAccountStatusNotFoundException")
ConstraintViolationException = _error("ConstraintViolationException")
InvalidInputException = _error("InvalidInputException")
MasterCannotLeaveOrganizationException = _error("MasterCannotLeaveOrganizationException")
OrganizationNotEmptyException = _error("OrganizationNotEmptyException")
ParentNotFoundException = _error("ParentNotFoundException")
ChildNotFoundException = _error("ChildNotFoundException")
TargetNotFoundException = _error("TargetNotFoundException")
ResourcePolicyNotFoundException = _error("ResourcePolicyNotFoundException")

NOT_IN_USE = "Your account is not a member of an organization."
NO_PERMISSION = "You don't have permissions to access this resource."
ACCOUNT_NOT_FOUND = "You specified an account that doesn't exist."
MASTER_CANNOT_LEAVE = ("You can't remove a management account from an organization. If you want the management "
                       "account to become a member account in another organization, you must first delete the "
                       "current organization.")


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Organization:
    id: str
    management_account_id: str
    root_id: str
    feature_set: str
    created_at: float

    @property
    def arn(self) -> str:
        return f"arn:aws:organizations::{self.management_account_id}:organization/{self.id}"

    @property
    def root_arn(self) -> str:
        return f"arn:aws:organizations::{self.management_account_id}:root/{self.id}/{self.root_id}"

    def account_arn(self, account_id: str) -> str:
        return f"arn:aws:organizations::{self.management_account_id}:account/{self.id}/{account_id}"


def access_role_trust_policy(management_account_id: str) -> str:
    """The trust policy AWS gives the access role in an account it creates."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{management_account_id}:root"},
         "Action": "sts:AssumeRole"}]})


def management_email(account_id: str) -> str:
    """The bootstrap account was never given an address; a reserved domain (RFC 2606) says so."""
    return f"{account_id}@lambdalet.invalid"


def enabled_policy_types(conn, org_id: str) -> list[str]:
    row = conn.execute(sa.select(t.organizations.c.policy_types).where(t.organizations.c.id == org_id)).first()
    try:
        return list(json.loads(row.policy_types or "[]")) if row else []
    except ValueError:
        return []


def attach_full_access_if_enabled(conn, org_id: str, target_id: str, now: float) -> None:
    """A new member gets FullAWSAccess while SCPs are enabled, as AWS attaches it."""
    if SCP_TYPE in enabled_policy_types(conn, org_id):
        conn.execute(t.organization_policy_targets.insert().values(
            policy_id=FULL_ACCESS_ID, target_id=target_id, organization_id=org_id, attached_at=now))


def _random(n: int) -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(n))


def _org(row) -> Organization:
    return Organization(row.id, row.management_account_id, row.root_id, row.feature_set, row.created_at)


def _tags(raw: str) -> list[dict]:
    try:
        return json.loads(raw or "[]")
    except ValueError:
        return []


def _status(row) -> dict:
    out = {"Id": row.id, "AccountName": row.account_name, "State": row.state, "RequestedTimestamp": row.requested_at}
    if row.completed_at is not None:
        out["CompletedTimestamp"] = row.completed_at
    if row.account_id:
        out["AccountId"] = row.account_id
    if row.failure_reason:
        out["FailureReason"] = row.failure_reason
    return out


class OrganizationStore:
    def __init__(self, db, directory: _directory.Directory, *, management_account: str = BOOTSTRAP_ACCOUNT,
                 clock: Callable[[], float] = time.time):
        self._db = db
        self.directory = directory
        self.management_account = management_account
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0
        self._members: dict[str, tuple[str, str]] | None = None   # account -> (org id, root id)

    @property
    def generation(self) -> int:
        """Moves after every write here (snapshots of this state compare it, iam/scp.py)."""
        return self._generation

    # ---------------------------------------------------------------- the membership snapshot
    def principal_org(self, account_id: str) -> tuple[str, str] | None:
        """(organization id, root id) of an account's organization, None if it is in none."""
        members = self._members
        if members is None:
            with self._lock:
                generation = self._generation
            members = self._load_members()
            with self._lock:
                if generation == self._generation:    # no write ended while we read: keep it
                    self._members = members
        return members.get(account_id)

    def _load_members(self) -> dict[str, tuple[str, str]]:
        a, o = t.organization_accounts.c, t.organizations.c
        with self._db.read() as conn:
            rows = conn.execute(sa.select(a.account_id, o.id, o.root_id).select_from(
                t.organization_accounts.join(t.organizations, o.id == a.organization_id))).all()
        return {r.account_id: (r.id, r.root_id) for r in rows}

    @contextlib.contextmanager
    def _write(self, *, iam: bool = False):
        """A write transaction; the snapshot is dropped after it ends (committed or not). `iam`:
        through the Directory, so its policy caches see the roles written here."""
        try:
            with (self.directory.transaction() if iam else self._db.begin()) as conn:
                yield conn
        finally:
            with self._lock:
                self._generation += 1
                self._members = None

    # ---------------------------------------------------------------- the organization
    def organization_of(self, account_id: str) -> Organization | None:
        a, o = t.organization_accounts.c, t.organizations.c
        with self._db.read() as conn:
            row = conn.execute(sa.select(t.organizations).select_from(
                t.organizations.join(t.organization_accounts, o.id == a.organization_id))
                .where(a.account_id == account_id)).first()
        return _org(row) if row else None

    def create_organization(self, feature_set: str) -> Organization:
        """The platform's organization, managed by the management account (AlreadyInOrganization
        when it exists)."""
        now = self._clock()
        mgmt = self.management_account
        with self._write() as conn:
            if conn.execute(sa.select(t.organization_accounts.c.account_id)
                            .where(t.organization_accounts.c.account_id == mgmt)).first():
                raise AlreadyInOrganizationException("The AWS account is already a member of an organization.")
            if not conn.execute(sa.select(schema.accounts.c.account_id)
                                .where(schema.accounts.c.account_id == mgmt)).first():
                conn.execute(schema.accounts.insert().values(account_id=mgmt, name="management", created_at=now))
            org = Organization("o-" + _random(10), mgmt, "r-" + _random(4), feature_set, now)
            conn.execute(t.organizations.insert().values(id=org.id, management_account_id=mgmt, root_id=org.root_id,
                                                         feature_set=feature_set, created_at=now))
            email = management_email(mgmt)
            conn.execute(t.organization_accounts.insert().values(
                account_id=mgmt, organization_id=org.id, email=email, email_lower=email.lower(),
                joined_method="INVITED", joined_at=now, tags="[]"))
        return org

    def delete_organization(self, org: Organization) -> None:
        a = t.organization_accounts.c
        with self._write() as conn:
            others = conn.execute(sa.select(sa.func.count()).select_from(t.organization_accounts).where(
                a.organization_id == org.id, a.account_id != org.management_account_id)).scalar()
            if others:
                raise OrganizationNotEmptyException("To delete an organization you must first remove all member "
                                                    "accounts (except the master).")
            conn.execute(t.organization_create_requests.delete()
                         .where(t.organization_create_requests.c.organization_id == org.id))
            conn.execute(t.organization_policy_targets.delete()
                         .where(t.organization_policy_targets.c.organization_id == org.id))
            conn.execute(t.organization_policies.delete().where(t.organization_policies.c.organization_id == org.id))
            conn.execute(t.organization_accounts.delete().where(a.organization_id == org.id))
            conn.execute(t.organizations.delete().where(t.organizations.c.id == org.id))

    # ---------------------------------------------------------------- member accounts
    def _account_rows(self, conn, org: Organization, account_id: str | None = None):
        a, acc = t.organization_accounts.c, schema.accounts.c
        q = (sa.select(a.account_id, a.email, a.joined_method, a.joined_at, a.tags, acc.name)
             .select_from(t.organization_accounts.join(schema.accounts, acc.account_id == a.account_id))
             .where(a.organization_id == org.id))
        if account_id is not None:
            q = q.where(a.account_id == account_id)
        return conn.execute(q.order_by(a.joined_at, a.account_id)).all()

    def _account(self, org: Organization, row) -> dict:
        return {"Id": row.account_id, "Arn": org.account_arn(row.account_id), "Email": row.email, "Name": row.name,
                "Status": "ACTIVE", "State": "ACTIVE", "JoinedMethod": row.joined_method,
                "JoinedTimestamp": row.joined_at}

    def accounts(self, org: Organization) -> list[dict]:
        with self._db.read() as conn:
            return [self._account(org, r) for r in self._account_rows(conn, org)]

    def account(self, org: Organization, account_id: str) -> dict | None:
        with self._db.read() as conn:
            rows = self._account_rows(conn, org, account_id)
        return self._account(org, rows[0]) if rows else None

    def create_account(self, org: Organization, name: str, email: str, role_name: str, tags: list[dict]) -> dict:
        """Provision a member account (see the module docstring); returns the request's status as
        CreateAccount answers it. A taken email fails the request (EMAIL_ALREADY_EXISTS), as AWS does."""
        now = self._clock()
        request_id = "car-" + uuid.uuid4().hex
        a = t.organization_accounts.c
        with self._write(iam=True) as conn:
            account_id = failure = None
            if conn.execute(sa.select(a.account_id).where(a.email_lower == email.lower())).first():
                failure = "EMAIL_ALREADY_EXISTS"
            else:
                account_id = self._new_account(conn, name, now)
                self._access_role(conn, org, account_id, role_name, now)
                conn.execute(t.organization_accounts.insert().values(
                    account_id=account_id, organization_id=org.id, email=email, email_lower=email.lower(),
                    joined_method="CREATED", joined_at=now, tags=json.dumps(tags)))
                attach_full_access_if_enabled(conn, org.id, account_id, now)
            conn.execute(t.organization_create_requests.insert().values(
                id=request_id, organization_id=org.id, account_name=name, state="FAILED" if failure else "SUCCEEDED",
                failure_reason=failure, account_id=account_id, requested_at=now, completed_at=now))
        return {"Id": request_id, "AccountName": name, "State": "IN_PROGRESS", "RequestedTimestamp": now}

    @staticmethod
    def _new_account(conn, name: str, now: float) -> str:
        acc = schema.accounts.c
        for _ in range(50):
            account_id = "".join(secrets.choice(string.digits) for _ in range(12))
            if account_id == BOOTSTRAP_ACCOUNT or conn.execute(
                    sa.select(acc.account_id).where(acc.account_id == account_id)).first():
                continue
            conn.execute(schema.accounts.insert().values(account_id=account_id, name=name[:64], created_at=now))
            return account_id
        raise RuntimeError("could not allocate an account id")

    @staticmethod
    def _access_role(conn, org: Organization, account_id: str, role_name: str, now: float) -> None:
        """The role the management account assumes to administer the new account."""
        role_id = _directory.new_id("AROA")
        conn.execute(t.iam_roles.insert().values(
            id=role_id, account_id=account_id, name=role_name, name_lower=role_name.lower(), path="/",
            arn=_directory.role_arn(account_id, role_name), trust_policy=access_role_trust_policy(
                org.management_account_id), description="", max_session_duration=3600, tags="[]", created_at=now))
        _directory.ensure_managed_policies(conn, now)
        _directory.attach_by_arn(conn, "role", role_id, _directory.ADMIN_POLICY_ARN, now)

    def remove_account(self, org: Organization, account_id: str) -> None:
        """The account leaves the organization and stays a standalone account (its IAM is untouched)."""
        if account_id == org.management_account_id:
            raise MasterCannotLeaveOrganizationException(MASTER_CANNOT_LEAVE)
        a = t.organization_accounts.c
        with self._write() as conn:
            res = conn.execute(t.organization_accounts.delete().where(a.organization_id == org.id,
                                                                      a.account_id == account_id))
            conn.execute(t.organization_policy_targets.delete().where(   # its SCPs stay with the organization
                t.organization_policy_targets.c.organization_id == org.id,
                t.organization_policy_targets.c.target_id == account_id))
        if res.rowcount == 0:
            raise AccountNotFoundException(ACCOUNT_NOT_FOUND)

    # ---------------------------------------------------------------- CreateAccount requests
    def create_status(self, org: Organization, request_id: str) -> dict | None:
        r = t.organization_create_requests.c
        with self._db.read() as conn:
            row = conn.execute(sa.select(t.organization_create_requests)
                               .where(r.organization_id == org.id, r.id == request_id)).first()
        return _status(row) if row else None

    def create_statuses(self, org: Organization, states: list[str] | None = None) -> list[dict]:
        r = t.organization_create_requests.c
        q = sa.select(t.organization_create_requests).where(r.organization_id == org.id)
        if states:
            q = q.where(r.state.in_(states))
        with self._db.read() as conn:
            return [_status(row) for row in conn.execute(q.order_by(r.requested_at, r.id))]

    # ---------------------------------------------------------------- tags (accounts only)
    def account_tags(self, org: Organization, account_id: str) -> list[dict] | None:
        a = t.organization_accounts.c
        with self._db.read() as conn:
            row = conn.execute(sa.select(a.tags).where(a.organization_id == org.id,
                                                       a.account_id == account_id)).first()
        return _tags(row.tags) if row else None

    def update_account_tags(self, org: Organization, account_id: str, add: list[dict] | None = None,
                            remove: list[str] | None = None, limit: int = 50) -> bool:
        a = t.organization_accounts.c
        with self._write() as conn:
            row = conn.execute(sa.select(a.tags).where(a.organization_id == org.id,
                                                       a.account_id == account_id)).first()
            if row is None:
                return False
            tags = {x["Key"]: x.get("Value", "") for x in _tags(row.tags)}
            tags.update({x["Key"]: x.get("Value", "") for x in add or []})
            for key in remove or []:
                tags.pop(key, None)
            if len(tags) > limit:
                raise ConstraintViolationException("You have exceeded the maximum number of tags allowed on this "
                                                   "resource.", reason="MAX_TAG_LIMIT_EXCEEDED")
            conn.execute(t.organization_accounts.update().where(a.account_id == account_id).values(
                tags=json.dumps([{"Key": k, "Value": v} for k, v in tags.items()])))
        return True
