"""The control-plane harness itself (services_support.py, the `env` fixture of conftest.py)."""


def test_harness_creates_a_function(env):
    assert env.create("harness")["State"] == "Active"
