"""The state machine's background thread (services/states.py): transitions complete by themselves,
and the thread ends when there is nothing left to do (no thread per idle service lingers)."""
from __future__ import annotations

from functools import partial

from lambdalet.services import states
from polling import eventually

from .services_support import ACCOUNT

_wait = partial(eventually, timeout=3.0, interval=0.01)


def test_transition_then_idle_exit(env, monkeypatch):  # noqa: F811
    monkeypatch.setattr(states, "IDLE_EXIT_S", 0.1)
    transitions = env.svc.deps.transitions
    out = env.create("fn", wait=False)
    assert out["State"] == "Pending"
    assert _wait(lambda: transitions._thread is not None or env.svc.resolve_version(ACCOUNT, "fn").state == "Active")
    assert _wait(lambda: transitions._thread is None)              # idle: the thread ended
    got = env.call("get_function_configuration", FunctionName="fn")
    assert got["State"] == "Active" and got["RevisionId"] != out["RevisionId"]
    env.call("update_function_configuration", FunctionName="fn", Timeout=5)
    assert _wait(lambda: transitions._thread is None)              # a new thread did the update, then ended
    with env.svc.deps.db.read() as conn:
        row = conn.execute(states.V.select().where(states.V.c.version == "$LATEST")).first()
    assert row.last_update_status == "Successful"
