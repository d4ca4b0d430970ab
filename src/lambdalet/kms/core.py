"""KmsCore: the state the KMS modules share and the key lookups they all use (KeyId, key ARN, alias
name or alias ARN -> Key), the purge of keys past their deletion date, and the checks every
operation on a key makes.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import sqlalchemy as sa

from lambdalet.kms import errors as E
from lambdalet.kms.records import (
    _ALIAS_ARN_RE,
    _KEY_ARN_RE,
    _UUID_RE,
    DISABLED,
    PENDING_DELETION,
    SYMMETRIC_DEFAULT,
    Key,
    _not_found,
    key_arn,
)
from lambdalet.kms.tables import kms_aliases, kms_keys
from lambdalet.models.context import RequestContext


class KmsCore:
    def __init__(self, db, keyring, settings=None, *, authorizer=None, clock: Callable[[], float] = time.time):
        self._db = db
        self._keyring = keyring
        self._settings = settings
        self.authorizer = authorizer       # iam.authz.Authorizer: identity policies for account delegation
        self._clock = clock
        self.listeners: list[Callable[[], None]] = []   # called after a key's state changes (Lambda's cache)
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0

    # ------------------------------------------------------------ internals
    def _changed(self) -> None:
        for fn in list(self.listeners):
            fn()

    def _row(self, conn, key_id: str):
        return conn.execute(sa.select(kms_keys).where(kms_keys.c.id == key_id)).first()

    def key_by_id(self, key_id: str) -> Key | None:
        """Internal (Lambda): the key with this KeyId, None if it never existed or is deleted."""
        with self._db.read() as conn:
            row = self._row(conn, key_id)
        if row is None:
            return None
        key = Key.of(row)
        return None if key.deleted(self._clock()) else key

    def purge_expired(self) -> int:
        """Destroy keys whose deletion date has passed: rows, aliases, then the KEK (crypto-shredding)."""
        now = self._clock()
        with self._purge_lock:
            with self._db.begin() as conn:
                rows = conn.execute(sa.select(kms_keys.c.id, kms_keys.c.kek_id).where(
                    kms_keys.c.state == PENDING_DELETION, kms_keys.c.deletion_date <= now)).all()
                if rows:
                    ids = [r.id for r in rows]
                    conn.execute(kms_aliases.delete().where(kms_aliases.c.key_id.in_(ids)))
                    conn.execute(kms_keys.delete().where(kms_keys.c.id.in_(ids)))
            for r in rows:   # after the commit: a crash in between leaves an orphan KEK, never a dangling row
                self._keyring.destroy_key(r.kek_id)
        if rows:
            self._changed()
        return len(rows)

    def _maybe_purge(self) -> None:
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + 60.0
        with self._db.read() as conn:
            due = conn.execute(sa.select(sa.func.count()).select_from(kms_keys).where(
                kms_keys.c.state == PENDING_DELETION, kms_keys.c.deletion_date <= now)).scalar()
        if due:
            self.purge_expired()

    def _resolve(self, conn, ctx: RequestContext, ref: Any, *, cross_account: bool = False,
                 aliases: bool = True) -> Key:
        """KeyId, key ARN, alias name or alias ARN -> Key of the caller's account and region (or, for
        `cross_account` operations, of another account named by ARN)."""
        if not isinstance(ref, str) or not ref:
            raise E.ValidationException("1 validation error detected: Value at 'keyId' failed to satisfy "
                                        "constraint: Member must have length greater than or equal to 1")
        region, account = ctx.region, ctx.account_id
        key_id: Any = None
        alias: str | None = None
        if ref.startswith("arn:"):
            m = _KEY_ARN_RE.match(ref) or _ALIAS_ARN_RE.match(ref)
            if not m:
                raise E.NotFoundException(f"Invalid arn {ref}")
            region, account = m.group(1), m.group(2)
            if m.re is _KEY_ARN_RE:
                key_id = m.group(3)
            else:
                alias = m.group(3)
        elif ref.startswith("alias/"):
            alias = ref
        else:
            key_id = ref
        if alias is not None and not aliases:
            raise E.NotFoundException(f"Invalid keyId '{ref}'")
        if region != ctx.region or (account != ctx.account_id and not cross_account):
            raise _not_found(ref if ref.startswith("arn:") else key_arn(region, account, ref))
        if alias is not None:
            hit = conn.execute(sa.select(kms_aliases.c.key_id).where(
                kms_aliases.c.account_id == account, kms_aliases.c.region == region,
                kms_aliases.c.name == alias)).first()
            if hit is None:
                raise E.NotFoundException(f"Alias arn:aws:kms:{region}:{account}:{alias} is not found.")
            key_id = hit.key_id
        if not _UUID_RE.match(key_id):
            raise E.NotFoundException(f"Invalid keyId '{ref}'")
        row = self._row(conn, key_id)
        if row is None or row.account_id != account or row.region != region:
            raise _not_found(key_arn(region, account, key_id))
        key = Key.of(row)
        if key.deleted(self._clock()):
            raise _not_found(key.arn)
        return key

    @staticmethod
    def _require_usable(key: Key) -> None:
        if key.state == DISABLED:
            raise E.DisabledException(f"{key.arn} is disabled.")
        if key.state == PENDING_DELETION:
            raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")

    @staticmethod
    def _dry_run(params: dict) -> None:
        if params.get("DryRun"):
            raise E.DryRunOperationException("The request would have succeeded, but the DryRun option is set.")

    @staticmethod
    def _algorithm(params: dict, name: str = "EncryptionAlgorithm") -> None:
        alg = params.get(name)
        if alg is not None and alg != SYMMETRIC_DEFAULT:
            raise E.InvalidKeyUsageException(f"The {name} {alg} is not valid for a SYMMETRIC_DEFAULT key.")
