"""A queue's access policy (the `Policy` attribute): what authorization reads, and SQS's
AddPermission / RemovePermission, which edit that attribute.

The policy is a resource-based policy evaluated by iam/request_map.py like a Lambda function's
(a Deny denies; an Allow naming another account grants it when that account's identity policies
allow too). AddPermission writes the statement SQS writes: Sid = Label, Principal = the accounts'
root ARNs, Action = `SQS:<action>`, Resource = the queue ARN.
"""
from __future__ import annotations

import json
import re

from lambdalet.iam.evaluation import MalformedPolicy, check_resource_policy
from lambdalet.queues import errors as E

_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_ACCOUNT = re.compile(r"^\d{12}$")
MAX_STATEMENTS = 20          # SQS: 20 statements per queue policy (quotas page)
MAX_ACTIONS = 7              # SQS: at most 7 actions per AddPermission
_ACTIONS = {"*", "SendMessage", "ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility",
            "GetQueueAttributes", "GetQueueUrl", "ListDeadLetterSourceQueues", "PurgeQueue", "ListQueueTags"}


def _document(raw: str | None) -> dict:
    if not raw:
        return {"Version": "2012-10-17", "Statement": []}
    doc = json.loads(raw)
    st = doc.get("Statement", [])
    doc["Statement"] = st if isinstance(st, list) else [st]
    return doc


def check(value: str) -> str:
    """A Policy attribute must be a valid resource-based policy: one that would not parse could not
    be enforced, so it is refused (nothing is accepted and ignored)."""
    try:
        check_resource_policy(value, label="")
    except MalformedPolicy as e:
        raise E.InvalidAttributeValue(f"Invalid value for the parameter Policy. Reason: {e}") from None
    return value


def add_permission(raw: str | None, queue_arn: str, label: str, accounts: list[str], actions: list[str]) -> str:
    """The Policy attribute with one more statement, as SQS's AddPermission writes it."""
    if not _LABEL.match(label or ""):
        raise E.InvalidParameterValue(f"Value {label} for parameter Label is invalid. Reason: Label must be 1-80 "
                                      "alphanumeric characters, hyphens or underscores.")
    if not accounts or any(not _ACCOUNT.match(a) for a in accounts):
        raise E.InvalidParameterValue("Value for parameter AWSAccountIds is invalid.")
    if not actions or len(actions) > MAX_ACTIONS or any(a not in _ACTIONS for a in actions):
        raise E.InvalidParameterValue("Value for parameter ActionName is invalid.")
    doc = _document(raw)
    if any(st.get("Sid") == label for st in doc["Statement"]):
        raise E.InvalidParameterValue(f"Value {label} for parameter Label is invalid. Reason: Already exists.")
    if len(doc["Statement"]) >= MAX_STATEMENTS:
        raise E.OverLimit(f"{MAX_STATEMENTS} statements per queue policy is the limit.")
    principals = [f"arn:aws:iam::{a}:root" for a in accounts]
    doc["Statement"].append({"Sid": label, "Effect": "Allow",
                             "Principal": {"AWS": principals[0] if len(principals) == 1 else principals},
                             "Action": [f"SQS:{a}" for a in actions], "Resource": queue_arn})
    return json.dumps(doc)


def remove_permission(raw: str | None, label: str) -> str:
    """The Policy attribute without the statement `label` ("" when nothing is left)."""
    doc = _document(raw)
    kept = [st for st in doc["Statement"] if st.get("Sid") != label]
    if len(kept) == len(doc["Statement"]):
        raise E.InvalidParameterValue(f"Value {label} for parameter Label is invalid. Reason: can't find label on "
                                      "existing policy.")
    doc["Statement"] = kept
    return json.dumps(doc) if kept else ""


def queue_policies(queues):
    """(region, account, queue name) -> the queue's Policy document or None, for request_map."""
    def lookup(region: str, account: str, name: str) -> str | None:
        try:
            queue = queues._get(account, region, name)
        except E.QueueDoesNotExist:
            return None
        return queue.attributes.get("Policy") or None
    return lookup
