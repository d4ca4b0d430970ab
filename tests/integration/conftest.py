"""Fixtures the end-to-end tests share (the servers themselves: tests/conftest.py). A module that needs
another server defines its own `srv`; `lam` then talks to that one."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def srv(function_server):
    """The server this module's functions run on: see function_server."""
    return function_server


@pytest.fixture(scope="module")
def lam(srv):
    return srv.client()
