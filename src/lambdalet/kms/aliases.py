"""Aliases: alias/... names for one key of the same account and region.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lambdalet.kms import errors as E
from lambdalet.kms.access import KeyAccess
from lambdalet.kms.records import _ALIAS_NAME_RE, PENDING_DELETION, Key, _string
from lambdalet.kms.tables import kms_aliases
from lambdalet.models.context import RequestContext


class Aliases(KeyAccess):
    # ------------------------------------------------------------ aliases
    def _alias_name(self, name: Any) -> str:
        if not isinstance(name, str) or not _ALIAS_NAME_RE.match(name):
            raise E.InvalidAliasNameException(
                f"Alias name '{name}' is invalid: it must begin with 'alias/' followed by 1-250 characters "
                "of a-z, A-Z, 0-9, '/', '_' and '-'.")
        if name.startswith("alias/aws/"):
            raise E.NotFoundException(f"Operations on AWS managed aliases (alias/aws/...) are not permitted: {name}")
        return name

    def _alias_target(self, ctx: RequestContext, ref: Any, action: str) -> Key:
        with self._db.read() as conn:
            key = self._resolve(conn, ctx, _string({"TargetKeyId": ref}, "TargetKeyId"), aliases=False)
        self._authorize(ctx, key, action)
        if key.state == PENDING_DELETION:
            raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
        return key

    def create_alias(self, ctx: RequestContext, params: dict) -> dict:
        self._maybe_purge()
        name = self._alias_name(params.get("AliasName"))
        key = self._alias_target(ctx, params.get("TargetKeyId"), "kms:CreateAlias")
        now = self._clock()
        with self._db.begin() as conn:
            taken = conn.execute(sa.select(kms_aliases.c.name).where(
                kms_aliases.c.account_id == ctx.account_id, kms_aliases.c.region == ctx.region,
                kms_aliases.c.name == name)).first()
            if taken:
                raise E.AlreadyExistsException(
                    f"An alias with the name arn:aws:kms:{ctx.region}:{ctx.account_id}:{name} already exists")
            conn.execute(kms_aliases.insert().values(account_id=ctx.account_id, region=ctx.region, name=name,
                                                     key_id=key.id, created_at=now, updated_at=now))
        return {}

    def update_alias(self, ctx: RequestContext, params: dict) -> dict:
        name = self._alias_name(params.get("AliasName"))
        key = self._alias_target(ctx, params.get("TargetKeyId"), "kms:UpdateAlias")
        with self._db.begin() as conn:
            done = conn.execute(kms_aliases.update().where(
                kms_aliases.c.account_id == ctx.account_id, kms_aliases.c.region == ctx.region,
                kms_aliases.c.name == name).values(key_id=key.id, updated_at=self._clock())).rowcount
        if not done:
            raise E.NotFoundException(f"Alias arn:aws:kms:{ctx.region}:{ctx.account_id}:{name} is not found.")
        return {}

    def delete_alias(self, ctx: RequestContext, params: dict) -> dict:
        name = self._alias_name(params.get("AliasName"))
        with self._db.read() as conn:
            key = self._resolve(conn, ctx, name)
        self._authorize(ctx, key, "kms:DeleteAlias")
        with self._db.begin() as conn:
            conn.execute(kms_aliases.delete().where(
                kms_aliases.c.account_id == ctx.account_id, kms_aliases.c.region == ctx.region,
                kms_aliases.c.name == name))
        return {}

    def list_aliases(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize_account(ctx, "kms:ListAliases")
        self._maybe_purge()
        limit = params.get("Limit", 100)
        if not 1 <= limit <= 1000:
            raise E.ValidationException("Limit must be between 1 and 1000.")
        marker = params.get("Marker")
        q = sa.select(kms_aliases).where(kms_aliases.c.account_id == ctx.account_id,
                                         kms_aliases.c.region == ctx.region)
        if params.get("KeyId") is not None:
            with self._db.read() as conn:
                key = self._resolve(conn, ctx, params["KeyId"], aliases=False)
            self._authorize(ctx, key, "kms:ListAliases")
            q = q.where(kms_aliases.c.key_id == key.id)
        if marker is not None:
            if not isinstance(marker, str) or not _ALIAS_NAME_RE.match(marker):
                raise E.InvalidMarkerException("The marker is invalid.")
            q = q.where(kms_aliases.c.name > marker)
        with self._db.read() as conn:
            rows = conn.execute(q.order_by(kms_aliases.c.name).limit(limit + 1)).all()
        out: dict[str, Any] = {"Aliases": [{
            "AliasName": r.name, "AliasArn": f"arn:aws:kms:{r.region}:{r.account_id}:{r.name}",
            "TargetKeyId": r.key_id, "CreationDate": r.created_at, "LastUpdatedDate": r.updated_at}
            for r in rows[:limit]], "Truncated": len(rows) > limit}
        if len(rows) > limit:
            out["NextMarker"] = rows[limit - 1].name
        return out
