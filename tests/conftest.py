"""The end-to-end fixtures every test directory shares (the harness itself: tests/harness.py).

- `server` (session): one server for the whole run, on a temporary data dir, port 0.
- `fresh_server` (function): a server of its own, for tests that restart/stop it or need a pristine
  data dir.
- `lambdalet_server_factory` (function): start extra servers with extra args (e.g. --insecure-http).
- `function_server` (module): a server that can run functions (see below).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# LambdaletServer and own_server are re-exported: bench/*.py build servers as `conftest.LambdaletServer`.
from harness import (PYTHON, REPO, LambdaletServer, ServerStartError, child_env,  # noqa: F401
                     own_server)

_child_env = child_env   # the older name, for callers not yet moved to harness.child_env


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    yield from own_server(tmp_path_factory)


@pytest.fixture(scope="module")
def function_server(request, tmp_path_factory):
    """A server that can run functions: the shared one as root (namespace sandbox), otherwise a server
    of the module's own with the unisolated `process` backend (it says so loudly)."""
    if os.geteuid() == 0:
        yield request.getfixturevalue("server")
        return
    yield from own_server(tmp_path_factory, "--sandbox", "process")


@pytest.fixture
def lambdalet_server_factory(tmp_path_factory):
    started: list[LambdaletServer] = []

    def make(*extra_args: str, data_dir: Path | None = None) -> LambdaletServer:
        srv = LambdaletServer(data_dir or tmp_path_factory.mktemp("lambdalet-data"), extra_args)
        started.append(srv)
        try:
            return srv.start()
        except ServerStartError as e:
            pytest.fail(str(e), pytrace=False)

    yield make
    problems = []
    for srv in started:
        srv.stop()
        problems += srv.leaked
    if problems:
        pytest.fail("server teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def fresh_server(lambdalet_server_factory):
    return lambdalet_server_factory()
