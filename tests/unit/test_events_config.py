"""events/invoke_config.py: Put/Get/Update/Delete/List semantics and validation, in process."""
from __future__ import annotations

import pytest

from lambdalet.config import Settings
from lambdalet.events.invoke_config import DEFAULTS, EventInvokeConfigs
from lambdalet.models.errors import ValidationException, InvalidParameterValueException, ResourceNotFoundException
from lambdalet.queues import QueueService

from .services_support import ACCOUNT, REGION, build_env



# AWS answers a member that breaks its model constraint with ValidationException ("N validation
# error(s) detected: ..."), and the service's own checks with InvalidParameterValueException.
PARAM_ERRORS = (InvalidParameterValueException, ValidationException)


def assert_aws_kind(err) -> None:
    assert isinstance(err, ValidationException) == ("validation error detected" in err.message), repr(err)

@pytest.fixture
def env(tmp_path):
    e = build_env(tmp_path)
    db = e.svc.deps.db
    q = QueueService(db, e.keyring, Settings(data_dir=tmp_path))
    q.create_queue(e.ctx, {"QueueName": "dest"})
    e.create("fn")
    e.call("publish_version", FunctionName="fn")
    e.call("create_alias", FunctionName="fn", Name="live", FunctionVersion="1")
    yield e, EventInvokeConfigs(db, q)
    db.close()


QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dest"


def test_put_get_update_list_delete(env):
    e, c = env
    out = c.put_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "Qualifier": "live",
                                                     "MaximumRetryAttempts": 0})
    assert out["FunctionArn"].endswith(":function:fn:live") and out["MaximumRetryAttempts"] == 0
    assert c.effective(ACCOUNT, REGION, "fn", "live").max_retry_attempts == 0
    assert c.effective(ACCOUNT, REGION, "fn", None) == DEFAULTS
    up = c.update_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "Qualifier": "live",
                                                       "DestinationConfig": {"OnSuccess": {"Destination": QUEUE}}})
    assert up["MaximumRetryAttempts"] == 0 and up["DestinationConfig"]["OnSuccess"] == {"Destination": QUEUE}
    assert c.effective(ACCOUNT, REGION, "fn", "live").on_success == QUEUE
    c.put_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "MaximumEventAgeInSeconds": 100})
    listed = c.list_function_event_invoke_configs(e.ctx, {"FunctionName": "fn"})["FunctionEventInvokeConfigs"]
    assert [x["FunctionArn"].rsplit(":", 1)[1] for x in listed] == ["$LATEST", "live"]
    c.delete_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "Qualifier": "live"})
    with pytest.raises(ResourceNotFoundException):
        c.get_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "Qualifier": "live"})
    e.call("delete_function", FunctionName="fn")
    e.create("fn")
    with pytest.raises(ResourceNotFoundException):
        c.get_function_event_invoke_config(e.ctx, {"FunctionName": "fn"})


@pytest.mark.parametrize("params", [
    {"MaximumRetryAttempts": -1}, {"MaximumRetryAttempts": 3}, {"MaximumEventAgeInSeconds": 59},
    {"MaximumEventAgeInSeconds": 21601}, {},
    {"DestinationConfig": {"OnSuccess": {"Destination": "nope"}}},
    {"DestinationConfig": {"OnSuccess": {"Destination": f"arn:aws:sqs:{REGION}:{ACCOUNT}:missing"}}},
    {"DestinationConfig": {"OnSuccess": {"Destination": f"arn:aws:sqs:{REGION}:999988887777:dest"}}},
    {"DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:missing"}}},
    {"DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:sns:{REGION}:{ACCOUNT}:topic"}}},
])
def test_validation(env, params):
    e, c = env
    with pytest.raises(PARAM_ERRORS) as err:
        c.put_function_event_invoke_config(e.ctx, {"FunctionName": "fn", **params})
    assert_aws_kind(err.value)


def test_missing_function_or_qualifier(env):
    e, c = env
    with pytest.raises(ResourceNotFoundException):
        c.put_function_event_invoke_config(e.ctx, {"FunctionName": "nofn", "MaximumRetryAttempts": 1})
    with pytest.raises(ResourceNotFoundException):
        c.put_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "Qualifier": "7", "MaximumRetryAttempts": 1})
    with pytest.raises(ResourceNotFoundException):
        c.update_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "MaximumRetryAttempts": 1})
    c.put_function_event_invoke_config(e.ctx, {"FunctionName": "fn", "DestinationConfig": {
        "OnFailure": {"Destination": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn:live"}}})
