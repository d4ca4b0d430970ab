"""The operator's external SQS endpoint (`lambdalet sources add-sqs-endpoint --url ...`) never appears in
what a tenant sees (issue 21.9): a tenant account mapping a queue routed to an unreachable endpoint is
refused with an error that names its queue, not the endpoint's address. Real server, real CLI, boto3."""
from __future__ import annotations

import socket
import time

import pytest

from .e2e_support import create_function, delete_quietly, expect_error, unique
from .tenancy_support import client_as, mapping_role, second_account
from harness import run_lambdalet


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_endpoint(server):
    """An endpoint for one unique queue-ARN prefix, at an address nothing listens on; removed after."""
    name = unique("ops-sqs")
    prefix = f"arn:aws:sqs:eu-west-3:222233334444:{name}"
    address = f"127.0.0.1:{_closed_port()}"
    res = run_lambdalet(server, "sources", "add-sqs-endpoint", "--name", name, "--url", f"https://{address}",
                     "--queue-arn-prefix", prefix, "--access-key", "AKOPS", "--secret-key-stdin", input="S\n")
    assert res.returncode == 0, res.stderr
    time.sleep(1.5)                # the server re-reads the endpoint file within a second
    yield prefix, address
    assert run_lambdalet(server, "sources", "remove-sqs-endpoint", name).returncode == 0


def test_a_tenant_never_sees_the_operators_endpoint(server, unreachable_endpoint):
    prefix, address = unreachable_endpoint
    _, key = second_account(server, unique("esm-tenant"))
    lam = client_as(server, "lambda", key)
    name = unique("ops-fn")
    create_function(lam, name, Role=mapping_role(client_as(server, "iam", key)))
    try:
        with expect_error("InvalidParameterValueException", 400) as err:
            lam.create_event_source_mapping(EventSourceArn=prefix + "-q", FunctionName=name)
        assert prefix + "-q" in err.message and "could not be reached" in err.message, err.message
        assert address not in err.message and "127.0.0.1" not in err.message, err.message
    finally:
        delete_quietly(lam, name)
