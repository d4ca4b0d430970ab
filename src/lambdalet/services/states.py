"""Function states as AWS reports them, as a small state machine with AWS's transitions.

    CreateFunction        -> State Pending    (StateReason "The function is being created.", Creating)
    code ready            -> State Active     (a new RevisionId)
    Update*Code/Config    -> LastUpdateStatus InProgress (LastUpdateStatusReason..., Creating)
    update applied        -> LastUpdateStatus Successful (a new RevisionId)

lambdalet checks and unpacks a package before it answers, so the remaining work is short: a
transition completes SETTLE_AFTER_S after the write (one background thread), or at once when the
function is next read or changed through the control plane, whichever comes first. Invoke alone
does not advance it: a version still Pending answers ResourceConflictException, as on AWS.
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lambdalet.models.errors import ResourceConflictException
from lambdalet.services import records

log = logging.getLogger(__name__)

PENDING, ACTIVE = "Pending", "Active"
IN_PROGRESS, SUCCESSFUL = "InProgress", "Successful"
CREATING_REASON, CREATING_CODE = "The function is being created.", "Creating"
SETTLE_AFTER_S = 0.02
IDLE_EXIT_S = 5.0
V = records.V


def unsettled(row) -> bool:
    return row.state == PENDING or row.last_update_status == IN_PROGRESS


def describe(row) -> dict:
    """The state members of a FunctionConfiguration for this row, as AWS words them."""
    out = {"State": row.state}
    if row.state == PENDING:
        # A version being created has no update status yet (AWS omits LastUpdateStatus then).
        out.update(StateReason=CREATING_REASON, StateReasonCode=CREATING_CODE)
        return out
    out["LastUpdateStatus"] = row.last_update_status
    if row.last_update_status == IN_PROGRESS:
        out.update(LastUpdateStatusReason=CREATING_REASON, LastUpdateStatusReasonCode=CREATING_CODE)
    return out


def require_invocable(state: str) -> None:
    """Invoke refuses a version that is not Active yet, as AWS does."""
    if state == PENDING:
        raise ResourceConflictException("The operation cannot be performed at this time. The function is currently "
                                        f"in the following state: {PENDING}")


def settle(conn: Connection, function_id: str) -> bool:
    """Complete a function's pending transitions; each completed row gets a new RevisionId."""
    rows = conn.execute(sa.select(V.c.id).where(
        V.c.function_id == function_id,
        sa.or_(V.c.state == PENDING, V.c.last_update_status == IN_PROGRESS))).all()
    for (row_id,) in rows:
        conn.execute(V.update().where(V.c.id == row_id).values(
            state=ACTIVE, last_update_status=SUCCESSFUL, revision_id=records.new_revision()))
    return bool(rows)


class Transitions:
    """Completes transitions SETTLE_AFTER_S after they start, on one daemon thread."""

    def __init__(self, db, on_change: Callable[[], None] = lambda: None, delay_s: float = SETTLE_AFTER_S):
        self._db, self._on_change, self._delay = db, on_change, delay_s
        self._due: list[tuple[float, str]] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def started(self, function_id: str) -> None:
        """A transition began (the write that began it has committed)."""
        with self._cv:
            heapq.heappush(self._due, (time.monotonic() + self._delay, function_id))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lambdalet-states", daemon=True)
                self._thread.start()
            self._cv.notify()

    def settle_now(self, function_id: str) -> bool:
        with self._db.begin() as conn:
            changed = settle(conn, function_id)
        if changed:
            self._on_change()
        return changed

    def settle_all(self) -> None:
        """Transitions a previous server left unfinished (it stopped within SETTLE_AFTER_S of a write)."""
        with self._db.begin() as conn:
            ids = [r[0] for r in conn.execute(sa.select(V.c.function_id).where(
                sa.or_(V.c.state == PENDING, V.c.last_update_status == IN_PROGRESS)).distinct()).all()]
            for fid in ids:
                settle(conn, fid)

    def _run(self) -> None:
        """Completes due transitions; ends after IDLE_EXIT_S without any (started() starts a new one)."""
        while True:
            with self._cv:
                while not self._due or self._due[0][0] > time.monotonic():
                    if not self._due:
                        if not self._cv.wait(IDLE_EXIT_S) and not self._due:
                            self._thread = None
                            return
                        continue
                    self._cv.wait(max(0.0, self._due[0][0] - time.monotonic()))
                _, function_id = heapq.heappop(self._due)
            try:
                self.settle_now(function_id)
            except Exception:        # the database closed under us (shutdown): the next start settles it
                log.debug("state transition for %s not completed", function_id, exc_info=True)
