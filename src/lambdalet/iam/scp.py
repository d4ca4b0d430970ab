"""Service control policies: the organization's SCPs, where they are attached, and what every
authorization of a member account's principal must also satisfy (iam/authz.py asks `levels`).

As AWS Organizations does it ("Service control policies", "SCP evaluation"):
- SCPs exist once the management account enables the SERVICE_CONTROL_POLICY type on the root; then
  the AWS-managed FullAWSAccess (p-FullAWSAccess, Allow * on *) is attached to the root and to every
  account (and to accounts created later). Disabling the type detaches every SCP.
- A target (the root, an account; there are no OUs here) keeps at least one SCP and at most five.
- A member account's principals (users, role sessions, the root user) may do only what the SCPs of
  every level of its path (root, account) allow; the management account is never restricted, nor are
  service-linked roles (iam/authz.py).

`levels(account)` is on the request path: it answers from a snapshot of the policies and their
targets, rebuilt after any write to the organization (OrganizationStore.generation moves).
"""
from __future__ import annotations

import json
import secrets
import string
import threading
import time
from typing import Callable

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.organizations import (
    FULL_ACCESS_ID,
    SCP_TYPE,
    ConstraintViolationException,
    Organization,
    OrganizationStore,
    TargetNotFoundException,
    _error,
    enabled_policy_types,
)
from lambdalet.iam.policy import MalformedPolicy, Policy, parse_policy
from lambdalet.iam.policy_validation import check_identity_document
from lambdalet.store import schema

PolicyTypeNotEnabledException = _error("PolicyTypeNotEnabledException")
PolicyTypeAlreadyEnabledException = _error("PolicyTypeAlreadyEnabledException")
PolicyTypeNotAvailableForOrganizationException = _error("PolicyTypeNotAvailableForOrganizationException")
DuplicatePolicyAttachmentException = _error("DuplicatePolicyAttachmentException")
DuplicatePolicyException = _error("DuplicatePolicyException")
PolicyNotAttachedException = _error("PolicyNotAttachedException")
PolicyNotFoundException = _error("PolicyNotFoundException")
PolicyInUseException = _error("PolicyInUseException")
MalformedPolicyDocumentException = _error("MalformedPolicyDocumentException")
RootNotFoundException = _error("RootNotFoundException")
PolicyAccessDenied = _error("AccessDeniedException")

FULL_ACCESS_ARN = "arn:aws:organizations::aws:policy/service_control_policy/p-FullAWSAccess"
FULL_ACCESS_CONTENT = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}, indent=4)
MAX_CONTENT_CHARS = 5120          # Organizations quota: maximum size of an SCP document
MAX_PER_TARGET = 5                # SCPs attached to one root, OU or account
_ID_CHARS = string.ascii_lowercase + string.digits

NOT_ENABLED = "This operation can be performed only for enabled policy types."
NOT_FOUND = "We can't find a policy with the PolicyId that you specified."
TARGET_NOT_FOUND = "We can't find a root, OU, account, or policy with the TargetId that you specified."

Levels = tuple[tuple[Policy, ...], ...]


def policy_arn(org: Organization, policy_id: str) -> str:
    if policy_id == FULL_ACCESS_ID:
        return FULL_ACCESS_ARN
    return f"arn:aws:organizations::{org.management_account_id}:policy/{org.id}/service_control_policy/{policy_id}"


def check_content(content: str) -> None:
    """An SCP is an identity-style document (no Principal) within the size quota."""
    if len(content) > MAX_CONTENT_CHARS:
        raise ConstraintViolationException("You attempted to create a policy that is larger than the maximum size.",
                                           reason="POLICY_CONTENT_LIMIT_EXCEEDED")
    try:
        check_identity_document(content)
    except MalformedPolicy:
        raise MalformedPolicyDocumentException("The provided policy document doesn't meet the requirements of the "
                                               "specified policy type.") from None


