"""Tags of IAM users and roles as a decision's `aws:ResourceTag/<key>` and `iam:ResourceTag/<key>`
(IAM's service authorization reference lists both for the user and role resource types), so a policy
can say, e.g., iam:DeleteRole only on roles tagged team=blue, or sts:AssumeRole by the role's tags.

    Authorizer(directory, resource_tags=IamResourceTags(directory))     # server/platform.py

Any other ARN has no tags here (Lambda's come from iam/request_map.py, KMS's from kms/). Read once per
ARN and kept until the directory writes anything (Directory.generation), so a warm decision reads no rows.
"""
from __future__ import annotations

import json
import re
import threading

import sqlalchemy as sa

from lambdalet.iam import tables as t

_IAM_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::(\d{12}):(user|role)/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})")


class IamResourceTags:
    CACHE_ENTRIES = 4096

    def __init__(self, directory):
        self.directory = directory
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, dict[str, str]]] = {}

    def __call__(self, arn: str) -> dict[str, str]:
        m = _IAM_ARN.fullmatch(arn or "")
        if m is None:
            return {}
        generation = self.directory.generation        # noted before reading: a write moves it
        hit = self._cache.get(arn)
        if hit is not None and hit[0] == generation:
            return hit[1]
        table = t.iam_users if m.group(2) == "user" else t.iam_roles
        with self.directory._db.read() as conn:
            row = conn.execute(sa.select(table.c.tags, table.c.arn).where(
                table.c.account_id == m.group(1), table.c.name_lower == m.group(3).lower())).first()
        tags: dict[str, str] = {}
        if row is not None and (row.arn == arn or row.arn.rsplit("/", 1)[-1] == arn.rsplit("/", 1)[-1]):
            try:
                tags = {x["Key"]: x.get("Value", "") for x in json.loads(row.tags or "[]") if isinstance(x, dict)}
            except ValueError:
                tags = {}
        with self._lock:
            if len(self._cache) >= self.CACHE_ENTRIES:
                self._cache.clear()
            self._cache[arn] = (generation, tags)
        return tags
