"""Services lambdalet does not serve answer an error their own SDK client parses (never a parser crash)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


@pytest.mark.parametrize("service,call,code", [
    ("cloudformation", lambda c: c.describe_stacks(), "InvalidAction"),            # awsQuery: an XML error
    ("dynamodb", lambda c: c.list_tables(), "UnknownOperationException"),         # awsJson
])
def test_unserved_service_gets_a_parseable_error(server, service, call, code):
    with pytest.raises(ClientError) as e:
        call(server.client(service))
    err = e.value.response["Error"]
    assert err["Code"] == code, err
    assert err["Message"] == f"lambdalet does not serve the '{service}' service", err