class ServiceControlPolicies:
    def __init__(self, store: OrganizationStore, clock: Callable[[], float] = time.time):
        self.store = store
        self._db = store._db
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: tuple[int, dict[str, Levels]] | None = None

    # ---------------------------------------------------------------- what decisions read
    def levels(self, account_id: str) -> Levels | None:
        """The SCPs of each level above a member account's principals (root, then account), or None
        when none apply (no organization, SCPs not enabled, the management account)."""
        generation = self.store.generation        # noted before reading: a write moves it
        snap = self._snapshot
        if snap is None or snap[0] != generation:
            snap = (generation, self._load())
            with self._lock:
                self._snapshot = snap
        return snap[1].get(account_id)

    def _load(self) -> dict[str, Levels]:
        o, a, p, g = t.organizations.c, t.organization_accounts.c, t.organization_policies.c, \
            t.organization_policy_targets.c
        out: dict[str, Levels] = {}
        with self._db.read() as conn:
            orgs = [r for r in conn.execute(sa.select(o.id, o.root_id, o.management_account_id, o.policy_types))
                    if SCP_TYPE in json.loads(r.policy_types or "[]")]
            for org in orgs:
                docs = {FULL_ACCESS_ID: FULL_ACCESS_CONTENT}
                docs.update({r.id: r.content for r in conn.execute(
                    sa.select(p.id, p.content).where(p.organization_id == org.id))})
                attached: dict[str, list[Policy]] = {}
                for r in conn.execute(sa.select(g.policy_id, g.target_id).where(g.organization_id == org.id)
                                      .order_by(g.attached_at)):
                    if r.policy_id in docs:
                        try:
                            attached.setdefault(r.target_id, []).append(
                                parse_policy(docs[r.policy_id], "identity", label=r.policy_id))
                        except MalformedPolicy:     # only a hand-edited database could hold one
                            attached.setdefault(r.target_id, [])
                root = tuple(attached.get(org.root_id, ()))
                for m in conn.execute(sa.select(a.account_id).where(a.organization_id == org.id)):
                    if m.account_id != org.management_account_id:
                        out[m.account_id] = (root, tuple(attached.get(m.account_id, ())))
        return out

    # ---------------------------------------------------------------- policy types on the root
    def root_policy_types(self, org: Organization) -> list[dict]:
        with self._db.read() as conn:
            return [{"Type": x, "Status": "ENABLED"} for x in enabled_policy_types(conn, org.id)]

    def _root(self, org: Organization, root_id: str, policy_type: str) -> None:
        if root_id != org.root_id:
            raise RootNotFoundException("We can't find a root with the RootId that you specified.")
        self._available(org, policy_type)

    @staticmethod
    def _available(org: Organization, policy_type: str) -> None:
        if policy_type != SCP_TYPE or org.feature_set != "ALL":
            raise PolicyTypeNotAvailableForOrganizationException(
                "You can't use the specified policy type with the feature set currently enabled for this "
                "organization.")

    def enable(self, org: Organization, root_id: str, policy_type: str) -> None:
        self._root(org, root_id, policy_type)
        now = self._clock()
        with self.store._write() as conn:
            types = enabled_policy_types(conn, org.id)
            if policy_type in types:
                raise PolicyTypeAlreadyEnabledException("The specified policy type is already enabled.")
            conn.execute(t.organizations.update().where(t.organizations.c.id == org.id)
                         .values(policy_types=json.dumps(types + [policy_type])))
            targets = [org.root_id] + [r.account_id for r in conn.execute(
                sa.select(t.organization_accounts.c.account_id)
                .where(t.organization_accounts.c.organization_id == org.id))]
            for target in targets:
                conn.execute(t.organization_policy_targets.insert().values(
                    policy_id=FULL_ACCESS_ID, target_id=target, organization_id=org.id, attached_at=now))

    def disable(self, org: Organization, root_id: str, policy_type: str) -> None:
        if root_id != org.root_id:
            raise RootNotFoundException("We can't find a root with the RootId that you specified.")
        with self.store._write() as conn:
            types = enabled_policy_types(conn, org.id)
            if policy_type not in types:
                raise PolicyTypeNotEnabledException(NOT_ENABLED)
            conn.execute(t.organizations.update().where(t.organizations.c.id == org.id)
                         .values(policy_types=json.dumps([x for x in types if x != policy_type])))
            # every SCP is detached (they stay defined)
            conn.execute(t.organization_policy_targets.delete()
                         .where(t.organization_policy_targets.c.organization_id == org.id))

    # ---------------------------------------------------------------- policies
    def _summary(self, org: Organization, row) -> dict:
        if row is None:        # FullAWSAccess
            return {"Id": FULL_ACCESS_ID, "Arn": FULL_ACCESS_ARN, "Name": "FullAWSAccess",
                    "Description": "Allows access to every operation", "Type": SCP_TYPE, "AwsManaged": True}
        return {"Id": row.id, "Arn": policy_arn(org, row.id), "Name": row.name, "Description": row.description,
                "Type": row.type, "AwsManaged": False}

    def _row(self, conn, org: Organization, policy_id: str):
        if policy_id == FULL_ACCESS_ID:
            return None
        p = t.organization_policies.c
        row = conn.execute(sa.select(t.organization_policies).where(p.organization_id == org.id,
                                                                    p.id == policy_id)).first()
        if row is None:
            raise PolicyNotFoundException(NOT_FOUND)
        return row

    def describe(self, org: Organization, policy_id: str) -> dict:
        with self._db.read() as conn:
            row = self._row(conn, org, policy_id)
        return {"PolicySummary": self._summary(org, row),
                "Content": FULL_ACCESS_CONTENT if row is None else row.content}

    def policy_type(self, org: Organization, policy_id: str) -> str:
        """The type of an existing policy (PolicyNotFoundException otherwise), for condition keys."""
        return self.describe(org, policy_id)["PolicySummary"]["Type"]

    def list(self, org: Organization, policy_type: str) -> list[dict]:
        if policy_type != SCP_TYPE:
            return []
        p = t.organization_policies.c
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t.organization_policies).where(
                p.organization_id == org.id, p.type == policy_type).order_by(p.created_at, p.id)).all()
        return [self._summary(org, None)] + [self._summary(org, r) for r in rows]

    def _duplicate(self, conn, org: Organization, name: str, policy_type: str, other_than: str = "") -> None:
        p = t.organization_policies.c
        if name == "FullAWSAccess" or conn.execute(sa.select(p.id).where(
                p.organization_id == org.id, p.type == policy_type, p.name == name, p.id != other_than)).first():
            raise DuplicatePolicyException("A policy with the same name already exists.")

    def create(self, org: Organization, name: str, description: str, content: str, policy_type: str,
               tags: list[dict]) -> dict:
        self._available(org, policy_type)
        check_content(content)
        policy_id = "p-" + "".join(secrets.choice(_ID_CHARS) for _ in range(10))
        with self.store._write() as conn:
            self._duplicate(conn, org, name, policy_type)
            conn.execute(t.organization_policies.insert().values(
                id=policy_id, organization_id=org.id, type=policy_type, name=name, description=description,
                content=content, tags=json.dumps(tags), created_at=self._clock()))
        return self.describe(org, policy_id)

    def update(self, org: Organization, policy_id: str, name: str | None, description: str | None,
               content: str | None) -> dict:
        if content is not None:
            check_content(content)
        with self.store._write() as conn:
            row = self._row(conn, org, policy_id)
            if row is None:
                raise PolicyAccessDenied("You can't modify an AWS managed policy.")
            if name is not None:
                self._duplicate(conn, org, name, row.type, other_than=policy_id)
            values = {k: v for k, v in (("name", name), ("description", description), ("content", content))
                      if v is not None}
            if values:
                conn.execute(t.organization_policies.update().where(t.organization_policies.c.id == policy_id)
                             .values(**values))
        return self.describe(org, policy_id)

    def delete(self, org: Organization, policy_id: str) -> None:
        g = t.organization_policy_targets.c
        with self.store._write() as conn:
            if self._row(conn, org, policy_id) is None:
                raise PolicyAccessDenied("You can't delete an AWS managed policy.")
            if conn.execute(sa.select(g.target_id).where(g.organization_id == org.id,
                                                         g.policy_id == policy_id)).first():
                raise PolicyInUseException("The policy is attached to one or more entities. You must detach it from "
                                           "all roots, OUs, and accounts before performing this operation.")
            conn.execute(t.organization_policies.delete().where(t.organization_policies.c.id == policy_id))

    # ---------------------------------------------------------------- attachments
    def _target(self, conn, org: Organization, target_id: str) -> dict:
        if target_id == org.root_id:
            return {"TargetId": target_id, "Arn": org.root_arn, "Name": "Root", "Type": "ROOT"}
        a = t.organization_accounts.c
        row = conn.execute(sa.select(schema.accounts.c.name).select_from(t.organization_accounts.join(
            schema.accounts, schema.accounts.c.account_id == a.account_id))
            .where(a.organization_id == org.id, a.account_id == target_id)).first()
        if row is None:
            raise TargetNotFoundException(TARGET_NOT_FOUND)
        return {"TargetId": target_id, "Arn": org.account_arn(target_id), "Name": row.name, "Type": "ACCOUNT"}

    def target_arn(self, org: Organization, target_id: str) -> str:
        return org.root_arn if target_id == org.root_id else org.account_arn(target_id)

    def _attached(self, conn, org: Organization, target_id: str) -> list[str]:
        g = t.organization_policy_targets.c
        return [r.policy_id for r in conn.execute(sa.select(g.policy_id).where(
            g.organization_id == org.id, g.target_id == target_id).order_by(g.attached_at, g.policy_id))]

    def attach(self, org: Organization, policy_id: str, target_id: str) -> None:
        with self.store._write() as conn:
            self._row(conn, org, policy_id)
            self._target(conn, org, target_id)
            if SCP_TYPE not in enabled_policy_types(conn, org.id):
                raise PolicyTypeNotEnabledException(NOT_ENABLED)
            attached = self._attached(conn, org, target_id)
            if policy_id in attached:
                raise DuplicatePolicyAttachmentException("The selected policy is already attached to the "
                                                         "specified target.")
            if len(attached) >= MAX_PER_TARGET:
                raise ConstraintViolationException(
                    "You attempted to exceed the number of policies of a certain type that can be attached to an "
                    "entity at one time.", reason="MAX_POLICY_TYPE_ATTACHMENT_LIMIT_EXCEEDED")
            conn.execute(t.organization_policy_targets.insert().values(
                policy_id=policy_id, target_id=target_id, organization_id=org.id, attached_at=self._clock()))

    def detach(self, org: Organization, policy_id: str, target_id: str) -> None:
        g = t.organization_policy_targets.c
        with self.store._write() as conn:
            self._row(conn, org, policy_id)
            self._target(conn, org, target_id)
            attached = self._attached(conn, org, target_id)
            if policy_id not in attached:
                raise PolicyNotAttachedException("The policy isn't attached to the specified target in the "
                                                 "specified root.")
            if len(attached) == 1:
                raise ConstraintViolationException(
                    "You attempted to detach a policy from an entity that would cause the entity to have fewer "
                    "than the minimum number of policies of a certain type required.",
                    reason="MIN_POLICY_TYPE_ATTACHMENT_LIMIT_EXCEEDED")
            conn.execute(t.organization_policy_targets.delete().where(
                g.organization_id == org.id, g.policy_id == policy_id, g.target_id == target_id))

    def for_target(self, org: Organization, target_id: str, policy_type: str) -> list[dict]:
        with self._db.read() as conn:
            self._target(conn, org, target_id)
            if policy_type != SCP_TYPE:
                return []
            ids = self._attached(conn, org, target_id)
            return [self._summary(org, self._row(conn, org, pid)) for pid in ids]

    def targets(self, org: Organization, policy_id: str) -> list[dict]:
        g = t.organization_policy_targets.c
        with self._db.read() as conn:
            self._row(conn, org, policy_id)
            ids = [r.target_id for r in conn.execute(sa.select(g.target_id).where(
                g.organization_id == org.id, g.policy_id == policy_id).order_by(g.attached_at, g.target_id))]
            return [self._target(conn, org, x) for x in ids]
